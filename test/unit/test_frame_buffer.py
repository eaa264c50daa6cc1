"""frame_buffer.LatestSlot: newest item wins, replaced items are counted, close wakes takers."""
from __future__ import annotations

import threading
import time

from urcdc_depth_ros.frame_buffer import LatestSlot


def test_take_returns_the_newest_item_and_counts_replaced_ones_as_dropped():
    s = LatestSlot()
    assert s.put(1) is False
    assert s.put(2) is True
    assert s.put(3) is True
    assert s.take(0) == 3
    assert (s.put_count, s.dropped_count, s.taken_count) == (3, 2, 1)
    assert s.take(0) is None  # empty after a take


def test_an_item_taken_in_time_is_not_dropped():
    s = LatestSlot()
    for i in range(10):
        s.put(i)
        assert s.take(0) == i
    assert s.dropped_count == 0 and s.taken_count == 10


def test_take_blocks_until_a_put_from_another_thread():
    s = LatestSlot()
    threading.Timer(0.05, s.put, args=('frame',)).start()
    t = time.perf_counter()
    assert s.take(5.0) == 'frame'
    assert time.perf_counter() - t < 2.0


def test_close_wakes_a_waiting_take_and_reopen_restores_it():
    s = LatestSlot()
    got = []
    th = threading.Thread(target=lambda: got.append(s.take(10.0)))
    th.start()
    time.sleep(0.05)
    s.close()
    th.join(2.0)
    assert not th.is_alive() and got == [None] and s.closed
    s.reopen()
    s.put(5)
    assert s.take(0) == 5


def test_clear_discards_without_counting_a_drop():
    s = LatestSlot()
    s.put(1)
    s.clear()
    assert s.take(0) is None and s.dropped_count == 0


def test_a_fast_producer_and_slow_consumer_account_for_every_item():
    s = LatestSlot()
    taken = []
    done = threading.Event()

    def consume():
        while True:
            item = s.take(0.01)
            if item is None:
                if done.is_set():
                    return
                continue
            taken.append(item)
            time.sleep(0.002)

    th = threading.Thread(target=consume)
    th.start()
    for i in range(2000):
        s.put(i)
    time.sleep(0.05)
    done.set()
    th.join(5)
    assert taken == sorted(taken)  # never an older frame after a newer one
    assert len(taken) == s.taken_count and taken[-1] == 1999
    assert s.taken_count + s.dropped_count == 2000 and s.dropped_count > 0
