"""Temporal stability of a depth stream: TAE and flicker, with ego-motion from the bag's TF.

Both figures compare consecutive depth images ``a`` (time t) and ``b`` (t+1) of one camera.
Every valid pixel of ``a`` is back-projected with K (optical frame: x right, y down, z
forward, metres), moved by the ego-motion ``T_b_a`` (maps points in camera frame a into
camera frame b) and projected into ``b``. There its depth ``z_ab`` is compared with ``b``'s
own depth ``d_b`` at the projected, sub-pixel location (bilinear in *inverse* depth, which is
exact on planes; the four neighbours must be valid and agree within ``edge_tol``, which drops
depth edges where interpolation mixes two surfaces). A source point that lands behind other
warped source points (a z-buffer of the warped *source*, 3 x 3 pixels, ``edge_tol``) is
hidden in ``b`` and left out; the test never looks at ``b``'s depth, so a scale jump of ``b``
cannot mask itself. What the source never saw (a near object entering the view in ``b``)
is caught only by ``z_ab > d_b (1 + occlusion_tol)``: a scale jump beyond 25 % between two
frames would partly hide itself there (the z-buffer test alone catches the rest).

* **TAE** (temporal alignment error, unitless like AbsRel): ``mean |z_ab - d_b| / d_b`` over
  those pixels, averaged over both directions (a->b and b->a). 0 for exact depth of a static
  scene, up to the occlusions the z-buffer test misses.
* **flicker** (unitless): ``|log median(d_b / z_ab)|`` averaged over both directions: the
  frame-to-frame jump of the depth *scale* once ego-motion is compensated; the median ignores
  the few moving pixels. A stream whose scale alternates by 5 % scores ~0.049.

Ego-motion comes from a time-varying world -> body transform (``/tf``, e.g. KITTI OXTS poses
written by ``urcdc-kitti2bag``) and the static body -> camera chain (``/tf_static``):
``T_world_cam(t) = T_world_body(t) @ T_body_cam`` and ``T_b_a = inv(T_world_cam(t_b)) @
T_world_cam(t_a)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError

EDGE_TOL = 0.1  # largest max/min - 1 of the four interpolation neighbours (depth edges)
OCCLUSION_TOL = 0.25  # a warped point this much farther than dst's depth is hidden in dst
MAX_POSE_GAP_NS = 200_000_000  # a pose is interpolated only between samples this close


class DepthFrame:
    """One depth image and what the warp needs of it that does not depend on the other image.

    :func:`pair_stability` of frames (t-1, t) and (t, t+1) uses frame t four times (source
    and destination of both directions); a stream scored pair by pair passes DepthFrames so
    the back-projected points and the neighbour image are computed once per frame. The
    results are the same as for plain arrays, bit for bit.

    Args:
        depth_m: (H, W) depth along the optical axis, metres; NaN/<=0 invalid. float32 and
            float64 are kept as they are (not copied), anything else becomes float64.
    """

    def __init__(self, depth_m: np.ndarray) -> None:
        a = np.asarray(depth_m)
        self.depth = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
        self._points: tuple[bytes, np.ndarray] | None = None
        self._neighbours: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """(H, W)."""
        return self.depth.shape

    def points(self, K: np.ndarray) -> np.ndarray:
        """(3, N) float64 optical-frame points of the valid pixels (row-major order), metres."""
        K = np.asarray(K, np.float64)
        if self._points is None or self._points[0] != K.tobytes():
            src = self.depth
            # pixels are converted to float64 when picked: the same values as converting
            # the whole image first, without the copy
            with np.errstate(invalid='ignore'):
                v, u = np.nonzero(np.isfinite(src) & (src > 0))
            z = src[v, u].astype(np.float64)
            fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
            self._points = K.tobytes(), np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z])
        return self._points[1]

    def neighbours(self) -> np.ndarray:
        """The depth, flattened, NaN where invalid (image dtype)."""
        if self._neighbours is None:
            d = self.depth
            with np.errstate(invalid='ignore'):
                self._neighbours = np.where(np.isfinite(d) & (d > 0), d, np.nan).astype(
                    d.dtype, copy=False).reshape(-1)
        return self._neighbours


def warp_depth(depth_src_m: np.ndarray | DepthFrame, depth_dst_m: np.ndarray | DepthFrame,
               K: np.ndarray, T_dst_src: np.ndarray, edge_tol: float = EDGE_TOL,
               occlusion_tol: float = OCCLUSION_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Project ``depth_src_m`` into the destination camera; (z_warped_m, d_dst_m) pairs.

    Args:
        depth_src_m, depth_dst_m: (H, W) depth along the optical axis, metres; NaN/<=0
            invalid; or :class:`DepthFrame` of them.
        K: (3, 3) intrinsics of both images, pixels.
        T_dst_src: (4, 4) maps points in the source optical frame into the destination one.
        edge_tol: the four neighbours of a projected point must satisfy max/min - 1 <= this.
        occlusion_tol: a warped point with ``z > d_dst * (1 + occlusion_tol)`` is hidden.
    Returns:
        two float64 (N,) arrays: the warped source depth and the destination depth (bilinear
        in inverse depth) at the same N points, metres.
    """
    src, dst = _frame(depth_src_m), _frame(depth_dst_m)
    if src.shape != dst.shape or len(src.shape) != 2:
        raise ValueError(f'depth images must be the same (H, W); got {src.shape} and '
                         f'{dst.shape}')
    h, w = src.shape
    K = np.asarray(K, np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    pts = src.points(K)
    T = np.asarray(T_dst_src, np.float64)
    q = T[:3, :3] @ pts + T[:3, 3:4]
    zq = q[2]
    front = zq > 1e-6
    uq = np.where(front, fx * q[0] / np.where(front, zq, 1.0) + cx, -1.0)
    vq = np.where(front, fy * q[1] / np.where(front, zq, 1.0) + cy, -1.0)
    inside = front & (uq >= 0) & (uq <= w - 1) & (vq >= 0) & (vq <= h - 1)
    uq, vq, zq = uq[inside], vq[inside], zq[inside]
    # occlusion from the source depth alone (so a scale change of dst cannot hide itself):
    # splat the warped source into a z-buffer; a point farther than the nearest warped point
    # around its landing pixel (3 x 3, within edge_tol) is hidden behind it in dst
    pix = np.rint(vq).astype(np.int64) * w + np.rint(uq).astype(np.int64)
    zmin = _min3x3(_zbuffer(pix, zq, h * w).reshape(h, w)).reshape(-1)
    seen = zq <= zmin[pix] * (1.0 + edge_tol)
    uq, vq, zq = uq[seen], vq[seen], zq[seen]
    u0 = np.minimum(np.floor(uq).astype(np.int64), w - 2)
    v0 = np.minimum(np.floor(vq).astype(np.int64), h - 2)
    au, av = uq - u0, vq - v0
    # the four neighbours, NaN where dst is invalid: NaN fails the consistency test, so one
    # mask keeps the points whose neighbours are all valid and agree within edge_tol
    flat = dst.neighbours()
    i00 = v0 * w + u0
    n = [flat[i].astype(np.float64) for i in (i00, i00 + 1, i00 + w, i00 + w + 1)]
    with np.errstate(invalid='ignore'):
        hi = np.maximum(np.maximum(n[0], n[1]), np.maximum(n[2], n[3]))
        lo = np.minimum(np.minimum(n[0], n[1]), np.minimum(n[2], n[3]))
        keep = hi <= lo * (1.0 + edge_tol)
    au, av, zq = au[keep], av[keep], zq[keep]
    inv = [1.0 / x[keep] for x in n]
    d = 1.0 / ((1 - au) * (1 - av) * inv[0] + au * (1 - av) * inv[1]
               + (1 - au) * av * inv[2] + au * av * inv[3])
    # hidden behind something the source never saw (it entered the view in dst)
    front_of = zq <= d * (1.0 + occlusion_tol)
    return zq[front_of], d[front_of]


def _frame(a) -> DepthFrame:
    return a if isinstance(a, DepthFrame) else DepthFrame(a)


def _zbuffer(pix: np.ndarray, z: np.ndarray, size: int) -> np.ndarray:
    """Per pixel the smallest ``z`` landing on it (+inf where none): ``np.minimum.at``'s result.

    Scatter, then scatter again the points still below what their pixel holds: every round
    lowers a pixel to one of its points' values and drops that point, so it ends after as many
    rounds as the most points on one pixel (a few), ~10x faster than ``np.minimum.at``.
    ``z`` must hold no NaN (the callers' points are all in front of the camera).
    """
    zbuf = np.full(size, np.inf)
    while pix.size:
        zbuf[pix] = z
        lower = z < zbuf[pix]
        pix, z = pix[lower], z[lower]
    return zbuf


def _min3x3(a: np.ndarray) -> np.ndarray:
    """Minimum over each pixel's 3 x 3 neighbourhood (outside the image: +inf); float64."""
    import cv2
    return cv2.erode(a, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                     borderValue=np.inf)


@dataclass(frozen=True)
class PairStability:
    """Stability of one frame pair (both directions averaged); NaN when nothing overlapped.

    Attributes:
        tae: temporal alignment error (unitless). flicker: |log scale jump| (unitless).
        n: pixels compared, both directions together.
    """

    tae: float
    flicker: float
    n: int


def pair_stability(depth_a_m: np.ndarray | DepthFrame, depth_b_m: np.ndarray | DepthFrame,
                   K: np.ndarray, T_b_a: np.ndarray, edge_tol: float = EDGE_TOL
                   ) -> PairStability:
    """TAE and flicker of frames a (t) and b (t+1); ``T_b_a`` maps camera-a points into b.

    ``depth_a_m``, ``depth_b_m``: (H, W) depth images or :class:`DepthFrame` of them (a
    stream scored pair by pair reuses each frame's back-projection that way).
    """
    T_b_a = np.asarray(T_b_a, np.float64)
    depth_a_m, depth_b_m = _frame(depth_a_m), _frame(depth_b_m)
    taes, flicks, n = [], [], 0
    for src, dst, T in ((depth_a_m, depth_b_m, T_b_a),
                        (depth_b_m, depth_a_m, np.linalg.inv(T_b_a))):
        z, d = warp_depth(src, dst, K, T, edge_tol)
        if z.size == 0:
            continue
        taes.append(float(np.mean(np.abs(z - d) / d)))
        flicks.append(abs(float(np.log(np.median(d / z)))))
        n += int(z.size)
    if not taes:
        return PairStability(float('nan'), float('nan'), 0)
    return PairStability(float(np.mean(taes)), float(np.mean(flicks)), n)


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - a) * th) * q0 + np.sin(a * th) * q1) / np.sin(th)


