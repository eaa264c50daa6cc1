"""Network output -> metric depth and uncertainty at the requested resolution.

Pure numpy + OpenCV. Steps (:func:`postprocess`): focal rescaling (metric depth for a camera
whose focal length differs from the training camera's), placement back into the camera image
(crop placed back / resize undone; NaN outside the network's view), validity range (NaN outside
``[min_depth, max_depth]``) and conversion of the uncertainty head.

The uncertainty head ``u`` in [0, 1] is trained toward ``exp(-5 |gt - d| / (gt + d))`` (high =
reliable). ``r = -ln(u) / 5`` is the expected relative error ``|gt - d| / (gt + d)``.

``metres`` with a fitted calibration (the model's ``ModelMeta.uncertainty_calibration``, see
:mod:`.calibration`): the measured expected ``|error|`` for this head value at this depth.
Without one, the uncalibrated formula: solving ``r = |gt - d| / (gt + d)`` for ``e = |gt - d|``
gives ``e = 2 d r / (1 - r)`` when the truth is farther and ``2 d r / (1 + r)`` when nearer;
with no knowledge of the side we report their mean, ``2 d r / (1 - r^2)``. ``bound90`` is the
calibration's 90 % bound of ``|error|`` (needs a calibration).
"""
from __future__ import annotations

import cv2
import numpy as np

from .calibration import MAX_RELATIVE_ERROR, UncertaintyCalibration, \
    relative_error_from_confidence
from .config import EstimatorConfig, ModelMeta
from .errors import ConfigError
from .preprocessing import Geometry, window_overlap


def metres_from_confidence(u: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """Uncalibrated expected absolute error, metres: ``2 d r / (1 - r^2)``; shape of ``depth_m``.

    The mean of the two errors a relative error ``r`` allows (truth farther or nearer); ``r``
    is capped at 0.999, so the value stays finite.
    """
    r = relative_error_from_confidence(u)
    return (2.0 * depth_m * r / (1.0 - r * r)).astype(np.float32)


def convert_uncertainty(u: np.ndarray, depth_m: np.ndarray, kind: str,
                        calibration: UncertaintyCalibration | None = None) -> np.ndarray:
    """Raw head ``u`` -> ``'metres'`` | ``'bound90'`` | ``'relative'`` | ``'confidence'``.

    ``calibration`` (the model's, if fitted) turns ``metres`` into the measured expected error
    and is required for ``bound90`` (module docstring).
    """
    if kind == 'metres':
        if calibration is not None:
            return calibration.expected_abs_error_m(u, depth_m)
        return metres_from_confidence(u, depth_m)
    if kind == 'bound90':
        if calibration is None:
            raise ConfigError("uncertainty='bound90' needs a model with a fitted calibration; "
                              'fit one with `urcdc-calibrate --model MODEL --bag BAG`')
        return calibration.bound_m(u, depth_m)
    if kind == 'relative':
        return relative_error_from_confidence(u)
    if kind == 'confidence':
        return np.clip(np.asarray(u, np.float32), 0.0, 1.0)
    kinds = EstimatorConfig.UNCERTAINTY_KINDS
    raise ConfigError(f'uncertainty kind {kind!r} is not one of {kinds}')


def to_input_resolution(values: np.ndarray, geom: Geometry) -> np.ndarray:
    """Map an (h, w) float32 network-resolution map back to the (H, W) camera image.

    ``kb_crop`` / ``auto``: the window (less any padding) is placed back into a NaN canvas of
    the resized image, which is then resized to the camera size (bilinear; NaN spreads one
    pixel at the window border). ``resize``: bilinear resize back to the camera size.
    """
    H, W = geom.image_size
    values = np.asarray(values, np.float32)
    if geom.mode == 'resize':
        return cv2.resize(values, (W, H), interpolation=cv2.INTER_LINEAR)
    rows, cols, win_rows, win_cols = window_overlap(geom)
    canvas = np.full(geom.scaled_size, np.nan, np.float32)
    canvas[rows, cols] = values[win_rows, win_cols]
    if geom.scaled_size != (H, W):
        canvas = cv2.resize(canvas, (W, H), interpolation=cv2.INTER_LINEAR)
    return canvas


def depth_range(meta: ModelMeta, config: EstimatorConfig) -> tuple[float, float]:
    """Valid depth range (min, max) in metres: the config's, else the model's."""
    lo = meta.min_depth if config.min_depth is None else float(config.min_depth)
    hi = meta.max_depth if config.max_depth is None else float(config.max_depth)
    return lo, hi


def postprocess(depth: np.ndarray, confidence: np.ndarray, geom: Geometry, meta: ModelMeta,
                config: EstimatorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Network maps -> (depth_m, uncertainty, confidence, K) at the configured resolution.

    Args:
        depth: (h, w) float32 network depth, metres for the training camera.
        confidence: (h, w) float32 raw uncertainty head in [0, 1], high = reliable.
        geom: from :func:`urcdc_depth_ros.preprocessing.preprocess`.
    Returns:
        depth_m: (H', W') float32 metres; NaN outside the view or outside the valid range.
        uncertainty: (H', W') float32 per ``config.uncertainty``; NaN where depth is NaN.
        confidence: (H', W') float32 in [0, 1]; NaN outside the network's view only.
        K: (3, 3) float64 intrinsics of the returned maps (camera K at input resolution).
    """
    depth = np.asarray(depth, np.float32)
    if config.rescale_focal:
        depth = depth * np.float32(geom.K_model[0, 0] / meta.focal_px)
    confidence = np.clip(np.asarray(confidence, np.float32), 0.0, 1.0)
    lo, hi = depth_range(meta, config)
    to_input = config.output_resolution == 'input'
    K_out = (geom.K_image if to_input else geom.K_model).copy()
    placed_back = geom.mode != 'resize' and geom.scaled_size == geom.image_size
    if to_input and not placed_back:
        # resampled: interpolate the network's maps, then derive validity and uncertainty
        depth = to_input_resolution(depth, geom)
        confidence = to_input_resolution(confidence, geom)
    depth, uncertainty = _valid_depth_and_uncertainty(depth, confidence, lo, hi,
                                                      config.uncertainty, meta.calibration())
    if to_input and placed_back:
        # the crop goes back unchanged: the same values, computed on the smaller map
        depth, uncertainty, confidence = (to_input_resolution(a, geom)
                                          for a in (depth, uncertainty, confidence))
    return depth, uncertainty, confidence, K_out


def _valid_depth_and_uncertainty(depth: np.ndarray, confidence: np.ndarray, lo: float,
                                 hi: float, kind: str,
                                 calibration: UncertaintyCalibration | None
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Depth NaN outside [lo, hi] (and where NaN), uncertainty of ``kind``, NaN there too."""
    with np.errstate(invalid='ignore'):
        invalid = ~((depth >= lo) & (depth <= hi))  # NaN compares False: invalid
    depth = np.where(invalid, np.float32(np.nan), depth).astype(np.float32, copy=False)
    if np.isnan(confidence).any():
        confidence = np.nan_to_num(confidence, nan=1.0)
    uncertainty = convert_uncertainty(confidence, depth, kind, calibration)
    uncertainty[invalid] = np.nan
    return depth, uncertainty


__all__ = ['MAX_RELATIVE_ERROR', 'relative_error_from_confidence', 'metres_from_confidence',
           'convert_uncertainty', 'to_input_resolution', 'depth_range', 'postprocess']
