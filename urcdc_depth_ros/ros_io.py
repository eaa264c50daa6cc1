"""Conversions between numpy arrays and ROS 2 messages, plus the depth colour map for RViz.

Messages: Image, CompressedImage, CameraInfo, PointCloud2.

Every check that makes a message safe to convert raises
:class:`~urcdc_depth_ros.errors.InputError` naming what is wrong, never crashes or reads out of
bounds; the encoding table and the Image buffer checks are :mod:`urcdc_depth_ros.encodings`.
Pure numpy by default; ``cv_bridge`` is used for Image <-> numpy when it imports (a ROS
install), after the same validation, and ``sensor_msgs_py`` is only needed by the parity tests
(the numpy PointCloud2 path is faster and gives the same bytes).

Frames and units: images keep the input header (optical frame, REP 103); depth is ``32FC1``
metres with NaN for invalid pixels (REP 118).
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from .encodings import (COLOUR_ENCODINGS, HOST_BIGENDIAN, MAX_SIDE_PX, buffer_to_numpy,
                        check_array, numpy_to_buffer)
from .errors import InputError
from .geometry import camera_info_intrinsics
from .pointcloud import CloudArrays, PointCloudBuilder, cloud_shape
from .stamps import stamp_to_ns

try:  # reason: the PyPI `cv-bridge` is a broken ROS 1 port; only a ROS install's one is used
    from cv_bridge import CvBridge as _CvBridge
    _BRIDGE: Optional['_CvBridge'] = _CvBridge()
except Exception:  # noqa: BLE001 - any import failure means "no bridge"
    _BRIDGE = None


def have_cv_bridge() -> bool:
    """Whether a working ROS ``cv_bridge`` was imported."""
    return _BRIDGE is not None


def image_to_numpy(msg: Image) -> np.ndarray:
    """Image -> ``(H, W)`` (one channel) or ``(H, W, C)`` array in the message's encoding.

    Validation and the numpy path are :func:`urcdc_depth_ros.encodings.buffer_to_numpy`
    (row padding, byte order, a read-only view when no swap is needed). With a ROS install's
    ``cv_bridge`` the conversion itself is the bridge's, after the same checks.

    Raises:
        InputError: unsupported encoding, empty size, ``step`` too small, or ``data`` length
            different from ``step * height``.
    """
    arr = buffer_to_numpy(msg.data, msg.height, msg.width, msg.step, str(msg.encoding),
                          msg.is_bigendian)
    if _BRIDGE is not None:
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg))
    return arr


class MessageBuffers:
    """Reusable ``array.array('B')`` data buffers for outgoing messages, one per key.

    rclpy copies a message into the middleware inside ``publish()``, so a buffer is free
    again when ``publish()`` returns and the next frame can fill the same memory. That saves
    a fresh multi-megabyte allocation (page faults) and a ``bytes`` -> ``array`` copy per frame:
    the cloud at 1242 x 375 x 5 fields went from about 13 ms to 1 ms of merge + message
    (``bench/bench_node.py``). One thread uses a buffer at a time (the node's worker).
    """

    def __init__(self) -> None:
        self._buffers: dict = {}

    def get(self, key, nbytes: int) -> array.array:
        """The buffer for ``key``, reallocated only when ``nbytes`` changes."""
        buf = self._buffers.get(key)
        if buf is None or len(buf) != nbytes:
            buf = self._buffers[key] = array.array('B', bytes(nbytes))
        return buf


def buffer_view(buf: array.array, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Writable numpy view of a :class:`MessageBuffers` buffer."""
    return np.frombuffer(buf, dtype).reshape(shape)


def _keeping_buffers(cls):
    """A new ``cls`` message whose array fields keep an assigned ``array.array`` (no copy).

    Generated setters store an ``array.array`` as it is only when field checks are on
    (``check_fields=True`` since Iron; always on Humble, whose messages take no such
    argument); without checks they copy it.
    """
    try:
        return cls(check_fields=True)
    except AssertionError:
        return cls()


def numpy_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None,
                   buffer: Optional[array.array] = None) -> Image:
    """``(H, W)`` / ``(H, W, C)`` array -> Image in ``encoding`` (dense rows, host byte order).

    ``buffer``: a :class:`MessageBuffers` buffer of ``arr.nbytes`` to copy the pixels into and
    use as ``data`` (the node's publish path); otherwise a fresh buffer.

    Raises:
        InputError: encoding unknown, the array's dtype/channels do not fit it, or
            ``buffer`` has the wrong size.
    """
    arr = np.asarray(arr)
    check_array(arr, encoding)
    if buffer is None and _BRIDGE is not None:
        msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(arr), encoding=encoding)
    else:
        msg = _numpy_to_image_np(arr, encoding, buffer)
    if header is not None:
        msg.header = header
    return msg


