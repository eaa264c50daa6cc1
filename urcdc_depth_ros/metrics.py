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
    """NYU-Depth-v2 evaluation crop of the official eval.py: rows 45..471, cols 41..601; bool.

    The official evaluation (``eval.py``, ``--eigen_crop`` for NYU) crops ``[45:471, 41:601]``
    at 480x640; it is the ``'nyu'`` crop and the NYU default (see :func:`nyu_train_mask`).
    """
    mask = np.zeros((height, width), bool)
    mask[45:471, 41:601] = True
    return mask


def nyu_train_mask(height: int = 480, width: int = 640) -> np.ndarray:
    """NYU training valid region, rows 45..471, cols 43..607 (crop ``'nyu_train'``); bool.

    The official dataloader's valid region (the white border of the NYU images excluded);
    this package used it for evaluation before matching the official eval crop.
    """
    mask = np.zeros((height, width), bool)
    mask[45:471, 43:607] = True
    return mask


def valid_mask(gt_m: np.ndarray, min_depth: float = 1e-3,
               max_depth: float = KITTI_MAX_DEPTH_M,
               crop: str | None = None) -> np.ndarray:
    """Pixels with ground truth in (min_depth, max_depth) m, optionally inside a crop.

    Args:
        gt_m: (H, W) ground-truth depth, metres; 0/NaN = none.
        crop: ``None``, ``'garg'``, ``'eigen'``, ``'nyu'`` (official eval crop) or
            ``'nyu_train'`` (the training valid region).
    """
    gt = np.asarray(gt_m)
    with np.errstate(invalid='ignore'):
        mask = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if crop is None:
        return mask
    crops = {'garg': garg_crop_mask, 'eigen': eigen_crop_mask, 'nyu': nyu_eval_mask,
             'nyu_train': nyu_train_mask}
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
    if e.size == 0:
        nan = np.full(steps, np.nan)
        return np.arange(steps) / steps, nan, nan.copy()
    return _sparsify(e, np.argsort(-u, kind='stable'), np.sort(e)[::-1], steps)


def _sparsify(e: np.ndarray, order: np.ndarray, by_err: np.ndarray, steps: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sparsification_curve` of float64 ``e`` (non-empty) from its two sort orders.

    ``order``: ``argsort(-uncertainty, kind='stable')``; ``by_err``: ``sort(e)[::-1]``. Given
    once per ranking and per error, several curves share the sorts (the same figures).
    """
    fractions = np.arange(steps) / steps
    by_unc = e[order]
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
    return _areas(sparsification_curve(error, uncertainty, steps), steps)


def _areas(curves: tuple[np.ndarray, np.ndarray, np.ndarray], steps: int) -> dict[str, float]:
    """AUSE and AURG of :func:`sparsification_curve`'s result."""
    _, model, oracle = curves
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


def calibration_error(error: np.ndarray, predicted_error: np.ndarray, bins: int = 10) -> float:
    """Relative calibration error: ``sum |mean predicted - mean observed| / sum mean observed``.

    Over ``bins`` equal-count bins of the predicted error (:func:`calibration_bins`); 0 for a
    calibrated estimator, NaN without samples. Both inputs in the same unit (metres).
    """
    pred, obs, _ = calibration_bins(error, predicted_error, bins)
    total = float(np.sum(obs))
    return float(np.sum(np.abs(pred - obs)) / total) if obs.size and total > 0 else float('nan')


#: the rankings every uncertainty is compared with: ``depth`` is sigma = c * depth (any c > 0
#: ranks the same), a baseline that knows nothing but the depth; ``random`` is chance.
UNCERTAINTY_BASELINES = ('oracle', 'random', 'depth')


def uncertainty_scores(pred_m: np.ndarray, gt_m: np.ndarray, uncertainty: np.ndarray,
                       bound_m: np.ndarray | None = None, metres: bool = True,
                       steps: int = 20, bins: int = 10, seed: int = 0) -> dict[str, float]:
    """How well ``uncertainty`` ranks and predicts the errors of ``pred_m``, beside baselines.

    Args:
        pred_m, gt_m: 1-D paired valid predictions and ground truth, metres.
        uncertainty: 1-D, higher = less reliable (metres when ``metres``).
        bound_m: optional 1-D interval half-width (m); adds ``coverage`` = fraction of pixels
            with ``|pred - gt| <= bound``.
        metres: the uncertainty claims to be the expected |error| in metres: adds the
            calibration error and the mean predicted vs observed.
    Returns:
        ``ause_abs_rel``/``aurg_abs_rel`` (errors |p-g|/g) and ``ause_abs_m``/``aurg_abs_m``
        (errors |p-g| m) for the model and, prefixed ``depth_``, ``random_``, ``oracle_``, for
        the baselines; ``aurg_margin_abs_m`` = model minus depth baseline; with ``metres``:
        ``calibration_error``, ``mean_predicted_m``, ``mean_observed_abs_err_m``.
    """
    p = np.asarray(pred_m, np.float64).ravel()
    g = np.asarray(gt_m, np.float64).ravel()
    u = np.asarray(uncertainty, np.float64).ravel()
    abs_err = np.abs(p - g)
    errors = {'abs_rel': abs_err / np.where(g > 0, g, np.nan), 'abs_m': abs_err}
    rankings = {'': u, 'depth_': p, 'oracle_': abs_err,
                'random_': np.random.default_rng(seed).random(p.size)}
    out: dict[str, float] = {'n': int(p.size)}
    # each ranking's order and each error's sorted copy are computed once (eight curves share
    # four argsorts and two sorts); the curves are ause_aurg's, bit for bit
    by_err = {name: np.sort(err)[::-1] for name, err in errors.items()}
    for prefix, ranking in rankings.items():
        order = np.argsort(-ranking, kind='stable') if ranking.size == p.size else None
        for name, err in errors.items():
            if order is None or not err.size:
                got = ause_aurg(err, ranking, steps)
            else:
                got = _areas(_sparsify(err, order, by_err[name], steps), steps)
            for k, v in got.items():
                out[f'{prefix}{k}_{name}'] = v
    out['aurg_margin_abs_m'] = out['aurg_abs_m'] - out['depth_aurg_abs_m']
    out['aurg_margin_abs_rel'] = out['aurg_abs_rel'] - out['depth_aurg_abs_rel']
    if metres:
        out['calibration_error'] = calibration_error(abs_err, u, bins)
        out['mean_predicted_m'] = float(np.mean(u)) if u.size else float('nan')
        out['mean_observed_abs_err_m'] = float(np.mean(abs_err)) if u.size else float('nan')
    if bound_m is not None:
        b = np.asarray(bound_m, np.float64).ravel()
        out['coverage'] = float(np.mean(abs_err <= b)) if b.size else float('nan')
    return out


__all__ = ['METRIC_NAMES', 'LOWER_IS_BETTER', 'HIGHER_IS_BETTER', 'DEPTH_RANGES_M',
           'garg_crop_mask', 'eigen_crop_mask', 'nyu_eval_mask', 'nyu_train_mask',
           'valid_mask', 'depth_metrics',
           'evaluate_depth', 'protocol_pairs', 'metrics_by_range', 'MetricAccumulator',
           'sparsification_curve', 'ause_aurg', 'calibration_bins', 'calibration_error',
           'UNCERTAINTY_BASELINES', 'uncertainty_scores']
