r"""Progress bars that stay readable in logs: `progress_bar` is every tqdm call's one entry.

On a terminal it is plain ``tqdm``. When the stream is not a TTY (CI, ``make demo > log``),
tqdm's ``\r``-redrawn frames would pile up as tens of kilobytes per run; there a bar prints one
ordinary line each ``every_pct`` per cent of the total (or each ``every_s`` seconds, for
unknown totals and slow steps) and a last line when it closes. tqdm is imported only when a
bar is made (``requirements/training.txt``).
"""
from __future__ import annotations

import sys
import time
from functools import lru_cache
from typing import Any, Iterable

EVERY_PCT = 10     # non-TTY: one line per this many per cent of the total
EVERY_S = 30.0     # non-TTY: and at least one line per this many seconds of progress


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # reason: no isatty, or a closed stream
        return False


@lru_cache(maxsize=1)
def _line_bar_class():
    from tqdm import tqdm

    class LineBar(tqdm):
        """tqdm that writes whole lines, throttled by per cent and by time (logs, not TTYs)."""

        def __init__(self, *args, every_pct: float = EVERY_PCT, every_s: float = EVERY_S,
                     **kwargs):
            self._every_pct, self._every_s = every_pct, every_s
            self._last_step, self._last_t, self._last_n = -1, time.monotonic(), None
            kwargs.setdefault('ascii', True)
            kwargs.setdefault('mininterval', 0.5)
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            """Print a line when a per-cent step or ``every_s`` passed; ignore clear-screens."""
            if msg is not None:
                return False
            step = int(100 * self.n / self.total // self._every_pct) if self.total else -1
            now = time.monotonic()
            if step > self._last_step or now - self._last_t >= self._every_s:
                self._write_line(step, now)
            return True

        def clear(self, nolock=False):
            """Nothing to erase: lines already written stay (``tqdm.write`` calls this)."""

        def close(self):
            r"""Print the final state (unless just printed), then close without ``\r``."""
            if not getattr(self, 'disable', True) and hasattr(self, 'last_print_t') \
                    and self.n != self._last_n:
                self._ema_dt = lambda: None  # overall rate in the last line
                self._write_line(self._last_step, time.monotonic())
            self.leave = False
            super().close()

        def _write_line(self, step: int, now: float) -> None:
            self.fp.write(self.__str__() + '\n')
            self.fp.flush()
            self._last_step, self._last_t, self._last_n = max(step, self._last_step), now, self.n

    return LineBar


def progress_bar(iterable: Iterable | None = None, **kwargs):
    """A tqdm bar over ``iterable`` (same keyword arguments); line-per-step on a non-TTY.

    ``every_pct`` and ``every_s`` tune the non-TTY lines (defaults :data:`EVERY_PCT`,
    :data:`EVERY_S`); on a TTY they are ignored.
    """
    stream = kwargs.get('file') or sys.stderr
    if _is_tty(stream):
        from tqdm import tqdm
        kwargs.pop('every_pct', None)
        kwargs.pop('every_s', None)
        return tqdm(iterable, **kwargs)
    return _line_bar_class()(iterable, **kwargs)


__all__ = ['EVERY_PCT', 'EVERY_S', 'progress_bar']