def _numpy_to_image_np(arr: np.ndarray, encoding: str,
                       buffer: Optional[array.array] = None) -> Image:
    """The numpy path of :func:`numpy_to_image` (into ``buffer`` when given)."""
    if buffer is None:
        msg = Image()
        msg.height, msg.width, msg.step, msg.data = numpy_to_buffer(arr, encoding)
    else:
        if len(buffer) != arr.nbytes:
            raise InputError(f'message buffer of {len(buffer)} bytes for a {arr.nbytes}-byte '
                             'image')
        view = buffer_view(buffer, arr.dtype, arr.shape)
        np.copyto(view, arr)
        msg = _keeping_buffers(Image)
        msg.height, msg.width, msg.step = int(arr.shape[0]), int(arr.shape[1]), \
            int(view.strides[0])
        msg.data = buffer
    msg.encoding = encoding
    msg.is_bigendian = HOST_BIGENDIAN
    return msg


def decode_compressed(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """CompressedImage (JPEG/PNG) -> ``(image, encoding)``: ``bgr8``, ``bgra8`` or ``mono8``.

    Raises:
        InputError: empty or undecodable data, or a bit depth other than 8.
    """
    if len(msg.data) == 0:
        raise InputError(f'compressed image (format {msg.format!r}) has no data')
    img = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f'cannot decode {len(msg.data)} B of compressed image '
                         f'(format {msg.format!r}); JPEG and PNG are supported')
    if img.dtype != np.uint8:
        raise InputError(f'compressed image decodes to {img.dtype}; only 8-bit is supported')
    channels = 1 if img.ndim == 2 else img.shape[2]
    encoding = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}.get(channels)
    if encoding is None:
        raise InputError(f'compressed image has {channels} channels; 1, 3 or 4 are supported')
    return (img[..., 0] if img.ndim == 3 and channels == 1 else img), encoding


@dataclass(frozen=True)
class CameraModel:
    """Validated contents of a CameraInfo.

    Attributes:
        K: (3, 3) float64 intrinsics, pixels. P: (3, 4) float64 projection (zeros if unset).
        D: distortion coefficients. R: (3, 3) rectification. width, height: pixels.
        stamp_ns: header stamp, ns. frame_id: optical frame.
    """

    K: np.ndarray
    P: np.ndarray
    D: np.ndarray
    R: np.ndarray
    distortion_model: str
    width: int
    height: int
    stamp_ns: int
    frame_id: str


def parse_camera_info(msg: CameraInfo) -> CameraModel:
    """Validate a CameraInfo and return its numbers.

    ``K`` follows :func:`~urcdc_depth_ros.geometry.camera_info_intrinsics` (the bag tools use
    the same rule): the message's K, or ``P[:, :3]`` when K is all zeros.

    Raises:
        InputError: non-finite K/P/D/R, no usable intrinsics, or an empty image size.
    """
    P = np.asarray(msg.p, np.float64).reshape(3, 4)
    R = np.asarray(msg.r, np.float64).reshape(3, 3)
    D = np.asarray(msg.d, np.float64)
    for name, a in (('P', P), ('R', R), ('D', D)):
        if not np.all(np.isfinite(a)):
            raise InputError(f'camera_info {name} has non-finite values: {a.ravel().tolist()!r}')
    K = camera_info_intrinsics(msg.k, P)
    if not (0 < msg.width <= MAX_SIDE_PX and 0 < msg.height <= MAX_SIDE_PX):
        raise InputError(f'camera_info size {msg.width}x{msg.height} is empty or implausible')
    return CameraModel(K, P, D, R, str(msg.distortion_model), int(msg.width), int(msg.height),
                       stamp_to_ns(msg.header.stamp), str(msg.header.frame_id))


def build_camera_info(K: np.ndarray, width: int, height: int, header: Optional[Header] = None,
                      P: Optional[np.ndarray] = None, D: Optional[np.ndarray] = None,
                      R: Optional[np.ndarray] = None,
                      distortion_model: str = 'plumb_bob') -> CameraInfo:
    """CameraInfo for an image of ``width x height`` px with intrinsics ``K`` (3x3, px).

    ``P`` defaults to ``[K | 0]``, ``D`` to five zeros, ``R`` to identity.
    """
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = distortion_model
    K = np.asarray(K, np.float64).reshape(3, 3)
    msg.k = K.ravel().tolist()
    msg.p = (np.hstack([K, np.zeros((3, 1))]) if P is None
             else np.asarray(P, np.float64).reshape(3, 4)).ravel().tolist()
    msg.d = (np.zeros(5) if D is None else np.asarray(D, np.float64).ravel()).tolist()
    msg.r = (np.eye(3) if R is None else np.asarray(R, np.float64).reshape(3, 3)).ravel().tolist()
    return msg


def transform_camera_info(cam: CameraModel, K_out: np.ndarray, width: int, height: int,
                          header: Optional[Header] = None) -> CameraInfo:
    """CameraInfo of a cropped/resized image whose intrinsics became ``K_out``.

    The same pixel affine ``A = K_out @ inv(K_in)`` is applied to ``P`` (so a stereo ``Tx`` is
    kept); ``D`` and ``R`` act on normalised coordinates and are unchanged.
    """
    K_out = np.asarray(K_out, np.float64).reshape(3, 3)
    A = K_out @ np.linalg.inv(cam.K)
    P = A @ cam.P if np.any(cam.P[:, :3]) else None
    return build_camera_info(K_out, width, height, header, P=P, D=cam.D, R=cam.R,
                             distortion_model=cam.distortion_model or 'plumb_bob')


