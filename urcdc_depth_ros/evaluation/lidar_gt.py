"""Sparse depth ground truth from a LiDAR cloud projected into a camera.

Chain: cloud points (LiDAR frame, metres) --``T_cam_lidar`` from the bag's TF--> camera
optical frame (x right, y down, z forward) --intrinsics--> pixels; where several returns land
on one pixel the nearest is kept (:func:`urcdc_depth_ros.geometry.project_to_depth`).

Stereo offset rule (``tx_mode``): a CameraInfo ``P`` may carry ``Tx = -fx' * B`` (and ``Ty``)
for the second camera of a rectified stereo pair. That offset and the TF describe the same
physical baseline, so it must be applied exactly once:

* ``'tf'`` (default, also ``'auto'``): TF is the source of truth. The image's ``frame_id`` is
  taken to be that camera's own optical frame, whose TF already contains the baseline, so
  only ``P[:, :3]`` is used and Tx/Ty are ignored. This is what ``urcdc-kitti2bag`` writes
  (P has zero Tx anyway) and what the classic KITTI ROS converters do (P_rect_02 with
  Tx = 44.9 px plus a TF to the colour camera that already includes the offset).
* ``'apply'``: the ``frame_id`` is the stereo *reference* camera's frame (ROS stereo
  convention where both images share one frame); points are first shifted by
  ``inv(P[:, :3]) @ P[:, 3]`` (the baseline), i.e. projected as with the full P.

In both cases the pixel mapping uses ``K`` (the intrinsics the prediction was made with), so
a depth image at another resolution is compared with correctly scaled intrinsics.
"""
from __future__ import annotations

import numpy as np

from ..geometry import points_to_depth, resize_intrinsics

TX_MODES = ('auto', 'tf', 'apply')


def intrinsics_and_offset(K: np.ndarray, P: np.ndarray | None,
                          tx_mode: str = 'auto') -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics (3, 3) and the extra camera-frame offset (3,) metres to apply before projecting.

    See the module docstring for the rule. With ``P`` missing or invalid, K and no offset.
    """
    if tx_mode not in TX_MODES:
        raise ValueError(f'tx_mode={tx_mode!r} is not one of {list(TX_MODES)}')
    K = np.asarray(K, np.float64)
    if tx_mode != 'apply' or P is None or not (P[0, 0] > 0 and P[1, 1] > 0):
        return K, np.zeros(3)
    P = np.asarray(P, np.float64)
    return K, np.linalg.solve(P[:, :3], P[:, 3])


def lidar_depth(points_lidar: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray,
                width: int, height: int, P: np.ndarray | None = None, tx_mode: str = 'auto',
                min_depth: float = 0.1) -> np.ndarray:
    """Project a LiDAR cloud into a camera; nearest return per pixel.

    Args:
        points_lidar: (N, 3+) x, y, z in the LiDAR frame, metres.
        T_cam_lidar: (4, 4) maps LiDAR-frame points into the camera optical frame
            (``TransformTree.lookup(camera_frame, lidar_frame)``).
        K: (3, 3) intrinsics of the image the depth is compared with, pixels.
        width, height: that image's size, pixels.
        P: (3, 4) CameraInfo projection or None; see ``tx_mode`` in the module docstring.
    Returns:
        (height, width) float32 depth along the optical axis, metres; 0 = no return.
    """
    Kp, offset = intrinsics_and_offset(K, P, tx_mode)
    T = np.asarray(T_cam_lidar, np.float64).copy()
    T[:3, 3] += offset
    return points_to_depth(points_lidar, T, Kp, width, height, min_depth=min_depth)


def depth_image_intrinsics(K_info: np.ndarray, info_wh: tuple[int, int],
                           depth_wh: tuple[int, int]) -> np.ndarray:
    """K of a depth image of size ``depth_wh`` from a camera_info of size ``info_wh``, pixels.

    A depth image recorded at another resolution than its camera_info (a node publishing at
    the network size) is a resample of that camera's image, so K follows
    :func:`urcdc_depth_ros.geometry.resize_intrinsics`: the same pixel-centre rule the node
    uses for the ``K`` it publishes.
    """
    K = np.asarray(K_info, np.float64)
    if tuple(depth_wh) == tuple(info_wh):
        return K
    return resize_intrinsics(K, (info_wh[1], info_wh[0]), (depth_wh[1], depth_wh[0]))


__all__ = ['lidar_depth', 'intrinsics_and_offset', 'depth_image_intrinsics', 'TX_MODES']
