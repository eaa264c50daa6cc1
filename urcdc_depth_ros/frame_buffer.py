"""A one-slot "latest frame" buffer shared by ROS callbacks (producers) and one worker thread.

Callbacks never queue work: :meth:`LatestSlot.put` replaces whatever is waiting, and the
replaced item is counted as dropped. The worker takes the newest item, so processing never
builds a backlog however slow the backend is.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Generic, Optional, Sequence, TypeVar

T = TypeVar('T')


class _Closable:
    """``close`` / ``reopen`` of a buffer guarded by ``self._cond`` and ``self._closed``."""

    _cond: threading.Condition
    _closed: bool

    def close(self) -> None:
        """Wake every waiting taker (it returns nothing); further takes return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Undo :meth:`close` so the buffer can be used by a new worker."""
        with self._cond:
            self._closed = False


class LatestSlot(_Closable, Generic[T]):
    """Thread-safe single-item slot that keeps only the newest item.

    Attributes:
        put_count: items offered with :meth:`put`.
        dropped_count: items replaced before a :meth:`take` picked them up.
        taken_count: items handed to the consumer.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._has_item = False
        self._closed = False
        self.put_count = 0
        self.dropped_count = 0
        self.taken_count = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced an item nobody took (a drop)."""
        with self._cond:
            dropped = self._has_item
            if dropped:
                self.dropped_count += 1
            self._item = item
            self._has_item = True
            self.put_count += 1
            self._cond.notify()
            return dropped

    def take(self, timeout_s: Optional[float] = None) -> Optional[T]:
        """Return the newest item and empty the slot; None on timeout or after :meth:`close`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout_s):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            self.taken_count += 1
            return item

    def clear(self) -> None:
        """Forget a waiting item without counting it as dropped (e.g. on deactivate)."""
        with self._cond:
            self._item, self._has_item = None, False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (and not undone)."""
        return self._closed


@dataclass
class RigBatch(Generic[T]):
    """What :meth:`RigSlots.take_batch` hands the worker.

    Attributes:
        items: camera -> its newest item, in camera order (the batch).
        stale: cameras whose waiting item was discarded because it matched no stamp
            (``sync='stamp'`` only).
        timed_out: ``sync='stamp'`` gave up waiting for the missing cameras.
    """

    items: dict[str, T] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    timed_out: bool = False


class RigSlots(_Closable, Generic[T]):
    """One latest-item slot per camera, taken together by one worker.

    ``sync='latest'``: :meth:`take_batch` returns every camera that holds an item, as soon as
    one does. ``sync='stamp'`` (hardware-triggered rigs): it waits until every camera holds an
    item within ``tolerance_s`` of the newest waiting stamp, but at most ``wait_s`` after the
    first item arrived; then it returns the cameras that match (a silent camera never stalls
    the others) and discards the older items that cannot match any more (``stale``).
    """

    SYNC_MODES = ('latest', 'stamp')

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._cond = threading.Condition()
        self._items: dict[str, tuple[T, int, float]] = {}
        self._closed = False

    def put(self, name: str, item: T, stamp_ns: int) -> bool:
        """Store ``item`` (header stamp ``stamp_ns``) for camera ``name``; True = replaced one."""
        with self._cond:
            dropped = name in self._items
            self._items[name] = (item, int(stamp_ns), time.monotonic())
            self._cond.notify()
            return dropped

    def take_batch(self, timeout_s: float, sync: str = 'latest', tolerance_s: float = 0.0,
                   wait_s: float = 0.0) -> RigBatch[T]:
        """Wait up to ``timeout_s`` for an item, then return a batch (see the class docstring).

        An empty batch means the timeout passed or the slots were closed.
        """
        if sync not in self.SYNC_MODES:
            raise ValueError(f'sync={sync!r} is not one of {list(self.SYNC_MODES)}')
        tol_ns = int(tolerance_s * 1e9)
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout_s):
                return RigBatch()
            if self._closed:
                return RigBatch()
            if sync == 'latest':
                return RigBatch(self._pop(list(self._items)))
            first_s = min(t for _, _, t in self._items.values())
            while not self._closed:
                matched = self._matching(tol_ns)
                left = first_s + wait_s - time.monotonic()
                if len(matched) == len(self.names) or left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            matched = self._matching(tol_ns)
            stale = [n for n in self.names if n in self._items and n not in matched]
            self._pop(stale)
            return RigBatch(self._pop(matched), stale, len(matched) < len(self.names))

    def _matching(self, tol_ns: int) -> list[str]:
        """Cameras whose item lies within ``tol_ns`` of the newest waiting stamp."""
        if not self._items:
            return []
        ref = max(s for _, s, _ in self._items.values())
        return [n for n in self.names if n in self._items and ref - self._items[n][1] <= tol_ns]

    def _pop(self, names: Sequence[str]) -> dict[str, T]:
        return {n: self._items.pop(n)[0] for n in self.names if n in names}

    def clear(self) -> None:
        """Forget waiting items without counting them (e.g. on deactivate)."""
        with self._cond:
            self._items.clear()


__all__ = ['LatestSlot', 'RigBatch', 'RigSlots']
