"""Pure rate, latency and counter statistics for the node's ``/diagnostics`` status.

No ROS import: the node turns :meth:`NodeStats.summary` into a ``DiagnosticStatus``. Times are
``time.perf_counter()`` / monotonic seconds supplied by the caller, so tests can drive them.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Optional

import numpy as np


class RateMeter:
    """Events per second over a sliding window.

    Args:
        window_s: length of the window, seconds (> 0).
    """

    def __init__(self, window_s: float = 5.0) -> None:
        if not window_s > 0:
            raise ValueError(f'window_s must be > 0 s, got {window_s!r}')
        self.window_s = float(window_s)
        self._times: deque[float] = deque()

    def tick(self, t_s: float) -> None:
        """Record one event at time ``t_s`` (seconds, monotonic)."""
        self._times.append(t_s)
        self._trim(t_s)

    def rate_hz(self, now_s: float) -> float:
        """Events per second in ``(now_s - window_s, now_s]``; 0 with fewer than two events."""
        self._trim(now_s)
        n = len(self._times)
        if n < 2:
            return 0.0
        span = now_s - self._times[0]
        return (n - 1) / span if span > 0 else 0.0

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] <= now_s - self.window_s:
            self._times.popleft()


class LatencyStats:
    """Percentiles of the last ``size`` latency samples (milliseconds)."""

    def __init__(self, size: int = 200) -> None:
        if size < 1:
            raise ValueError(f'size must be >= 1, got {size!r}')
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, latency_ms: float) -> None:
        """Record one latency in milliseconds."""
        self._samples.append(float(latency_ms))

    def __len__(self) -> int:
        return len(self._samples)

    def percentile(self, q: float) -> float:
        """Return percentile ``q`` (0..100) of the samples in ms, NaN without samples."""
        if not self._samples:
            return float('nan')
        return float(np.percentile(np.fromiter(self._samples, np.float64), q))


class NodeStats:
    """Everything ``/diagnostics`` reports, thread-safe (callbacks and the worker both write).

    Counters: ``received`` (images accepted), ``rejected`` (malformed images or camera infos),
    ``dropped`` (accepted images replaced before inference), ``processed``, ``skipped_lazy``
    (no subscriber), ``failed`` (inference raised), ``no_intrinsics`` (no matching camera info).
    """

    COUNTERS = ('received', 'rejected', 'rejected_image', 'rejected_camera_info', 'dropped',
                'processed', 'skipped_lazy', 'failed', 'no_intrinsics')

    def __init__(self, window_s: float = 5.0, latency_samples: int = 200) -> None:
        self._lock = threading.Lock()
        self.counts = {name: 0 for name in self.COUNTERS}
        self.input_rate = RateMeter(window_s)
        self.output_rate = RateMeter(window_s)
        self.latency = LatencyStats(latency_samples)
        self.backend_ms = LatencyStats(latency_samples)
        self.queue_ms = LatencyStats(latency_samples)
        self.last_error: str = ''

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (one of :attr:`COUNTERS`)."""
        with self._lock:
            self.counts[name] += n

    def reject(self, kind: str, why: str) -> None:
        """Count one rejected message of ``kind`` ('image' or 'camera_info') and remember why."""
        with self._lock:
            self.counts['rejected'] += 1
            self.counts[f'rejected_{kind}'] += 1
            self.last_error = why

    def input_tick(self, t_s: float) -> None:
        """Record one accepted input image at ``t_s`` (s)."""
        with self._lock:
            self.counts['received'] += 1
            self.input_rate.tick(t_s)

    def output_tick(self, t_s: float, latency_ms: float,
                    backend_ms: Optional[float] = None,
                    queue_ms: Optional[float] = None) -> None:
        """Record one published output at ``t_s`` (s).

        Latency is receive→publish, ``backend_ms`` the backend's share, ``queue_ms`` the
        time the frame waited before the worker took it (all ms).
        """
        with self._lock:
            self.counts['processed'] += 1
            self.output_rate.tick(t_s)
            self.latency.add(latency_ms)
            if backend_ms is not None:
                self.backend_ms.add(backend_ms)
            if queue_ms is not None:
                self.queue_ms.add(queue_ms)

    def summary(self, now_s: float) -> dict[str, float | int | str]:
        """Snapshot: counters, ``input_rate_hz``, ``output_rate_hz``, latency p50/p95 (ms)."""
        with self._lock:
            out: dict[str, float | int | str] = dict(self.counts)
            out['input_rate_hz'] = self.input_rate.rate_hz(now_s)
            out['output_rate_hz'] = self.output_rate.rate_hz(now_s)
            out['latency_p50_ms'] = self.latency.percentile(50)
            out['latency_p95_ms'] = self.latency.percentile(95)
            out['backend_p50_ms'] = self.backend_ms.percentile(50)
            out['queue_p50_ms'] = self.queue_ms.percentile(50)
            out['last_error'] = self.last_error
            return out


__all__ = ['RateMeter', 'LatencyStats', 'NodeStats']
