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
        crop_top, crop_left: offset of the network window inside the resized image, pixels;
            negative where the resized image is smaller than the window on that axis (it then
            sits at ``(-crop_top, -crop_left)`` inside the window, the rest is padding).
        model_size: (h, w) network input size, pixels.
        K_image: (3, 3) float64 intrinsics of the camera image.
        K_model: (3, 3) float64 intrinsics of the network input.
        mode: ``'auto'``, ``'kb_crop'`` or ``'resize'``.
    """

    image_size: tuple[int, int]
    scaled_size: tuple[int, int]
    crop_top: int
    crop_left: int
    model_size: tuple[int, int]
    K_image: np.ndarray
    K_model: np.ndarray
    mode: str


def _auto_scaled_size(image_hw: tuple[int, int], K_px: np.ndarray,
                      focal_px: float | None) -> tuple[int, int]:
    """Image size whose fx equals the training focal ``focal_px`` (same scale on both axes)."""
    if not focal_px or not focal_px > 0:
        raise InputError("resize mode 'auto' needs the model's training focal length "
                         '(ModelMeta.focal_px > 0)')
    s = float(focal_px) / float(K_px[0, 0])
    return (max(1, int(round(image_hw[0] * s))), max(1, int(round(image_hw[1] * s))))


def _window_offset(scaled: int, size: int, bottom: bool) -> int:
    """Offset of a ``size`` window on an axis of length ``scaled``; negative = padding.

    Larger axes are cropped (bottom-aligned rows when ``bottom``, else centred, as the KB crop
    does for rows and columns), smaller ones are centred in the window.
    """
    if scaled >= size:
        return scaled - size if bottom else (scaled - size) // 2
    return -((size - scaled) // 2)


def plan_geometry(image_hw: tuple[int, int], K_px: np.ndarray, model_hw: tuple[int, int],
                  mode: str = 'kb_crop', focal_px: float | None = None) -> Geometry:
    """Decide the resize and crop that map an ``image_hw`` image onto the ``model_hw`` input.

    ``auto``: the image is resized uniformly so that its fx equals ``focal_px`` (the model's
    training focal: metric depth depends on it), then KB-cropped (bottom rows, centred
    columns) on an axis where it is larger than the model input and centred with padding
    where it is smaller.
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
    elif mode == 'auto':
        scaled = _auto_scaled_size((H, W), K_px, focal_px)
        top = _window_offset(scaled[0], h, bottom=True)
        left = _window_offset(scaled[1], w, bottom=False)
    elif mode == 'kb_crop':
        if H < h or W < w:
            s = max(h / H, w / W)
            scaled = (max(h, int(np.ceil(H * s - 1e-9))), max(w, int(np.ceil(W * s - 1e-9))))
        else:
            scaled = (H, W)
        top = scaled[0] - h
        left = (scaled[1] - w) // 2
    else:
        raise InputError(f"resize mode {mode!r} is not one of ['auto', 'kb_crop', 'resize']")
    K_scaled = K_px if scaled == (H, W) else resize_intrinsics(K_px, (H, W), scaled)
    K_model = crop_intrinsics(K_scaled, top, left)
    return Geometry(image_size=(H, W), scaled_size=scaled, crop_top=top, crop_left=left,
                    model_size=(h, w), K_image=np.asarray(K_px, np.float64), K_model=K_model,
                    mode=mode)


def view_fraction(geom: Geometry) -> float:
    """Share of the camera image's pixels that the network window sees, in [0, 1]."""
    Hs, Ws = geom.scaled_size
    h, w = geom.model_size
    rows = min(Hs, geom.crop_top + h) - max(0, geom.crop_top)
    cols = min(Ws, geom.crop_left + w) - max(0, geom.crop_left)
    return max(0, rows) * max(0, cols) / float(Hs * Ws)


def window_overlap(geom: Geometry) -> tuple[slice, slice, slice, slice]:
    """Slices (rows, cols) of the resized image and (rows, cols) of the window: same pixels.

    The whole window unless the image is padded (``auto`` on a small image).
    """
    Hs, Ws = geom.scaled_size
    h, w = geom.model_size
    t, left = geom.crop_top, geom.crop_left
    r0, r1 = max(0, t), min(Hs, t + h)
    c0, c1 = max(0, left), min(Ws, left + w)
    return (slice(r0, r1), slice(c0, c1), slice(r0 - t, r1 - t), slice(c0 - left, c1 - left))


def apply_geometry(rgb: np.ndarray, geom: Geometry, pad_value: tuple[int, ...] = (0, 0, 0)
                   ) -> np.ndarray:
    """Resize/crop an (H, W, C) image per ``geom``; returns the (h, w, C) network window.

    Where the resized image is smaller than the window (``auto``), the rest is ``pad_value``.
    """
    if tuple(rgb.shape[:2]) != geom.scaled_size:
        rgb = cv2.resize(rgb, (geom.scaled_size[1], geom.scaled_size[0]),
                         interpolation=cv2.INTER_LINEAR)
    h, w = geom.model_size
    if geom.crop_top >= 0 and geom.crop_left >= 0:
        return rgb[geom.crop_top:geom.crop_top + h, geom.crop_left:geom.crop_left + w]
    rows, cols, win_rows, win_cols = window_overlap(geom)
    window = np.empty((h, w) + rgb.shape[2:], rgb.dtype)
    window[...] = np.asarray(pad_value, rgb.dtype)[:rgb.shape[2]] if rgb.ndim == 3 else \
        pad_value[0]
    window[win_rows, win_cols] = rgb[rows, cols]
    return window


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
               mode: str = 'auto') -> tuple[np.ndarray, Geometry]:
    """Camera image + intrinsics -> (network input (1, 3, h, w) float32, :class:`Geometry`).

    Padding (``auto`` on a small image) is the mean colour, i.e. 0 after normalisation.
    Raises InputError for a malformed image or K (the caller drops the frame).
    """
    K_px = validate_intrinsics(K)
    rgb = to_rgb(image, encoding)
    geom = plan_geometry(rgb.shape[:2], K_px, (meta.input_height, meta.input_width), mode,
                         focal_px=meta.focal_px)
    window = apply_geometry(rgb, geom, tuple(int(round(m * 255)) for m in meta.mean))
    return normalise(window, meta.mean, meta.std), geom


__all__ = ['Geometry', 'plan_geometry', 'view_fraction', 'window_overlap', 'apply_geometry',
           'normalise', 'preprocess']
