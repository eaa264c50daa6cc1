"""Bag access without ROS: the typestore, message <-> numpy conversions and a small TF tree.

Everything here works on ``rosbags`` messages (plain dataclasses), so evaluation runs on any
machine with Python; rclpy is never imported.

TF convention (REP 105 / tf2): a ``geometry_msgs/TransformStamped`` with
``header.frame_id = P`` and ``child_frame_id = C`` holds the pose of C in P; as a matrix,
``T_P_C`` maps points written in C into P (``p_P = T_P_C @ p_C``).
:meth:`TransformTree.lookup` ``(target, source)`` returns ``T_target_source``.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Iterable, Sequence

import numpy as np

from ..encodings import (ENCODINGS, HOST_BIGENDIAN, buffer_to_numpy, check_array,
                         depth_to_metres, to_rgb, traits)
from ..errors import DataError
from ..geometry import camera_info_intrinsics
from ..stamps import cdr_stamp_ns, ns_to_sec_nanosec

logger = logging.getLogger(__name__)

IMAGE_TYPE = 'sensor_msgs/msg/Image'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
POINTCLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
TF_TYPE = 'tf2_msgs/msg/TFMessage'

_POINTFIELD_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}


def get_ros2_typestore():
    """Typestore with the ROS 2 message definitions (Jazzy; same layouts as Humble..Kilted)."""
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


# --- numpy -> message (bag writing) --------------------------------------------------------

def _header(ts, stamp_ns: int, frame_id: str):
    time_t = ts.types['builtin_interfaces/msg/Time']
    header_t = ts.types['std_msgs/msg/Header']
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return header_t(stamp=time_t(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(ts, image: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = 'rgb8'):
    """Build a ``sensor_msgs/Image`` from (H, W[, C]) data in ``encoding``.

    The data is cast to the encoding's dtype (:data:`urcdc_depth_ros.encodings.ENCODINGS`),
    then checked against its channels (InputError). Depth images are ``32FC1`` in metres
    (NaN = no depth), as REP 118 asks.
    """
    arr = np.ascontiguousarray(image, dtype=traits(encoding).dtype)
    check_array(arr, encoding)
    h, w = arr.shape[:2]
    return ts.types[IMAGE_TYPE](
        header=_header(ts, stamp_ns, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=int(HOST_BIGENDIAN), step=arr.strides[0], data=arr.view(np.uint8).reshape(-1))


def camera_info_msg(ts, K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str,
                    P: np.ndarray | None = None):
    """Build a ``sensor_msgs/CameraInfo`` for a rectified pinhole camera (D = 0, R = I).

    ``P`` defaults to ``[K | 0]`` (zero Tx: any stereo baseline lives in TF).
    """
    P = np.hstack([K, np.zeros((3, 1))]) if P is None else np.asarray(P, np.float64)
    roi_t = ts.types['sensor_msgs/msg/RegionOfInterest']
    return ts.types[CAMERA_INFO_TYPE](
        header=_header(ts, stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model='plumb_bob', d=np.zeros(5), k=np.asarray(K, np.float64).reshape(9),
        r=np.eye(3).reshape(9), p=P.reshape(12), binning_x=0, binning_y=0,
        roi=roi_t(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def pointcloud_msg(ts, points: np.ndarray, stamp_ns: int, frame_id: str):
    """Build an unorganised ``sensor_msgs/PointCloud2`` (x, y, z, intensity float32), (N, 4)."""
    pts = np.ascontiguousarray(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f'points must be (N, 4) x, y, z, intensity; got {pts.shape}')
    field_t = ts.types['sensor_msgs/msg/PointField']
    fields = [field_t(name=n, offset=4 * i, datatype=7, count=1)
              for i, n in enumerate(('x', 'y', 'z', 'intensity'))]
    return ts.types[POINTCLOUD_TYPE](
        header=_header(ts, stamp_ns, frame_id), height=1, width=pts.shape[0], fields=fields,
        is_bigendian=False, point_step=16, row_step=16 * pts.shape[0],
        data=pts.view(np.uint8).reshape(-1), is_dense=True)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> unit quaternion (x, y, z, w); R is re-orthonormalised first (SVD)."""
    u, _, vt = np.linalg.svd(np.asarray(R, np.float64))
    R = u @ vt
    if np.linalg.det(R) < 0:
        raise ValueError('matrix is a reflection, not a rotation')
    t = np.trace(R)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k]) * 2
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = s / 4
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q)


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Quaternion (x, y, z, w) -> (3, 3) rotation (normalised first)."""
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def tf_message(ts, transforms: Iterable[tuple[str, str, np.ndarray]], stamp_ns: int):
    """``tf2_msgs/TFMessage`` from ``(parent, child, T_parent_child (4, 4))`` triples."""
    vec_t = ts.types['geometry_msgs/msg/Vector3']
    quat_t = ts.types['geometry_msgs/msg/Quaternion']
    tr_t = ts.types['geometry_msgs/msg/Transform']
    stamped_t = ts.types['geometry_msgs/msg/TransformStamped']
    out = []
    for parent, child, T in transforms:
        q = matrix_to_quaternion(T[:3, :3])
        out.append(stamped_t(
            header=_header(ts, stamp_ns, parent), child_frame_id=child,
            transform=tr_t(translation=vec_t(x=float(T[0, 3]), y=float(T[1, 3]),
                                             z=float(T[2, 3])),
                           rotation=quat_t(x=q[0], y=q[1], z=q[2], w=q[3]))))
    return ts.types[TF_TYPE](transforms=out)


# --- message -> numpy (bag reading) --------------------------------------------------------

def connection_stamp_ns(conn, raw) -> int | None:
    """Header stamp of a raw bag message without deserialising it; None if it is not CDR.

    ``conn`` is the rosbags connection (its ``ext.serialization_format`` says CDR or not);
    see :func:`urcdc_depth_ros.stamps.cdr_stamp_ns`.
    """
    ext = getattr(conn, 'ext', None)
    if getattr(ext, 'serialization_format', None) != 'cdr' or len(raw) < 12:
        return None
    return cdr_stamp_ns(raw)


def image_to_numpy(msg) -> np.ndarray:
    """``sensor_msgs/Image`` -> (H, W) or (H, W, C) array (checks: ``encodings.buffer_to_numpy``).

    Colour images with a channel order come back as uint8 RGB (bgr/bgra are converted, alpha
    dropped); ``mono8`` and the generic ``8UC*`` stay as stored. Integer depth (``16UC1``,
    millimetres by REP 118) is returned as float32 metres (0 -> NaN); ``32FC1`` as is (metres).
    InputError for an unsupported encoding or a malformed message.
    """
    enc = str(msg.encoding)
    arr = buffer_to_numpy(msg.data, msg.height, msg.width, msg.step, enc, msg.is_bigendian,
                          readonly=False)
    t = ENCODINGS[enc]
    if t.depth_units_per_m is not None:
        return depth_to_metres(arr, enc)
    if t.colour and t.channels > 1:
        return to_rgb(arr, enc)
    return arr


def camera_info_to_numpy(msg) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``sensor_msgs/CameraInfo`` -> (K (3, 3), P (3, 4), width, height), pixels.

    K follows :func:`~urcdc_depth_ros.geometry.camera_info_intrinsics`, the rule the node uses
    too: the message's K, or ``P[:, :3]`` when K is all zeros; InputError otherwise.
    """
    P = np.asarray(msg.p, np.float64).reshape(3, 4)
    return camera_info_intrinsics(msg.k, P), P, int(msg.width), int(msg.height)


