"""Uncertainty calibration: (head value, predicted depth) -> expected |error| in metres.

The network's uncertainty head ``u`` in [0, 1] is trained toward ``exp(-5 |gt - d| / (gt + d))``
(high = reliable). Read as a relative error ``r = -ln(u) / 5`` it says nothing definite in
metres: the closed form depends on which side of the prediction the truth lies, and a head
trained for a few minutes is neither sharp nor unbiased. A calibration measures instead.

:func:`fit_calibration` takes, for held-out pixels with ground truth, the raw head ``u``, the
predicted depth ``d`` (m) and the observed ``|d - gt|`` (m). It cuts ``r`` and ``ln d`` into
equal-count bins and stores, per cell, the mean and the 90 % quantile of ``|d - gt| / d``;
along the head axis both are made non-decreasing (weighted isotonic regression, pool adjacent
violators), because a less confident head must never promise a smaller error. At inference
:meth:`UncertaintyCalibration.expected_abs_error_m` interpolates the table bilinearly
between cell centres (clamped at the ends) and multiplies by ``d``: the expected ``|error|``
in metres, and :meth:`~UncertaintyCalibration.bound_m` the 90 % bound.

The table is stored with the model as JSON in :attr:`ModelMeta.uncertainty_calibration`
(checkpoint ``meta``, ONNX ``metadata_props``, TensorRT sidecar ``meta``), so every backend
publishes the same numbers. It records what it was fitted on (``fitted_on``: source and frame
keys) so an evaluation on the same frames can warn (:func:`overlapping_frames`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import ConfigError, DataError

FORMAT = 'urcdc-uncertainty-calibration/1'
MIN_PIXELS = 10_000  # fewer pixels than this cannot fill the table reliably
BOUND_QUANTILE = 0.9
#: r is capped below 1 (u >= exp(-5) ~ 0.0067 already means "error as large as the depth").
MAX_RELATIVE_ERROR = 0.999
_U_FLOOR = float(np.exp(-5.0 * MAX_RELATIVE_ERROR))


def relative_error_from_confidence(u: np.ndarray) -> np.ndarray:
    """Expected |gt - d| / (gt + d) from the raw head ``u`` (any shape), float32 in [0, 0.999]."""
    u = np.clip(np.asarray(u, np.float32), _U_FLOOR, 1.0)
    return (-np.log(u) / np.float32(5.0)).astype(np.float32)


def frame_key(frame_id: str, stamp_ns: int) -> str:
    """Identity of one camera frame, ``'<frame_id>@<stamp ns>'`` (bags and KITTI drives alike)."""
    return f'{frame_id}@{int(stamp_ns)}'


def _digest(keys: Iterable[str]) -> list[str]:
    """12-hex SHA-1 of each key: compact, order-free frame identities for ``fitted_on``."""
    return sorted({hashlib.sha1(k.encode()).hexdigest()[:12] for k in keys})


def isotonic_non_decreasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of a 1-D sequence (pool adjacent violators).

    Zero-weight entries take the value of the block they fall into (or their neighbour's).
    """
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    blocks: list[list[float]] = []  # [weighted mean, weight, length]
    for x, wt in zip(v, w):
        blocks.append([x if wt > 0 else math.nan, float(wt), 1])
        while len(blocks) > 1:
            a, b = blocks[-2], blocks[-1]
            if math.isnan(b[0]):
                b[0] = a[0]
            if math.isnan(a[0]) or a[0] > b[0]:
                wt_sum = a[1] + b[1]
                mean = b[0] if math.isnan(a[0]) else (
                    (a[0] * a[1] + b[0] * b[1]) / wt_sum if wt_sum > 0 else a[0])
                blocks[-2:] = [[mean, wt_sum, a[2] + b[2]]]
            else:
                break
    out = np.concatenate([np.full(n, m) for m, _, n in blocks])
    if np.isnan(out).any():  # leading zero-weight entries: take the first fitted value
        first = out[np.isfinite(out)]
        out = np.where(np.isnan(out), first[0] if first.size else 0.0, out)
    return out


