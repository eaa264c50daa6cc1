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


def test_rig_latest_takes_every_camera_with_a_frame_in_camera_order():
    from urcdc_depth_ros.frame_buffer import RigSlots
    rig = RigSlots(['a', 'b', 'c'])
    assert rig.take_batch(0.01).items == {}  # nothing waiting: empty after the timeout
    rig.put('c', 'c1', 10)
    assert rig.put('a', 'a1', 11) is False
    assert rig.put('a', 'a2', 12) is True  # replaced before the worker took it
    batch = rig.take_batch(0.01)
    assert list(batch.items.items()) == [('a', 'a2'), ('c', 'c1')] and not batch.timed_out


def test_rig_stamp_sync_waits_for_the_missing_camera_then_runs_the_pair():
    from urcdc_depth_ros.frame_buffer import RigSlots
    rig = RigSlots(['a', 'b'])
    rig.put('a', 'a1', 1_000_000_000)
    threading.Timer(0.05, rig.put, ('b', 'b1', 1_002_000_000)).start()
    t0 = time.monotonic()
    batch = rig.take_batch(1.0, 'stamp', tolerance_s=0.005, wait_s=2.0)
    assert batch.items == {'a': 'a1', 'b': 'b1'} and not batch.timed_out
    assert time.monotonic() - t0 < 1.0  # returned when complete, not at the wait limit


def test_rig_stamp_sync_times_out_with_the_matching_frames_and_drops_stale_ones():
    from urcdc_depth_ros.frame_buffer import RigSlots
    rig = RigSlots(['a', 'b', 'c'])
    rig.put('a', 'a1', 1_000_000_000)
    rig.put('b', 'b1', 1_050_000_000)  # 50 ms newer than a: a can no longer be paired
    t0 = time.monotonic()
    batch = rig.take_batch(1.0, 'stamp', tolerance_s=0.005, wait_s=0.1)
    assert 0.09 <= time.monotonic() - t0 < 0.5  # c is silent: gave up after wait_s
    assert batch.items == {'b': 'b1'} and batch.stale == ['a'] and batch.timed_out
    assert rig.take_batch(0.01).items == {}  # nothing left behind


def test_rig_close_wakes_a_waiting_worker():
    from urcdc_depth_ros.frame_buffer import RigSlots
    rig = RigSlots(['a'])
    threading.Timer(0.05, rig.close).start()
    t0 = time.monotonic()
    assert rig.take_batch(5.0).items == {} and time.monotonic() - t0 < 2.0
