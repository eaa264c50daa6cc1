"""Cut-off MCAP recovery: exactly the messages whose bytes lie before the cut come back."""
import io
from pathlib import Path

import numpy as np
import pytest

from urcdc_depth_ros.evaluation import bag_io
from urcdc_depth_ros.evaluation.bag_topics import open_bag
from urcdc_depth_ros.evaluation.mcap_recover import RecoveredReader, scan_mcap

mcap_writer = pytest.importorskip('mcap.writer')


def _write_unchunked(path, n=40, chunked=False):
    """An MCAP of n messages; returns (payloads, byte offset where each message ends)."""
    buf = io.BytesIO()
    w = mcap_writer.Writer(buf, use_chunking=chunked, chunk_size=2000,
                           compression=mcap_writer.CompressionType.NONE)
    w.start(profile='ros2')
    sid = w.register_schema('std_msgs/msg/String', 'ros2msg', b'string data')
    cid = w.register_channel('/chatter', 'cdr', sid)
    rng = np.random.default_rng(0)
    payloads, ends = [], []
    for i in range(n):
        data = rng.bytes(int(rng.integers(10, 300)))
        w.add_message(cid, log_time=1000 + i, data=data, publish_time=1000 + i, sequence=i)
        payloads.append(data)
        ends.append(buf.tell())   # unchunked: the record is in the stream now
    w.finish()
    Path(path).write_bytes(buf.getvalue())
    return payloads, ends


def _messages(path):
    from mcap.records import Message
    return [r.data for r in scan_mcap(path) if isinstance(r, Message)]


@pytest.mark.parametrize('frac', [0.13, 0.5, 0.77, 0.999])
def test_cut_off_file_yields_exactly_the_messages_before_the_cut(tmp_path, frac):
    full = tmp_path / 'full.mcap'
    payloads, ends = _write_unchunked(full)
    data = full.read_bytes()
    cut_at = int(ends[-1] * frac)
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(data[:cut_at])
    expected = [p for p, e in zip(payloads, ends) if e <= cut_at]
    assert 0 < len(expected) < len(payloads)
    assert _messages(cut) == expected


def test_intact_file_reads_whole_and_complete(tmp_path):
    full = tmp_path / 'full.mcap'
    payloads, _ = _write_unchunked(full, chunked=True)
    reader = RecoveredReader([full], bag_io.get_ros2_typestore())
    assert [bytes(raw) for _, _, raw in reader.messages()] == payloads
    assert reader.warning == '' and all(s.complete for s in reader.scans.values())


def test_cut_inside_an_uncompressed_chunk_keeps_its_complete_messages(tmp_path):
    full = tmp_path / 'full.mcap'
    payloads, _ = _write_unchunked(full, chunked=True)
    data = full.read_bytes()
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(data[:len(data) // 2])
    got = _messages(cut)
    # a prefix of the recording, longer than the chunks that were complete
    assert got == payloads[:len(got)] and 0 < len(got) < len(payloads)
    from mcap.reader import make_reader
    with open(full, 'rb') as f:
        idx = make_reader(f).get_summary().chunk_indexes
    whole = [c for c in idx if c.chunk_start_offset + c.chunk_length <= len(data) // 2]
    assert len(got) > sum(1 for p in range(len(payloads))
                          if 1000 + p <= max(c.message_end_time for c in whole))


def test_power_loss_bag_opens_with_a_warning_naming_the_last_good_stamp(tmp_path):
    full = tmp_path / 'full.mcap'
    payloads, ends = _write_unchunked(full)
    bag = tmp_path / 'bag'   # rosbag2 folder without metadata.yaml (never written)
    bag.mkdir()
    (bag / 'bag_0.mcap').write_bytes(full.read_bytes()[:ends[9] + 5])
    reader = open_bag([bag])
    assert isinstance(reader, RecoveredReader)
    assert [c.topic for c in reader.connections] == ['/chatter']
    assert sum(1 for _ in reader.messages()) == 10
    assert 'last good stamp' in reader.warning and '(1009 ns)' in reader.warning


def test_garbage_is_still_refused(tmp_path):
    bad = tmp_path / 'bad.mcap'
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    from urcdc_depth_ros.errors import DataError
    with pytest.raises(DataError, match='corrupt'):
        open_bag([bad])