@dataclass(frozen=True)
class UncertaintyCalibration:
    """A fitted (relative-error head x depth) table of expected |error| / depth.

    Attributes:
        variant, max_depth: the model it was fitted for (checked against the model's metadata).
        r_centres: (R,) increasing head relative errors ``r = -ln(u) / 5`` of the cell centres.
        log_depth_centres: (D,) increasing ``ln(depth / 1 m)`` of the cell centres.
        mean_ratio: (D, R) expected ``|error| / depth`` per cell, non-decreasing along R.
        bound_ratio: (D, R) 90 % quantile of ``|error| / depth`` per cell, non-decreasing in R.
        n_pixels: pixels the fit used.
        fitted_on: {'source': text, 'frames': [12-hex digests of frame keys], ...}.
        estimator: estimator settings in force when fitting (resize_mode, flip_tta, ...).
    """

    variant: str
    max_depth: float
    r_centres: tuple[float, ...]
    log_depth_centres: tuple[float, ...]
    mean_ratio: tuple[tuple[float, ...], ...]
    bound_ratio: tuple[tuple[float, ...], ...]
    n_pixels: int
    fitted_on: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    estimator: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    # ---- inference ----------------------------------------------------------------------
    def _ratio(self, table: np.ndarray, u: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        r = relative_error_from_confidence(u)
        with np.errstate(invalid='ignore', divide='ignore'):
            ld = np.log(np.maximum(np.asarray(depth_m, np.float32), 1e-6))
        ir = np.interp(r, self._r, np.arange(self._r.size)).astype(np.float32)
        idd = np.interp(ld, self._ld, np.arange(self._ld.size)).astype(np.float32)
        r0 = np.minimum(ir.astype(np.int64), self._r.size - 1)
        d0 = np.minimum(idd.astype(np.int64), self._ld.size - 1)
        r1 = np.minimum(r0 + 1, self._r.size - 1)
        d1 = np.minimum(d0 + 1, self._ld.size - 1)
        fr, fd = ir - r0, idd - d0
        top = table[d0, r0] * (1 - fr) + table[d0, r1] * fr
        bottom = table[d1, r0] * (1 - fr) + table[d1, r1] * fr
        return (top * (1 - fd) + bottom * fd).astype(np.float32)

    def expected_abs_error_m(self, u: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """Expected |depth - truth|, metres; ``u`` raw head in [0, 1], ``depth_m`` same shape."""
        d = np.asarray(depth_m, np.float32)
        return (self._ratio(self._mean, u, d) * d).astype(np.float32)

    def bound_m(self, u: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """90 % bound of |depth - truth|, metres (truth within ``d ± bound`` 9 times in 10)."""
        d = np.asarray(depth_m, np.float32)
        return (self._ratio(self._bound, u, d) * d).astype(np.float32)

    @functools.cached_property
    def _r(self) -> np.ndarray:
        return np.asarray(self.r_centres, np.float32)

    @functools.cached_property
    def _ld(self) -> np.ndarray:
        return np.asarray(self.log_depth_centres, np.float32)

    @functools.cached_property
    def _mean(self) -> np.ndarray:
        return np.asarray(self.mean_ratio, np.float32)

    @functools.cached_property
    def _bound(self) -> np.ndarray:
        return np.asarray(self.bound_ratio, np.float32)

    # ---- checks and (de)serialisation ---------------------------------------------------
    def check_model(self, variant: str, max_depth: float, source: str = 'calibration') -> None:
        """Raise ConfigError when this table was fitted for another variant or depth range."""
        bad = []
        if self.variant != variant:
            bad.append(f'variant: calibration {self.variant!r}, model {variant!r}')
        if not math.isclose(self.max_depth, float(max_depth), rel_tol=1e-6):
            bad.append(f'max_depth: calibration {self.max_depth!r} m, model {max_depth!r} m')
        if bad:
            raise ConfigError(f'{source} does not match the model ({"; ".join(bad)}); refit it '
                              'with `urcdc-calibrate --model MODEL --bag CALIBRATION_BAG`')

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON)."""
        return {'format': FORMAT, 'variant': self.variant, 'max_depth': self.max_depth,
                'r_centres': list(self.r_centres),
                'log_depth_centres': list(self.log_depth_centres),
                'mean_ratio': [list(row) for row in self.mean_ratio],
                'bound_ratio': [list(row) for row in self.bound_ratio],
                'bound_quantile': BOUND_QUANTILE, 'n_pixels': self.n_pixels,
                'fitted_on': self.fitted_on, 'estimator': self.estimator}

    def to_json(self) -> str:
        """Compact JSON text (the form stored in :attr:`ModelMeta.uncertainty_calibration`)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(',', ':'))

    @classmethod
    def from_dict(cls, d: Any, source: str = 'calibration') -> 'UncertaintyCalibration':
        """Build and validate; raises ConfigError naming what is wrong with the table."""
        if not isinstance(d, dict) or d.get('format') != FORMAT:
            raise ConfigError(f'{source} is not a {FORMAT!r} table (format '
                              f'{d.get("format") if isinstance(d, dict) else type(d).__name__!r})'
                              '; refit it with `urcdc-calibrate`')
        try:
            r = tuple(float(x) for x in d['r_centres'])
            ld = tuple(float(x) for x in d['log_depth_centres'])
            mean = tuple(tuple(float(x) for x in row) for row in d['mean_ratio'])
            bound = tuple(tuple(float(x) for x in row) for row in d['bound_ratio'])
            cal = cls(variant=str(d['variant']), max_depth=float(d['max_depth']),
                      r_centres=r, log_depth_centres=ld, mean_ratio=mean, bound_ratio=bound,
                      n_pixels=int(d['n_pixels']), fitted_on=dict(d.get('fitted_on') or {}),
                      estimator=dict(d.get('estimator') or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f'{source} is a corrupt calibration table ({type(exc).__name__}: '
                              f'{exc}); refit it with `urcdc-calibrate`') from exc
        problems = []
        for name, axis in (('r_centres', r), ('log_depth_centres', ld)):
            a = np.asarray(axis)
            if a.size < 1 or not np.all(np.isfinite(a)) or np.any(np.diff(a) <= 0):
                problems.append(f'{name} must be finite and strictly increasing')
        for name, table in (('mean_ratio', mean), ('bound_ratio', bound)):
            t = np.asarray(table, dtype=object)
            if t.shape != (len(ld), len(r)):
                problems.append(f'{name} has shape {t.shape}, expected ({len(ld)}, {len(r)})')
                continue
            t = t.astype(np.float64)
            if not np.all(np.isfinite(t)) or np.any(t < 0):
                problems.append(f'{name} must be finite and >= 0')
            elif np.any(np.diff(t, axis=1) < -1e-9):
                problems.append(f'{name} must not decrease along the head axis')
        if problems:
            raise ConfigError(f'{source} is a corrupt calibration table: '
                              f'{"; ".join(problems)}; refit it with `urcdc-calibrate`')
        return cal

    @classmethod
    def from_json(cls, text: str, source: str = 'calibration') -> 'UncertaintyCalibration':
        """Parse the JSON text of :meth:`to_json` (cached: the node calls it per frame)."""
        return _parse_cached(text, source)


@functools.lru_cache(maxsize=8)
def _parse_cached(text: str, source: str) -> UncertaintyCalibration:
    try:
        d = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f'{source} is not valid JSON ({exc}); refit it with '
                          '`urcdc-calibrate`') from exc
    return UncertaintyCalibration.from_dict(d, source)


def _equal_count_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges of equal-count bins of ``x`` (duplicates removed)."""
    q = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(q)


def fit_calibration(confidence: np.ndarray, depth_m: np.ndarray, abs_error_m: np.ndarray,
                    variant: str, max_depth: float, head_bins: int = 12, depth_bins: int = 8,
                    min_pixels: int = MIN_PIXELS, frame_keys: Sequence[str] = (),
                    source: str = '', estimator: dict[str, Any] | None = None
                    ) -> UncertaintyCalibration:
    """Fit the table on held-out pixels (see the module docstring).

    Args:
        confidence: (N,) raw head in [0, 1] (1 = reliable).
        depth_m: (N,) predicted depth, metres, > 0.
        abs_error_m: (N,) observed |depth - truth|, metres.
        variant, max_depth: the model's (stored and checked when the table is used).
        head_bins, depth_bins: equal-count bins along ``r`` and ``ln d``.
        frame_keys: identities of the frames the pixels come from (:func:`frame_key`).
        source: what the pixels came from (bag path, split file), recorded in ``fitted_on``.
    Raises:
        DataError: fewer than ``min_pixels`` finite pixels.
    """
    u = np.asarray(confidence, np.float64).ravel()
    d = np.asarray(depth_m, np.float64).ravel()
    e = np.asarray(abs_error_m, np.float64).ravel()
    if not (u.shape == d.shape == e.shape):
        raise ValueError(f'confidence, depth and error differ in size: {u.shape}, {d.shape}, '
                         f'{e.shape}')
    ok = np.isfinite(u) & np.isfinite(d) & np.isfinite(e) & (d > 0)
    n = int(ok.sum())
    if n < min_pixels:
        raise DataError(f'calibration needs at least {min_pixels} pixels with ground truth, got '
                        f'{n}; give more frames (a longer calibration drive) or denser GT')
    u, d, e = u[ok], d[ok], e[ok]
    r = relative_error_from_confidence(u).astype(np.float64)
    ld = np.log(d)
    ratio = e / d
    r_edges = _equal_count_edges(r, head_bins)
    d_edges = _equal_count_edges(ld, depth_bins)
    ri = np.searchsorted(r_edges, r, side='right')
    di = np.searchsorted(d_edges, ld, side='right')
    nr, nd = r_edges.size + 1, d_edges.size + 1
    r_centres = np.array([r[ri == i].mean() for i in range(nr)])
    ld_centres = np.array([ld[di == j].mean() for j in range(nd)])
    # centres must be strictly increasing (a bin of one repeated value keeps order; nudge ties)
    r_centres = np.maximum.accumulate(r_centres + np.arange(nr) * 1e-9)
    ld_centres = np.maximum.accumulate(ld_centres + np.arange(nd) * 1e-9)
    mean = np.zeros((nd, nr))
    bound = np.zeros((nd, nr))
    for j in range(nd):
        in_d = di == j
        cnt = np.zeros(nr)
        m_row = np.zeros(nr)
        b_row = np.zeros(nr)
        for i in range(nr):
            cell = ratio[in_d & (ri == i)]
            cnt[i] = cell.size
            if cell.size:
                m_row[i] = cell.mean()
                b_row[i] = np.quantile(cell, BOUND_QUANTILE)
        if not cnt.any():  # cannot happen with equal-count depth bins; keep the table valid
            m_row[:] = ratio.mean()
            b_row[:] = np.quantile(ratio, BOUND_QUANTILE)
            cnt[:] = 1
        mean[j] = isotonic_non_decreasing(m_row, cnt)
        bound[j] = isotonic_non_decreasing(b_row, cnt)
    fitted_on = {'source': str(source), 'frames': _digest(frame_keys),
                 'n_frames': len(set(frame_keys))}
    cal = UncertaintyCalibration(
        variant=str(variant), max_depth=float(max_depth),
        r_centres=tuple(float(x) for x in r_centres),
        log_depth_centres=tuple(float(x) for x in ld_centres),
        mean_ratio=tuple(tuple(float(x) for x in row) for row in mean),
        bound_ratio=tuple(tuple(float(x) for x in row) for row in bound),
        n_pixels=n, fitted_on=fitted_on, estimator=dict(estimator or {}))
    return UncertaintyCalibration.from_dict(cal.to_dict(), 'the fitted calibration')


def overlapping_frames(calibration: UncertaintyCalibration, frame_keys: Iterable[str]) -> int:
    """How many of ``frame_keys`` the calibration was fitted on (0 = a clean held-out set)."""
    fitted = set(calibration.fitted_on.get('frames') or ())
    return len(fitted.intersection(_digest(frame_keys)))


__all__ = ['FORMAT', 'MIN_PIXELS', 'BOUND_QUANTILE', 'MAX_RELATIVE_ERROR',
           'relative_error_from_confidence', 'frame_key', 'isotonic_non_decreasing',
           'UncertaintyCalibration', 'fit_calibration', 'overlapping_frames']
