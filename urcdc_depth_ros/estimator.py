"""DepthEstimator: camera image + intrinsics -> metric depth + uncertainty (ROS-free).

Pre-processing (:mod:`.preprocessing`) -> backend (:mod:`.inference`) -> post-processing
(:mod:`.postprocessing`). Numpy in, numpy out; used by the ROS node and the bag evaluator.
Imports no torch: with the ONNX Runtime or TensorRT backend it runs on numpy + OpenCV alone.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .config import EstimatorConfig, ModelMeta
from .errors import BackendError, ConfigError, InputError
from .inference import InferenceBackend, create_backend
from .inference.base import run_in_batches
from .postprocessing import postprocess
from .preprocessing import preprocess
from .tta import fuse_flip

logger = logging.getLogger(__name__)


@dataclass
class DepthResult:
    """One estimate.

    Attributes:
        depth_m: (h, w) float32 metres along the optical axis; NaN = invalid / outside the
            network's view / outside [min_depth, max_depth].
        uncertainty: (h, w) float32 per ``EstimatorConfig.uncertainty`` (``'metres'``: expected
            |error| in m; ``'relative'``: expected |gt-d|/(gt+d); ``'confidence'``: raw head);
            NaN where depth is NaN.
        confidence: (h, w) float32 raw head in [0, 1], high = reliable; NaN outside the view.
        K: (3, 3) float64 intrinsics (pixels) of the returned maps.
        timings_ms: {'preprocess', 'backend', 'postprocess'} wall times, milliseconds.
    """

    depth_m: np.ndarray
    uncertainty: np.ndarray
    confidence: np.ndarray
    K: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class DepthEstimator:
    """Monocular metric depth with per-pixel uncertainty.

    Args:
        backend: an :class:`~urcdc_depth_ros.inference.InferenceBackend`.
        config: how images are mapped to the network and back (defaults in config.py).

    Not thread-safe: call :meth:`estimate` from one thread (the TensorRT backend's CUDA
    context belongs to the thread that created it).
    """

    def __init__(self, backend: InferenceBackend,
                 config: EstimatorConfig = EstimatorConfig()) -> None:
        if not isinstance(config, EstimatorConfig):
            raise ConfigError(f'config must be an EstimatorConfig, got {type(config).__name__}')
        for attr in ('meta', 'input_shape', 'infer'):
            if not hasattr(backend, attr):
                raise ConfigError(f'backend {backend!r} lacks {attr!r}; it must implement '
                                  'urcdc_depth_ros.inference.InferenceBackend')
        self.backend = backend
        self.config = config
        self.meta: ModelMeta = backend.meta
        #: the model's fitted uncertainty calibration, None = the uncalibrated formula
        self.calibration = self.meta.calibration()
        if config.uncertainty == 'bound90' and self.calibration is None:
            raise ConfigError("uncertainty='bound90' needs a model with a fitted calibration; "
                              'fit one with `urcdc-calibrate --model MODEL --bag BAG`, or use '
                              "uncertainty='metres'")
        self.input_size: tuple[int, int] = (self.meta.input_height, self.meta.input_width)

    @classmethod
    def from_model(cls, model_path: str | os.PathLike, backend: str = 'onnxruntime',
                   config: EstimatorConfig = EstimatorConfig(),
                   **backend_options) -> 'DepthEstimator':
        """Create the backend ``backend`` for ``model_path`` and wrap it (see create_backend)."""
        return cls(create_backend(backend, model_path, **backend_options), config)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backend call(s) on an (N, 3, h, w) input -> (depth (N, h, w), confidence (N, h, w)).

        One backend call for the whole batch (two with flip TTA), or calls of at most
        ``config.max_batch`` images.
        """
        n = x.shape[0]
        out = self._infer(x)
        try:
            depth = np.asarray(out['depth'], np.float32)[:, 0]
            conf = np.asarray(out['uncertainty'], np.float32)[:, 0]
            if depth.shape[0] != n or conf.shape[0] != n:
                raise IndexError(f'batch of {depth.shape[0]} results for {n} inputs')
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f'backend {self.backend.name!r} returned a malformed result '
                               f'({exc}); expected depth/uncertainty of shape (N, 1, H, W)'
                               ) from exc
        if self.config.flip_tta:
            out_f = self._infer(np.ascontiguousarray(x[..., ::-1]))
            depth_f = np.asarray(out_f['depth'], np.float32)[:, 0, :, ::-1]
            conf_f = np.asarray(out_f['uncertainty'], np.float32)[:, 0, :, ::-1]
            depth = fuse_flip(depth, depth_f).astype(np.float32)
            conf = fuse_flip(conf, conf_f).astype(np.float32)
        return depth, conf

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``backend.infer`` in calls of at most ``config.max_batch`` images (0 = one call)."""
        return run_in_batches(self.backend.infer, x, self.config.max_batch or x.shape[0])

    def estimate(self, image: np.ndarray, K, encoding: str = 'rgb8') -> DepthResult:
        """Estimate depth for one image.

        Args:
            image: (H, W, 3) rgb8/bgr8, (H, W, 4) rgba8/bgra8 or (H, W) mono8, uint8.
            K: (3, 3) camera intrinsics, pixels (CameraInfo.k).
            encoding: ``'rgb8' | 'bgr8' | 'rgba8' | 'bgra8' | 'mono8'``.
        Raises:
            InputError: malformed image or K (drop the frame and go on).
            BackendError: the backend failed.
        """
        return self.estimate_batch([image], [K], [encoding])[0]

    def estimate_batch(self, images: Sequence[np.ndarray], Ks: Sequence,
                       encodings: Sequence[str] | None = None,
                       resize_modes: Sequence[str | None] | None = None) -> list[DepthResult]:
        """Estimate depth for several images (e.g. one per camera) with one backend call.

        Images may differ in size and intrinsics: each is mapped to the network input by its
        own geometry (``resize_modes[i]``, None = the config's), so result ``i`` is what
        :meth:`estimate` gives for image ``i`` alone. ``timings_ms['backend']`` is the time of
        the shared call, ``'preprocess'`` the batch's share per image.

        Raises:
            InputError: a malformed image or K (the whole batch; check inputs beforehand or
                call :meth:`estimate` per image to isolate it).
            BackendError: the backend failed.
        """
        n = len(images)
        if n == 0 or len(Ks) != n:
            raise InputError(f'estimate_batch needs as many K as images (>= 1), got {n} '
                             f'images and {len(Ks)} K')
        encodings = list(encodings) if encodings is not None else ['rgb8'] * n
        modes = list(resize_modes) if resize_modes is not None else [None] * n
        t0 = time.perf_counter()
        x = np.empty((n, 3, *self.input_size), np.float32)
        geoms = []
        for i in range(n):
            xi, geom = preprocess(images[i], Ks[i], self.meta, encodings[i],
                                  modes[i] or self.config.resize_mode)
            x[i] = xi[0]
            geoms.append(geom)
        t1 = time.perf_counter()
        depth, conf = self._run(x)
        t2 = time.perf_counter()
        results = []
        for i, geom in enumerate(geoms):
            t_post = time.perf_counter()
            depth_m, unc, conf_i, K_out = postprocess(depth[i], conf[i], geom, self.meta,
                                                      self.config)
            results.append(DepthResult(
                depth_m=depth_m, uncertainty=unc, confidence=conf_i, K=K_out,
                timings_ms={'preprocess': (t1 - t0) * 1e3 / n, 'backend': (t2 - t1) * 1e3,
                            'postprocess': (time.perf_counter() - t_post) * 1e3}))
        return results

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> 'DepthEstimator':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ['DepthEstimator', 'DepthResult']
