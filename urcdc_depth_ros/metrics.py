"""Depth and uncertainty metrics, the one implementation shared by training and evaluation.

Used by the trainer, ``urcdc-eval`` and the rosbag evaluator. All functions take numpy arrays
of depth in metres. ``gt <= 0`` or non-finite means "no ground truth"; non-finite predictions
are counted as missing (see ``coverage``), not as errors.
"""
from __future__ import annotations

import numpy as np

from .config import KITTI_MAX_DEPTH_M

METRIC_NAMES = ('silog', 'abs_rel', 'log10', 'rms', 'sq_rel', 'log_rms', 'd1', 'd2', 'd3')
LOWER_IS_BETTER = ('silog', 'abs_rel', 'log10', 'rms', 'sq_rel', 'log_rms')
HIGHER_IS_BETTER = ('d1', 'd2', 'd3')
DEPTH_RANGES_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0))


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """Garg et al. crop (KITTI): rows 40.81%..99.18%, cols 3.59%..96.40%; (H, W) bool."""
    mask = np.zeros((height, width), bool)
    mask[int(0.40810811 * height):int(0.99189189 * height),
         int(0.03594771 * width):int(0.96405229 * width)] = True
    return mask


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """Eigen et al. crop (KITTI): rows 32.97%..91.35%, cols 3.59%..96.40%; (H, W) bool."""
    mask = np.zeros((height, width), bool)
    mask[int(0.3324324 * height):int(0.91351351 * height),
         int(0.0359477 * width):int(0.96405229 * width)] = True
    return mask


def nyu_eval_mask(height: int = 480, width: int = 640) -> np.ndarray:
    """NYU-Depth-v2 evaluation region (rows 45..471, cols 43..607 at 480x640); (H, W) bool."""
    mask = np.zeros((height, width), bool)
    mask[45:471, 43:607] = True
    return mask


def valid_mask(gt_m: np.ndarray, min_depth: float = 1e-3,
               max_depth: float = KITTI_MAX_DEPTH_M,
               crop: str | None = None) -> np.ndarray:
    """Pixels with ground truth in (min_depth, max_depth) m, optionally inside a crop.

    Args:
        gt_m: (H, W) ground-truth depth, metres; 0/NaN = none.
        crop: ``None``, ``'garg'``, ``'eigen'`` or ``'nyu'``.
    """
    gt = np.asarray(gt_m)
    with np.errstate(invalid='ignore'):
        mask = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if crop is None:
        return mask
    crops = {'garg': garg_crop_mask, 'eigen': eigen_crop_mask, 'nyu': nyu_eval_mask}
    if crop not in crops:
        raise ValueError(f'crop={crop!r} is not one of {[None, *crops]}')
    return mask & crops[crop](*gt.shape[-2:])


def depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray) -> dict[str, float]:
    """The nine standard metrics over paired valid samples.

    Args:
        pred_m, gt_m: 1-D (or same-shape) arrays of predicted / true depth, metres, both > 0.
            Select valid pixels first (``valid_mask``) and clamp predictions to the
            evaluation range as the protocol says.
    Returns:
        dict with METRIC_NAMES; NaN for every metric when there is no sample.
        silog = 100 * sqrt(mean(g^2) - mean(g)^2), g = ln p - ln gt (as the official eval).
    """
    p = np.asarray(pred_m, np.float64).ravel()
    g = np.asarray(gt_m, np.float64).ravel()
    if p.shape != g.shape:
        raise ValueError(f'pred and gt differ in size: {p.shape} vs {g.shape}')
    if p.size == 0:
        return {k: float('nan') for k in METRIC_NAMES}
    thresh = np.maximum(g / p, p / g)
    err_log = np.log(p) - np.log(g)
    return {
        'silog': float(np.sqrt(max(np.mean(err_log ** 2) - np.mean(err_log) ** 2, 0.0)) * 100),
        'abs_rel': float(np.mean(np.abs(g - p) / g)),
        'log10': float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        'rms': float(np.sqrt(np.mean((g - p) ** 2))),
        'sq_rel': float(np.mean((g - p) ** 2 / g)),
        'log_rms': float(np.sqrt(np.mean(err_log ** 2))),
        'd1': float(np.mean(thresh < 1.25)),
        'd2': float(np.mean(thresh < 1.25 ** 2)),
        'd3': float(np.mean(thresh < 1.25 ** 3)),
    }