class PoseTrack:
    """Time-stamped ``T_world_body`` poses (e.g. from ``/tf``), interpolated between samples.

    Args:
        stamps_ns: (N,) stamps, nanoseconds (any order; sorted here).
        T_world_body: (N, 4, 4) poses, metres.
        max_gap_ns: a query between two samples further apart than this, or outside the
            track, has no pose (None).
    """

    def __init__(self, stamps_ns: Sequence[int], T_world_body: Sequence[np.ndarray],
                 max_gap_ns: int = MAX_POSE_GAP_NS) -> None:
        from .bag_io import matrix_to_quaternion
        order = np.argsort(np.asarray(stamps_ns, np.int64), kind='stable')
        self.stamps_ns = np.asarray(stamps_ns, np.int64)[order]
        self.T = np.asarray(T_world_body, np.float64).reshape(-1, 4, 4)[order]
        self.q = np.array([matrix_to_quaternion(T[:3, :3]) for T in self.T]).reshape(-1, 4)
        self.max_gap_ns = int(max_gap_ns)

    def __len__(self) -> int:
        """Number of pose samples."""
        return int(self.stamps_ns.size)

    def at(self, stamp_ns: int) -> np.ndarray | None:
        """``T_world_body`` (4, 4) at ``stamp_ns``: linear translation, slerp rotation."""
        from .bag_io import quaternion_to_matrix
        s = self.stamps_ns
        if s.size == 0 or stamp_ns < s[0] or stamp_ns > s[-1]:
            return None
        j = int(np.searchsorted(s, stamp_ns))
        if s[min(j, s.size - 1)] == stamp_ns:
            return self.T[min(j, s.size - 1)].copy()
        i = j - 1
        if int(s[j] - s[i]) > self.max_gap_ns:
            return None
        a = (stamp_ns - int(s[i])) / float(s[j] - s[i])
        T = np.eye(4)
        T[:3, :3] = quaternion_to_matrix(_slerp(self.q[i], self.q[j], a))
        T[:3, 3] = (1 - a) * self.T[i, :3, 3] + a * self.T[j, :3, 3]
        return T


