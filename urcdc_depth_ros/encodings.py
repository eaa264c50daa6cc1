"""The image encoding table and the one Image buffer <-> numpy conversion (no ROS, no torch).

In the spirit of depth_image_proc's ``DepthTraits``: each ``sensor_msgs/Image`` encoding the
package reads or writes has one :class:`EncodingTraits` row (element dtype, channels, how it
becomes RGB, depth unit). The node's ``ros_io``, the estimator's preprocessing and the bag tools'
``bag_io`` all convert through here, so they accept the same encodings, reject the same
malformed messages with the same :class:`~urcdc_depth_ros.errors.InputError`, and agree on
what a ``16UC1`` pixel means (millimetres, REP 118; 0 = no depth).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .errors import InputError

HOST_BIGENDIAN = sys.byteorder == 'big'
MAX_SIDE_PX = 16384  # larger images are treated as corrupt headers


@dataclass(frozen=True)
class EncodingTraits:
    """What one image encoding holds.

    Attributes:
        dtype: element type (native byte order).
        channels: values per pixel (1 = a 2-D ``(H, W)`` array).
        rgb_code: ``cv2.cvtColor`` code to RGB, ``None`` for ``rgb8`` itself; only meaningful
            when ``colour``.
        colour: a camera image the depth node accepts as input.
        depth_units_per_m: stored units per metre for depth encodings (``None`` otherwise).
    """

    dtype: np.dtype
    channels: int
    rgb_code: Optional[int] = None
    colour: bool = False
    depth_units_per_m: Optional[float] = None


_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)

#: every encoding the package reads or writes
ENCODINGS: dict[str, EncodingTraits] = {
    'rgb8': EncodingTraits(_U8, 3, None, colour=True),
    'bgr8': EncodingTraits(_U8, 3, cv2.COLOR_BGR2RGB, colour=True),
    'rgba8': EncodingTraits(_U8, 4, cv2.COLOR_RGBA2RGB, colour=True),
    'bgra8': EncodingTraits(_U8, 4, cv2.COLOR_BGRA2RGB, colour=True),
    'mono8': EncodingTraits(_U8, 1, cv2.COLOR_GRAY2RGB, colour=True),
    '8UC1': EncodingTraits(_U8, 1),
    '8UC3': EncodingTraits(_U8, 3),
    'mono16': EncodingTraits(_U16, 1, depth_units_per_m=1000.0),  # depth cameras write mm too
    '16UC1': EncodingTraits(_U16, 1, depth_units_per_m=1000.0),   # REP 118: millimetres
    '32FC1': EncodingTraits(np.dtype(np.float32), 1, depth_units_per_m=1.0),  # REP 118: m
    '64FC1': EncodingTraits(np.dtype(np.float64), 1, depth_units_per_m=1.0),
}
#: encodings the depth node accepts as camera input
COLOUR_ENCODINGS = tuple(name for name, t in ENCODINGS.items() if t.colour)


def traits(encoding: str) -> EncodingTraits:
    """The :class:`EncodingTraits` of ``encoding``; InputError naming the supported ones."""
    t = ENCODINGS.get(encoding)
    if t is None:
        raise InputError(f'unsupported encoding {encoding!r}; supported: {list(ENCODINGS)}')
    return t


def check_size(height: int, width: int) -> None:
    """InputError unless ``0 < height, width <= MAX_SIDE_PX``."""
    if not (0 < height <= MAX_SIDE_PX and 0 < width <= MAX_SIDE_PX):
        raise InputError(f'image size {width}x{height} (w x h) is empty or implausible')


def buffer_to_numpy(data, height: int, width: int, step: int, encoding: str,
                    is_bigendian: bool, readonly: bool = True) -> np.ndarray:
    """An Image's fields -> ``(H, W)`` (one channel) or ``(H, W, C)`` array of ``encoding``.

    Handles row padding (``step > width * bytes_per_pixel``) and byte order; the result is a
    view of ``data`` when no byte swap is needed (no copy), in native byte order; read-only
    unless ``readonly`` is False (a view of a writable buffer then stays writable).

    Raises:
        InputError: unsupported encoding, empty or implausible size, ``step`` too small or not
            a multiple of the element size, or ``data`` not ``step * height`` bytes.
    """
    h, w, step = int(height), int(width), int(step)
    t = traits(encoding)
    check_size(h, w)
    dtype, ch = t.dtype, t.channels
    row_bytes = w * ch * dtype.itemsize
    if step < row_bytes:
        raise InputError(f'step {step} B is smaller than width*bytes_per_pixel = {row_bytes} B '
                         f'({w} px of {encoding})')
    buf = (data.view(np.uint8).reshape(-1) if isinstance(data, np.ndarray)
           else np.frombuffer(data, np.uint8))
    if buf.size != step * h:
        raise InputError(f'data has {buf.size} B but step*height = {step}*{h} = {step * h} B; '
                         'the message is truncated or corrupt')
    if step % dtype.itemsize:
        raise InputError(f'step {step} B is not a multiple of the {encoding} element size')
    big = bool(is_bigendian)
    dt = dtype.newbyteorder('>' if big else '<') if dtype.itemsize > 1 else dtype
    arr = np.ndarray((h, w, ch), dt, buffer=buf, strides=(step, ch * dtype.itemsize,
                                                          dtype.itemsize))
    if dtype.itemsize > 1 and big != HOST_BIGENDIAN:
        arr = arr.astype(dtype)  # native byte order copy
    if readonly:
        arr.flags.writeable = False
    return arr[..., 0] if ch == 1 else arr


def check_array(arr: np.ndarray, encoding: str) -> EncodingTraits:
    """InputError unless ``arr`` has the dtype, channels and a plausible size for ``encoding``."""
    t = traits(encoding)
    check_size(*(arr.shape[:2] if arr.ndim >= 2 else (0, 0)))
    got_ch = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if arr.dtype != t.dtype or got_ch != t.channels:
        raise InputError(f'array {arr.shape!r} {arr.dtype} does not fit encoding {encoding!r} '
                         f'({t.channels} x {t.dtype})')
    return t


def numpy_to_buffer(arr: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """Array -> ``(height, width, step, data)`` of a dense Image in host byte order."""
    arr = np.ascontiguousarray(arr)
    check_array(arr, encoding)
    return int(arr.shape[0]), int(arr.shape[1]), int(arr.strides[0]), arr.tobytes()


def to_rgb(image: np.ndarray, encoding: str = 'rgb8') -> np.ndarray:
    """Validate a camera image of a :data:`COLOUR_ENCODINGS` encoding; return (H, W, 3) uint8 RGB.

    Args:
        image: (H, W, 3|4) or (H, W) / (H, W, 1) for mono8, uint8.
    Raises:
        InputError: unknown or non-colour encoding, wrong dtype, shape or channel count, or an
            empty image.
    """
    t = ENCODINGS.get(encoding)
    if t is None or not t.colour:
        raise InputError(f'unsupported image encoding {encoding!r}; supported: '
                         f'{list(COLOUR_ENCODINGS)} (convert with cv_bridge or cv2.cvtColor '
                         'first)')
    if not isinstance(image, np.ndarray):
        raise InputError(f'image must be a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise InputError(f'image dtype must be uint8 for {encoding!r}, got {image.dtype}')
    if t.channels == 1 and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    expected = '(H, W)' if t.channels == 1 else f'(H, W, {t.channels})'
    ok = (image.ndim == 2 if t.channels == 1
          else (image.ndim == 3 and image.shape[2] == t.channels))
    if not ok:
        raise InputError(f'image shape {image.shape!r} does not match encoding {encoding!r}: '
                         f'expected {expected}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f'image is empty: shape {image.shape!r}')
    if t.rgb_code is None:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(np.ascontiguousarray(image), t.rgb_code)


def depth_to_metres(arr: np.ndarray, encoding: str) -> np.ndarray:
    """A depth image of ``encoding`` -> metres: integer units scaled to float32 with 0 -> NaN.

    Float encodings are already metres and come back unchanged.
    """
    t = traits(encoding)
    if t.depth_units_per_m is None:
        raise InputError(f'{encoding!r} is not a depth encoding; depth images are 32FC1 '
                         'metres or 16UC1 millimetres (REP 118)')
    if t.dtype.kind == 'f':
        return arr
    depth = arr.astype(np.float32) / t.depth_units_per_m
    depth[arr == 0] = np.nan
    return depth


__all__ = ['EncodingTraits', 'ENCODINGS', 'COLOUR_ENCODINGS', 'MAX_SIDE_PX', 'HOST_BIGENDIAN',
           'traits', 'check_size', 'buffer_to_numpy', 'check_array', 'numpy_to_buffer',
           'to_rgb', 'depth_to_metres']