def evaluate_depth(pred_m: np.ndarray, gt_m: np.ndarray, min_depth: float = 1e-3,
                   max_depth: float = KITTI_MAX_DEPTH_M,
                   crop: str | None = 'garg') -> dict[str, float]:
    """Protocol evaluation of one (H, W) prediction against (H, W) ground truth.

    Predictions are clamped to [min_depth, max_depth] (official protocol); GT is valid in
    (min_depth, max_depth) and inside ``crop``. Non-finite predictions on valid GT pixels are
    left out and reported through ``coverage`` (fraction of valid GT pixels with a prediction).
    Adds ``n`` (pixels evaluated).
    """
    pred = np.asarray(pred_m)
    gt = np.asarray(gt_m, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in shape')
    mask = valid_mask(gt, min_depth, max_depth, crop)
    n_gt = int(mask.sum())
    _, p, g = protocol_pairs(pred, gt, mask, min_depth, max_depth)
    out = depth_metrics(p, g)
    out['n'] = int(p.size)
    out['coverage'] = float(p.size / n_gt) if n_gt else float('nan')
    return out


def protocol_pairs(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray, min_depth: float,
                   max_depth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evaluated pixels of one image: (selection, clamped predictions, GT).

    ``selection`` is ``mask`` (from :func:`valid_mask`) less the pixels without a finite
    prediction; predictions there are clamped to [min_depth, max_depth] (official protocol).
    Only the selected values are converted to float64, never the whole image.
    """
    sel = mask & np.isfinite(pred_m)
    p = np.clip(np.asarray(pred_m)[sel].astype(np.float64), min_depth, max_depth)
    return sel, p, np.asarray(gt_m)[sel].astype(np.float64)


def metrics_by_range(pred_m: np.ndarray, gt_m: np.ndarray,
                     ranges_m=DEPTH_RANGES_M) -> dict[str, dict[str, float]]:
    """Metrics per ground-truth depth band, keyed ``'0-10'`` etc.; inputs are 1-D valid pairs."""
    p = np.asarray(pred_m, np.float64).ravel()
    g = np.asarray(gt_m, np.float64).ravel()
    rows = {}
    for lo, hi in ranges_m:
        sel = (g >= lo) & (g < hi)
        row = depth_metrics(p[sel], g[sel])
        row['n'] = int(sel.sum())
        rows[f'{lo:g}-{hi:g}'] = row
    return rows


class MetricAccumulator:
    """Averages per-image metrics over a data set (the official eval averages per image)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self.count = 0

    def add(self, metrics: dict[str, float]) -> None:
        """Add one image's metrics (images with no valid pixel are skipped)."""
        if not metrics or not np.isfinite(metrics.get('abs_rel', np.nan)):
            return
        for k in METRIC_NAMES:
            self._sums[k] = self._sums.get(k, 0.0) + float(metrics[k])
        self.count += 1

    def mean(self) -> dict[str, float]:
        """Per-image mean of each metric (NaN when nothing was added)."""
        if not self.count:
            return {k: float('nan') for k in METRIC_NAMES}
        return {k: self._sums[k] / self.count for k in METRIC_NAMES}


# --- uncertainty quality -------------------------------------------------------------------

def sparsification_curve(error: np.ndarray, uncertainty: np.ndarray,
                         steps: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparsification of ``error`` by ``uncertainty`` and by the oracle (the error itself).

    Remove the fraction ``f`` of samples with the highest uncertainty and report the mean error
    of the rest, for f in 0, 1/steps, ..., (steps-1)/steps. Higher ``uncertainty`` must mean
    *less* reliable (convert a confidence map first, e.g. ``1 - c``).

    Args:
        error: 1-D per-pixel error (e.g. absolute relative error), finite.
        uncertainty: 1-D, same length.
    Returns:
        fractions (steps,), model curve (steps,), oracle curve (steps,); curves are normalised
        by the error at f = 0, so both start at 1.
    """
    e = np.asarray(error, np.float64).ravel()
    u = np.asarray(uncertainty, np.float64).ravel()
    if e.shape != u.shape:
        raise ValueError(f'error and uncertainty differ in size: {e.shape} vs {u.shape}')
    fractions = np.arange(steps) / steps
    if e.size == 0:
        nan = np.full(steps, np.nan)
        return fractions, nan, nan.copy()
    by_unc = e[np.argsort(-u, kind='stable')]
    by_err = np.sort(e)[::-1]
    # mean of the kept tail for each removal fraction, from suffix sums
    n = e.size
    keep_from = np.minimum((fractions * n).astype(int), n - 1)
    tail_unc = np.cumsum(by_unc[::-1])[::-1]
    tail_err = np.cumsum(by_err[::-1])[::-1]
    counts = n - keep_from
    base = e.mean() if e.mean() > 0 else 1.0
    model = tail_unc[keep_from] / counts / base
    oracle = tail_err[keep_from] / counts / base
    return fractions, model, oracle


def ause_aurg(error: np.ndarray, uncertainty: np.ndarray, steps: int = 20) -> dict[str, float]:
    """Area Under the Sparsification Error (lower is better) and Area Under the Random Gain.

    AUSE = area between the model's and the oracle's sparsification curves; AURG = area between
    random removal (flat at 1) and the model's curve (higher is better; > 0 means the
    uncertainty ranks errors better than chance). Both on curves normalised to start at 1.
    """
    fractions, model, oracle = sparsification_curve(error, uncertainty, steps)
    if not np.all(np.isfinite(model)):
        return {'ause': float('nan'), 'aurg': float('nan')}
    dx = 1.0 / steps
    return {'ause': float(np.sum(model - oracle) * dx), 'aurg': float(np.sum(1.0 - model) * dx)}


def calibration_bins(error: np.ndarray, predicted_error: np.ndarray,
                     bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability data: mean predicted vs mean observed error in equal-count bins.

    Returns (mean predicted, mean observed, count) per bin; a calibrated estimator lies on the
    diagonal. Both inputs in the same unit (e.g. metres).
    """
    e = np.asarray(error, np.float64).ravel()
    s = np.asarray(predicted_error, np.float64).ravel()
    if e.size == 0:
        z = np.zeros(0)
        return z, z, z
    order = np.argsort(s, kind='stable')
    chunks = np.array_split(order, min(bins, e.size))
    pred = np.array([s[c].mean() for c in chunks])
    obs = np.array([e[c].mean() for c in chunks])
    cnt = np.array([c.size for c in chunks], float)
    return pred, obs, cnt


__all__ = ['METRIC_NAMES', 'LOWER_IS_BETTER', 'HIGHER_IS_BETTER', 'DEPTH_RANGES_M',
           'garg_crop_mask', 'eigen_crop_mask', 'nyu_eval_mask', 'valid_mask', 'depth_metrics',
           'evaluate_depth', 'protocol_pairs', 'metrics_by_range', 'MetricAccumulator',
           'sparsification_curve', 'ause_aurg', 'calibration_bins']
