"""Read a cut-off MCAP (recording stopped by power loss) up to the cut, as ``mcap recover`` does.

A recording that stops abruptly has no summary, no footer and no end magic, and rosbag2
never wrote its ``metadata.yaml``; ``rosbags`` then refuses the whole file ("File end magic
is invalid"). The MCAP data section is a plain sequence of records (opcode u8, length u64
little-endian, body), so everything before the cut can still be read in order: this module
walks the records with the ``mcap`` package's streaming reader, one complete record at a
time. In the record the cut falls in, an *uncompressed* chunk is parsed as far as its
messages are complete (rosbags writes uncompressed chunks); a compressed chunk or any other
record cut in half is dropped. The result is exactly the messages whose bytes all lie before
the cut.

:class:`RecoveredReader` offers the part of ``rosbags.highlevel.AnyReader`` the evaluator
uses (``connections``, ``messages()``, ``deserialize()``, ``close()``), so a recovered bag is
evaluated like any other.
"""
from __future__ import annotations

import datetime as _dt
import heapq
import io
import logging
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

logger = logging.getLogger(__name__)

MAGIC = b'\x89MCAP0\r\n'
_OP_CHUNK = 0x06
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE = 0x03, 0x04, 0x05


@dataclass
class _Ext:
    serialization_format: str


@dataclass(eq=False)
class Connection:
    """One channel of a recovered bag (the fields of a rosbags connection the evaluator reads).

    Attributes:
        id: channel id (unique across the files of one reader). topic, msgtype: as recorded.
        ext: ``.serialization_format`` ('cdr' for ROS 2). msgcount: messages recovered.
    """

    id: int
    topic: str
    msgtype: str
    ext: _Ext
    msgcount: int = 0
    path: str = field(default='', repr=False)


@dataclass
class McapScan:
    """What one pass over a (possibly cut-off) MCAP file found.

    Attributes:
        complete: the file ends with a footer and the end magic (nothing was cut).
        messages: messages recovered. last_log_time_ns: log time of the last one (None: none).
        cut_offset: byte offset where reading stopped (the file size when complete).
        reason: why reading stopped early ('' when complete).
    """

    complete: bool = False
    messages: int = 0
    last_log_time_ns: int | None = None
    cut_offset: int = 0
    reason: str = ''


def _records(buf, start: int, end: int) -> Iterator:
    """Parsed records of the complete record bytes ``buf[start:end]`` (chunks broken up)."""
    from mcap.stream_reader import StreamReader
    from mcap.exceptions import EndOfFile
    reader = StreamReader(io.BytesIO(buf[start:end]), skip_magic=True)
    try:
        yield from reader.records
    except EndOfFile:
        return


def _partial_chunk(buf, start: int, size: int) -> Iterator:
    """Complete records inside a chunk the cut falls in (uncompressed chunks only)."""
    body = start + 9
    head = body + 8 * 3 + 4
    if head + 4 > size:
        return
    (n,) = struct.unpack_from('<I', buf, head)
    comp_end = head + 4 + n
    if comp_end + 8 > size or bytes(buf[head + 4:comp_end]) != b'':
        return
    records_start = comp_end + 8
    pos = records_start
    while pos + 9 <= size:
        (length,) = struct.unpack_from('<Q', buf, pos + 1)
        if pos + 9 + length > size:
            break
        pos += 9 + length
    yield from _records(buf, records_start, pos)


def scan_mcap(path: str | os.PathLike, scan: McapScan | None = None) -> Iterator:
    """Every record of the MCAP at ``path`` up to the end or the cut, in file order.

    ``scan`` (optional) is filled in as the generator runs: complete, messages, cut offset,
    last message log time and the reason reading stopped.
    """
    from mcap.records import Footer, Message
    scan = scan if scan is not None else McapScan()
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if size < len(MAGIC) or f.read(len(MAGIC)) != MAGIC:
            scan.reason = 'not an MCAP file (no start magic)'
            return
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = len(MAGIC)
        while True:
            if pos + 9 > size:
                scan.reason = (f'file ends inside a record header at byte {pos}'
                               if pos < size else 'file ends without a footer')
                break
            op = buf[pos]
            (length,) = struct.unpack_from('<Q', buf, pos + 1)
            end = pos + 9 + length
            if end > size:
                scan.reason = f'record (opcode 0x{op:02x}) at byte {pos} is cut off'
                if op == _OP_CHUNK:
                    for rec in _partial_chunk(buf, pos, size):
                        if isinstance(rec, Message):
                            scan.messages += 1
                            scan.last_log_time_ns = rec.log_time
                        yield rec
                break
            try:
                recs = list(_records(buf, pos, end))
            except Exception as exc:  # reason: a damaged record surfaces as several types
                scan.reason = f'record at byte {pos} is unreadable ({type(exc).__name__}: {exc})'
                break
            for rec in recs:
                if isinstance(rec, Message):
                    scan.messages += 1
                    scan.last_log_time_ns = rec.log_time
                yield rec
            pos = end
            if any(isinstance(r, Footer) for r in recs):
                scan.complete = size - pos >= len(MAGIC) and \
                    bytes(buf[pos:pos + len(MAGIC)]) == MAGIC
                if not scan.complete:
                    scan.reason = 'footer without the end magic'
                pos = size if scan.complete else pos
                break
        scan.cut_offset = pos
    finally:
        buf.close()


