"""A one-slot "latest frame" buffer shared by ROS callbacks (producers) and one worker thread.

Callbacks never queue work: :meth:`LatestSlot.put` replaces whatever is waiting, and the
replaced item is counted as dropped. The worker takes the newest item, so processing never
builds a backlog however slow the backend is.
"""
from __future__ import annotations

import threading
from typing import Generic, Optional, TypeVar

T = TypeVar('T')


class LatestSlot(Generic[T]):
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

    def close(self) -> None:
        """Wake every waiting :meth:`take` (it returns None); further takes return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Undo :meth:`close` so the slot can be used by a new worker."""
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (and not undone)."""
        return self._closed


__all__ = ['LatestSlot']