def build_pointcloud2(cloud: CloudArrays, header: Optional[Header] = None,
                      buffer: Optional[array.array] = None) -> PointCloud2:
    """Organised PointCloud2 from :class:`CloudArrays`: float32 fields packed in order.

    Layout: fields ``cloud.fields`` at offsets 0, 4, 8, ...; ``point_step = 4 * C``;
    ``row_step = point_step * width``; ``is_dense = False`` (invalid points are NaN).
    ``buffer``: the :class:`MessageBuffers` buffer that ``cloud.points`` was built in
    (``PointCloudBuilder.build(out=buffer_view(...))``); it becomes ``data`` without a copy.

    Raises:
        InputError: ``buffer`` given but ``cloud.points`` is not a view of it.
    """
    pts = np.ascontiguousarray(cloud.points, np.float32)
    h, w, c = pts.shape
    if buffer is not None and not (len(buffer) == pts.nbytes and np.shares_memory(
            pts, np.frombuffer(buffer, np.uint8))):
        raise InputError('build_pointcloud2: cloud.points is not a view of the given buffer; '
                         'build the cloud with out=buffer_view(buffer, ...)')
    msg = _keeping_buffers(PointCloud2) if buffer is not None else PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(h), int(w)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(cloud.fields)]
    msg.is_bigendian = HOST_BIGENDIAN
    msg.point_step = 4 * c
    msg.row_step = 4 * c * w
    msg.data = buffer if buffer is not None else pts.tobytes()
    msg.is_dense = False
    return msg


def cloud_message(builder: PointCloudBuilder, buffers: MessageBuffers, key, depth_m: np.ndarray,
                  K: np.ndarray, header: Optional[Header] = None,
                  rgb: Optional[np.ndarray] = None, uncertainty: Optional[np.ndarray] = None,
                  uncertainty_field: bool = True, stride: int = 1, **filters) -> PointCloud2:
    """The organised cloud of ``depth_m`` built in ``buffers``' ``key`` buffer, as PointCloud2.

    :meth:`PointCloudBuilder.build` writes straight into the reused message buffer and the
    message takes it without a copy (the node's publish path). ``filters``:
    ``max_range_m``, ``max_uncertainty``.
    """
    shape = cloud_shape(*depth_m.shape, stride, rgb is not None,
                        uncertainty is not None and uncertainty_field)
    buf = buffers.get(key, 4 * int(np.prod(shape)))
    cloud = builder.build(depth_m, K, rgb=rgb, uncertainty=uncertainty, stride=stride,
                          uncertainty_field=uncertainty_field,
                          out=buffer_view(buf, np.float32, shape), **filters)
    return build_pointcloud2(cloud, header, buf)


def pointcloud2_to_arrays(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Read float32 fields of a PointCloud2 into ``{name: (height, width) float32}``."""
    if len(msg.data) != msg.row_step * msg.height or msg.row_step < msg.point_step * msg.width:
        raise InputError(f'PointCloud2 data {len(msg.data)} B does not match '
                         f'row_step*height = {msg.row_step}*{msg.height}')
    buf = np.frombuffer(msg.data, np.uint8)
    out = {}
    for f in msg.fields:
        if f.datatype != PointField.FLOAT32:
            continue
        dt = np.dtype('>f4' if msg.is_bigendian else '<f4')
        a = np.ndarray((msg.height, msg.width), dt, buffer=buf, offset=f.offset,
                       strides=(msg.row_step, msg.point_step))
        out[f.name] = a.astype(np.float32)
    return out


def colorize_depth(depth_m: np.ndarray, max_depth_m: float, min_depth_m: float = 0.0
                   ) -> np.ndarray:
    """``(H, W)`` depth (m) -> ``(H, W, 3)`` uint8 BGR turbo colour map (near = red); NaN black.

    Depth is mapped linearly from ``min_depth_m`` (255) to ``max_depth_m`` (0) before the map,
    so near objects are warm.
    """
    span = max(float(max_depth_m) - float(min_depth_m), 1e-6)
    with np.errstate(invalid='ignore'):
        scaled = np.clip((float(max_depth_m) - depth_m) * (255.0 / span), 0, 255)
    valid = np.isfinite(depth_m)
    img = cv2.applyColorMap(np.where(valid, scaled, 0).astype(np.uint8), cv2.COLORMAP_TURBO)
    img[~valid] = 0
    return img


__all__ = ['COLOUR_ENCODINGS', 'CameraModel', 'MessageBuffers', 'buffer_view', 'have_cv_bridge',
           'stamp_to_ns',
           'image_to_numpy', 'numpy_to_image', 'decode_compressed',
           'parse_camera_info', 'build_camera_info', 'transform_camera_info',
           'build_pointcloud2', 'cloud_message', 'pointcloud2_to_arrays', 'colorize_depth']