def read_pose_track(reader, camera_frame: str, tf_topic: str = '/tf',
                    static_topic: str = '/tf_static') -> tuple[PoseTrack, str] | None:
    """World -> camera poses of ``camera_frame`` from an opened bag reader; None without /tf.

    The time-varying edge is the one ``/tf`` edge whose child reaches ``camera_frame``
    through ``/tf_static``. Returns (track of ``T_world_cam``, world frame id).
    """
    from ..stamps import stamp_to_ns
    from .bag_io import TF_TYPE, TransformTree, transform_to_matrix
    topics = {c.topic: c for c in reader.connections if c.msgtype == TF_TYPE}
    if tf_topic not in topics:
        return None
    static = TransformTree()
    samples: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
    conns = [c for t, c in topics.items() if t in (tf_topic, static_topic)]
    try:
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == static_topic:
                static.add_message(msg)
                continue
            for tr in msg.transforms:
                key = (tr.header.frame_id.lstrip('/'), tr.child_frame_id.lstrip('/'))
                samples.setdefault(key, []).append((stamp_to_ns(tr.header.stamp),
                                                    transform_to_matrix(tr.transform)))
    except Exception:  # reason: a cut-off bag ends mid-read; the poses read so far stand
        pass
    for (world, body), seq in samples.items():
        try:
            T_body_cam = static.lookup(body, camera_frame)
        except DataError:
            continue
        return PoseTrack([s for s, _ in seq], [T @ T_body_cam for _, T in seq]), world
    return None


def ego_motion(track: PoseTrack, stamp_a_ns: int, stamp_b_ns: int) -> np.ndarray | None:
    """``T_b_a`` (4, 4) between two camera stamps, or None when a pose is missing."""
    Ta, Tb = track.at(stamp_a_ns), track.at(stamp_b_ns)
    if Ta is None or Tb is None:
        return None
    return np.linalg.inv(Tb) @ Ta


__all__ = ['EDGE_TOL', 'DepthFrame', 'PairStability', 'PoseTrack', 'ego_motion',
           'pair_stability', 'read_pose_track', 'warp_depth']
