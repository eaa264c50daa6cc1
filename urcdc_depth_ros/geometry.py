"""Pinhole intrinsics and LiDAR -> depth image projection: one convention for the whole package.

Pure numpy. The node, the estimator's preprocessing, the point cloud builder and the bag
evaluator all take their intrinsics arithmetic from here, so the ``K`` the node publishes and
the ``K`` the evaluator projects LiDAR with agree to the last bit for the same image size.

Pixel-centre convention (the one ``cv2.resize`` and ROS image_geometry use): pixel ``i`` covers
``[i - 0.5, i + 0.5)`` in ``K``'s coordinates, i.e. its centre is at the integer ``i``. Resizing a
width ``W`` to ``W'`` maps ``x -> (x + 0.5) * W'/W - 0.5``, so ``fx' = fx * W'/W`` and
``cx' = (cx + 0.5) * W'/W - 0.5`` (likewise for y). A plain diagonal scale (``cx' = cx * s``)
is off by ``0.5 * (s - 1)`` px. Cropping at ``(top, left)`` shifts the principal point:
``cx' = cx - left``, ``cy' = cy - top``. Projection rounds ``u = fx * x / z + cx`` to the
nearest integer, the pixel whose centre is closest.

Frames: camera optical frame (REP 103: x right, y down, z forward), metres.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def validate_intrinsics(K) -> np.ndarray:
    """Return ``K`` as a (3, 3) float64 array, pixels.

    Raises:
        InputError: not numeric, not 3x3, non-finite, fx or fy <= 0, or singular.
    """
    try:
        K_px = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f'intrinsics K must be a numeric 3x3 array: {exc}') from exc
    if K_px.shape != (3, 3):
        raise InputError(f'intrinsics K must have shape (3, 3), got {K_px.shape!r}; '
                         'pass CameraInfo.k reshaped to 3x3')
    if not np.all(np.isfinite(K_px)):
        raise InputError(f'intrinsics K has non-finite entries: {K_px.tolist()!r}')
    if not (K_px[0, 0] > 0 and K_px[1, 1] > 0) or abs(np.linalg.det(K_px)) < 1e-12:
        raise InputError(f'intrinsics K is singular or has non-positive focal lengths '
                         f'(fx={K_px[0, 0]!r}, fy={K_px[1, 1]!r}): {K_px.tolist()!r}; '
                         'is the camera calibrated?')
    return K_px


def camera_info_intrinsics(k, p) -> np.ndarray:
    """The intrinsics of a CameraInfo from its ``k`` (9) and ``p`` (12) arrays, (3, 3) pixels.

    The one rule for every CameraInfo reader (the node and the bag tools):

    * ``K`` when it is valid (:func:`validate_intrinsics`);
    * ``P[:, :3]`` when ``K`` is all zeros and that block is valid: some drivers fill only the
      rectified projection, and for a rectified image ``P[:, :3]`` is its intrinsics;
    * otherwise InputError. A ``K`` that is set but broken (negative focal, NaN) is not
      papered over with ``P``: it means a bad calibration, which the user must see.
    """
    K = np.asarray(k, np.float64).reshape(3, 3)
    if not K.any():
        P = np.asarray(p, np.float64).reshape(3, 4)
        try:
            return validate_intrinsics(P[:, :3])
        except InputError:
            raise InputError(f'camera_info has no focal length: K is all zeros and P '
                             f'{P.ravel().tolist()!r} has none either; the camera is not '
                             'calibrated (run camera_calibration)') from None
    return validate_intrinsics(K)


def resize_intrinsics(K_px: np.ndarray, src_hw: tuple[int, int],
                      dst_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics after resampling an ``src_hw`` (H, W) image to ``dst_hw`` (pixel centres)."""
    sx = dst_hw[1] / src_hw[1]
    sy = dst_hw[0] / src_hw[0]
    K_new = np.array(K_px, dtype=np.float64, copy=True)
    K_new[0, 0] *= sx
    K_new[0, 1] *= sx  # skew scales with x
    K_new[0, 2] = (K_px[0, 2] + 0.5) * sx - 0.5
    K_new[1, 1] *= sy
    K_new[1, 2] = (K_px[1, 2] + 0.5) * sy - 0.5
    return K_new


def crop_intrinsics(K_px: np.ndarray, top: int, left: int) -> np.ndarray:
    """Intrinsics after cropping a window whose top-left pixel is (top, left)."""
    K_new = np.array(K_px, dtype=np.float64, copy=True)
    K_new[0, 2] -= left
    K_new[1, 2] -= top
    return K_new


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to (N, 3+) points; extra columns are dropped."""
    p = np.asarray(points, np.float64)[:, :3]
    return p @ T[:3, :3].T + T[:3, 3]


def project_to_depth(points_cam: np.ndarray, K: np.ndarray, width: int, height: int,
                     min_depth: float = 0.1) -> np.ndarray:
    """Z-buffer points in a camera optical frame into a sparse depth image.

    Args:
        points_cam: (N, 3+) x, y, z in the optical frame, metres.
        K: (3, 3) intrinsics, pixels.
    Returns:
        (height, width) float32 depth, metres; 0 where no point lands. Where several points
        hit one pixel the nearest is kept (occlusion by the closest return).
    """
    pts = np.asarray(points_cam, np.float64)[:, :3]
    pts = pts[np.isfinite(pts).all(axis=1) & (pts[:, 2] > min_depth)]
    uvw = pts @ K.T
    uf, vf = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    # reason: most of a LiDAR scan falls outside the image; a loose test on the unrounded
    # coordinates drops it before the exact rounding and bounds test below
    near = np.flatnonzero((uf > -1) & (uf < width) & (vf > -1) & (vf < height))
    u = np.round(uf.take(near)).astype(np.int64)
    v = np.round(vf.take(near)).astype(np.int64)
    z = pts[:, 2].take(near)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, z = u[inside], v[inside], z[inside]
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, v * width + u, z)
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)


def points_to_depth(points: np.ndarray, T_cam_points: np.ndarray, K: np.ndarray, width: int,
                    height: int, min_depth: float = 0.1) -> np.ndarray:
    """Sensor-frame points (N, 3+) -> (height, width) float32 sparse camera depth, metres.

    ``T_cam_points`` (4, 4) maps the points into the camera optical frame; then as
    :func:`project_to_depth`. Points behind the camera (half of a 360-degree scan) are
    dropped before the transform.
    """
    T = np.asarray(T_cam_points, np.float64)
    pts = np.asarray(points)[:, :3]
    with np.errstate(invalid='ignore'):
        # loose (1 um): project_to_depth applies the exact min_depth test after the transform
        ahead = pts @ T[2, :3] + T[2, 3] > min_depth - 1e-6
    return project_to_depth(transform_points(T, np.compress(ahead, pts, axis=0)), K,
                            int(width), int(height), min_depth=min_depth)


__all__ = ['validate_intrinsics', 'camera_info_intrinsics', 'resize_intrinsics',
           'crop_intrinsics', 'transform_points', 'project_to_depth', 'points_to_depth']