def mcap_files(paths: Sequence[str | os.PathLike]) -> list[Path] | None:
    """The ``.mcap`` files of bag paths (folders or files); None if any path holds none."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.glob('*.mcap'))
        elif p.suffix == '.mcap' and p.is_file():
            files = [p]
        else:
            files = []
        if not files:
            return None
        out.extend(files)
    return out


def stamp_text(ns: int | None) -> str:
    """``ns`` as ISO-8601 UTC with nanoseconds (and the raw value), or 'none'."""
    if ns is None:
        return 'none'
    sec, frac = divmod(int(ns), 1_000_000_000)
    t = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc)
    return f'{t:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z ({int(ns)} ns)'


class RecoveredReader:
    """AnyReader-like access to MCAP files read with :func:`scan_mcap` (cut-off or not).

    Args:
        paths: rosbag2 folders or ``.mcap`` files.
        typestore: rosbags typestore for :meth:`deserialize` (ROS 2 CDR).
    Attributes:
        connections: one :class:`Connection` per (file, channel).
        scans: {file: :class:`McapScan`} of the first pass.
        warning: one sentence naming each cut file, its cut and its last good stamp.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], typestore) -> None:
        from mcap.records import Channel, Schema
        files = mcap_files(paths)
        if files is None:
            raise ValueError(f'{[str(p) for p in paths]!r} hold no .mcap file')
        self.files = files
        self.typestore = typestore
        self.scans: dict[str, McapScan] = {}
        self.connections: list[Connection] = []
        self._by_key: dict[tuple[str, int], Connection] = {}
        for fpath in files:
            scan = McapScan()
            schemas: dict[int, str] = {}
            for rec in scan_mcap(fpath, scan):
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec.name
                elif isinstance(rec, Channel) and (str(fpath), rec.id) not in self._by_key:
                    conn = Connection(len(self.connections) + 1, rec.topic,
                                      schemas.get(rec.schema_id, ''),
                                      _Ext(rec.message_encoding), path=str(fpath))
                    self._by_key[(str(fpath), rec.id)] = conn
                    self.connections.append(conn)
                elif type(rec).__name__ == 'Message':
                    conn = self._by_key.get((str(fpath), rec.channel_id))
                    if conn is not None:
                        conn.msgcount += 1
            self.scans[str(fpath)] = scan
        cut = {p: s for p, s in self.scans.items() if not s.complete}
        self.warning = '; '.join(
            f'{p} is cut off ({s.reason}): read {s.messages} messages up to byte '
            f'{s.cut_offset}, last good stamp {stamp_text(s.last_log_time_ns)}'
            for p, s in cut.items())

    @property
    def message_count(self) -> int:
        """Messages recovered over all files."""
        return sum(s.messages for s in self.scans.values())

    def _file_messages(self, fpath: Path, want: set[int] | None) -> Iterator[tuple]:
        from mcap.records import Message
        for rec in scan_mcap(fpath):
            if isinstance(rec, Message):
                conn = self._by_key.get((str(fpath), rec.channel_id))
                if conn is not None and (want is None or conn.id in want):
                    yield rec.log_time, conn.id, conn, rec.data

    def messages(self, connections: Sequence[Connection] | None = None,
                 start: int | None = None, stop: int | None = None
                 ) -> Iterator[tuple[Connection, int, bytes]]:
        """``(connection, log_time_ns, raw CDR)`` merged over the files by log time.

        Within one file messages come in file order (a recorder writes them in log-time
        order); ``start`` <= log time < ``stop`` filters, as in rosbags.
        """
        want = None if connections is None else {c.id for c in connections}
        streams = [self._file_messages(f, want) for f in self.files]
        for log_time, _, conn, data in heapq.merge(*streams, key=lambda m: (m[0], m[1])):
            if (start is None or log_time >= start) and (stop is None or log_time < stop):
                yield conn, log_time, data

    def deserialize(self, raw: bytes, msgtype: str):
        """CDR bytes -> rosbags message of ``msgtype``."""
        return self.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing to release (each pass opens and closes its files)."""

    def __enter__(self) -> 'RecoveredReader':
        """Context manager: returns self."""
        return self

    def __exit__(self, *exc) -> None:
        """Context manager exit (see :meth:`close`)."""
        self.close()


__all__ = ['McapScan', 'RecoveredReader', 'mcap_files', 'scan_mcap', 'stamp_text']