def pointcloud_to_xyz(msg) -> np.ndarray:
    """``sensor_msgs/PointCloud2`` -> (N, 3) x, y, z (metres, the cloud's frame).

    float32 for float32 fields (no copy in the common x, y, z at offsets 0, 4, 8 layout),
    float64 otherwise. Non-finite points are dropped. Raises DataError when x, y or z is
    missing or the data is short.
    """
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in ('x', 'y', 'z') if n not in fields]
    if missing:
        raise DataError(f'PointCloud2 lacks fields {missing!r} (has {sorted(fields)!r})')
    h, w, step = int(msg.height), int(msg.width), int(msg.point_step)
    data = np.asarray(msg.data, np.uint8)
    row_step = int(msg.row_step) or w * step
    if data.size < h * row_step or step <= 0:
        raise DataError(f'PointCloud2 {w}x{h} needs {h * row_step} bytes, has {data.size}; '
                        'the message is truncated')
    if row_step != w * step:
        data = np.ascontiguousarray(data[:h * row_step].reshape(h, row_step)[:, :w * step])
    data = data[:h * w * step]
    end = '>' if msg.is_bigendian else '<'
    offs = [fields[n].offset for n in ('x', 'y', 'z')]
    types = {fields[n].datatype for n in ('x', 'y', 'z')}
    if types == {7} and offs == [0, 4, 8] and step % 4 == 0 and not msg.is_bigendian:
        xyz = data.view(np.float32).reshape(-1, step // 4)[:, :3]
    else:
        dtype = np.dtype({'names': ['x', 'y', 'z'],
                          'formats': [end + _POINTFIELD_DTYPES[fields[n].datatype]
                                      for n in ('x', 'y', 'z')],
                          'offsets': offs, 'itemsize': step})
        pts = np.ascontiguousarray(data).view(dtype)
        xyz = np.stack([pts['x'], pts['y'], pts['z']], axis=1).astype(np.float64)
    ok = np.isfinite(xyz[:, 0]) & np.isfinite(xyz[:, 1]) & np.isfinite(xyz[:, 2])
    return xyz if ok.all() else np.compress(ok, xyz, axis=0)


def transform_to_matrix(transform) -> np.ndarray:
    """``geometry_msgs/Transform`` -> (4, 4) ``T_parent_child``."""
    t, r = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix((r.x, r.y, r.z, r.w))
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def _frame(name: str) -> str:
    return name.lstrip('/')


class TransformTree:
    """Static transform tree built from ``/tf_static`` (and, latest value wins, ``/tf``).

    Edges are stored as ``T_parent_child``; :meth:`lookup` walks the tree in either direction
    (breadth-first over the undirected graph) and composes the chain.
    """

    def __init__(self) -> None:
        self._edges: dict[tuple[str, str], np.ndarray] = {}
        self._adj: dict[str, set[str]] = {}

    def add(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Add or replace the edge parent -> child."""
        p, c = _frame(parent), _frame(child)
        self._edges[(p, c)] = np.asarray(T_parent_child, np.float64)
        self._edges.pop((c, p), None)
        self._adj.setdefault(p, set()).add(c)
        self._adj.setdefault(c, set()).add(p)

    def add_message(self, msg) -> None:
        """Add every transform of a ``tf2_msgs/TFMessage``."""
        for tr in msg.transforms:
            self.add(tr.header.frame_id, tr.child_frame_id, transform_to_matrix(tr.transform))

    @property
    def frames(self) -> list[str]:
        """All frame ids, sorted."""
        return sorted(self._adj)

    def __len__(self) -> int:
        """Number of edges."""
        return len(self._edges)

    def lookup(self, target: str, source: str) -> np.ndarray:
        """``T_target_source`` (4, 4): maps points in ``source`` into ``target``.

        Raises DataError naming both frames and the known ones when no chain connects them.
        """
        target, source = _frame(target), _frame(source)
        if target == source:
            return np.eye(4)
        prev: dict[str, str] = {source: source}
        queue = deque([source])
        while queue and target not in prev:
            node = queue.popleft()
            for nxt in self._adj.get(node, ()):
                if nxt not in prev:
                    prev[nxt] = node
                    queue.append(nxt)
        if target not in prev:
            raise DataError(
                f'no transform from {source!r} to {target!r} in the bag\'s TF (frames: '
                f'{self.frames!r}); record /tf_static with the sensor transforms, e.g. from '
                'robot_state_publisher or static_transform_publisher')
        T = np.eye(4)  # T_target_node, built from the target end of the path
        node = target
        while node != source:
            back = prev[node]  # step back -> node
            if (node, back) in self._edges:       # node is the parent of back
                T_node_back = self._edges[(node, back)]
            else:                                  # back is the parent of node
                T_node_back = np.linalg.inv(self._edges[(back, node)])
            T = T @ T_node_back
            node = back
        return T


__all__ = ['get_ros2_typestore', 'image_msg', 'camera_info_msg', 'pointcloud_msg', 'tf_message',
           'connection_stamp_ns', 'image_to_numpy', 'camera_info_to_numpy', 'pointcloud_to_xyz',
           'transform_to_matrix', 'matrix_to_quaternion', 'quaternion_to_matrix',
           'TransformTree']
