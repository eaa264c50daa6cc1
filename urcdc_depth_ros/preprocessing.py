"""Camera image -> network input: validation, colour conversion, crop/resize, normalisation.

Colour conversion is :func:`urcdc_depth_ros.encodings.to_rgb` (the package's encoding table).

Pure numpy + OpenCV (no torch). Every geometric step returns the intrinsics ``K`` that match
its output exactly, so depth can be back-projected and focal-rescaled correctly; the
intrinsics arithmetic and its pixel-centre convention live in :mod:`urcdc_depth_ros.geometry`.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass

import cv2
import numpy as np

from .config import ModelMeta
from .encodings import to_rgb
from .errors import InputError
from .geometry import crop_intrinsics, resize_intrinsics, validate_intrinsics


@dataclass(frozen=True)
class Geometry:
    """How the network input relates to the camera image.

    Attributes:
        image_size: (H, W) of the camera image, pixels.
        scaled_size: (H, W) after the (optional) resize, before cropping, pixels.
        crop_top, crop_left: offset of the network window inside the resized image, pixels.
        model_size: (h, w) network input size, pixels.
        K_image: (3, 3) float64 intrinsics of the camera image.
        K_model: (3, 3) float64 intrinsics of the network input.
        mode: ``'kb_crop'`` or ``'resize'``.
    """

    image_size: tuple[int, int]
    scaled_size: tuple[int, int]
    crop_top: int
    crop_left: int
    model_size: tuple[int, int]
    K_image: np.ndarray
    K_model: np.ndarray
    mode: str


def plan_geometry(image_hw: tuple[int, int], K_px: np.ndarray, model_hw: tuple[int, int],
                  mode: str = 'kb_crop') -> Geometry:
    """Decide the resize and crop that map an ``image_hw`` image onto the ``model_hw`` input.

    ``kb_crop``: if the image is smaller than the model input in either dimension, it is first
    upscaled uniformly (rounded up per axis, K follows each axis exactly) to cover it; then the
    bottom ``h`` rows, horizontally centred, are taken (KITTI Benchmark crop).
    ``resize``: the whole image is resized to ``model_hw`` (aspect ratio not kept).
    """
    H, W = int(image_hw[0]), int(image_hw[1])
    h, w = int(model_hw[0]), int(model_hw[1])
    if mode == 'resize':
        scaled = (h, w)
        top = left = 0
    elif mode == 'kb_crop':
        if H < h or W < w:
            s = max(h / H, w / W)
            scaled = (max(h, int(np.ceil(H * s - 1e-9))), max(w, int(np.ceil(W * s - 1e-9))))
        else:
            scaled = (H, W)
        top = scaled[0] - h
        left = (scaled[1] - w) // 2
    else:
        raise InputError(f'resize mode {mode!r} is not one of [\'kb_crop\', \'resize\']')
    K_scaled = K_px if scaled == (H, W) else resize_intrinsics(K_px, (H, W), scaled)
    K_model = crop_intrinsics(K_scaled, top, left)
    return Geometry(image_size=(H, W), scaled_size=scaled, crop_top=top, crop_left=left,
                    model_size=(h, w), K_image=np.asarray(K_px, np.float64), K_model=K_model,
                    mode=mode)


def apply_geometry(rgb: np.ndarray, geom: Geometry) -> np.ndarray:
    """Resize/crop an (H, W, C) image per ``geom``; returns the (h, w, C) network window."""
    if tuple(rgb.shape[:2]) != geom.scaled_size:
        rgb = cv2.resize(rgb, (geom.scaled_size[1], geom.scaled_size[0]),
                         interpolation=cv2.INTER_LINEAR)
    h, w = geom.model_size
    return rgb[geom.crop_top:geom.crop_top + h, geom.crop_left:geom.crop_left + w]


@functools.lru_cache(maxsize=8)
def _normalise_luts(mean: tuple, std: tuple) -> tuple[np.ndarray, ...]:
    """Per channel, the float32 value of every uint8 level: ``(v/255 - mean) / std``."""
    v = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
    return tuple(((v - np.float32(m)) * np.float32(1.0 / float(s))).reshape(1, 256)
                 for m, s in zip(mean, std))


def normalise(rgb: np.ndarray, mean, std) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (1, 3, h, w) float32, ``(x/255 - mean) / std`` per channel.

    A 256-entry lookup table per channel (cv2.LUT) writes each output plane in one pass,
    the same float32 values as the arithmetic, about 8x faster at 352 x 1216.
    """
    luts = _normalise_luts(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    h, w = rgb.shape[:2]
    out = np.empty((1, 3, h, w), np.float32)
    for c, plane in enumerate(cv2.split(np.ascontiguousarray(rgb))):
        out[0, c] = cv2.LUT(plane, luts[c])
    return out


def preprocess(image: np.ndarray, K, meta: ModelMeta, encoding: str = 'rgb8',
               mode: str = 'kb_crop') -> tuple[np.ndarray, Geometry]:
    """Camera image + intrinsics -> (network input (1, 3, h, w) float32, :class:`Geometry`).

    Raises InputError for a malformed image or K (the caller drops the frame).
    """
    K_px = validate_intrinsics(K)
    rgb = to_rgb(image, encoding)
    geom = plan_geometry(rgb.shape[:2], K_px, (meta.input_height, meta.input_width), mode)
    window = apply_geometry(rgb, geom)
    return normalise(window, meta.mean, meta.std), geom


__all__ = ['Geometry', 'plan_geometry', 'apply_geometry', 'normalise', 'preprocess']
