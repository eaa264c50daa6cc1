"""KITTI raw calibration files: read, write, and project Velodyne points into camera 2.

The projection itself (any LiDAR, any camera) is :func:`urcdc_depth_ros.geometry.points_to_depth`.

Frames: ``velo`` (x forward, y left, z up, metres) -> ``cam0`` (unrectified) -> rectified cam0
(``R_rect_00``) -> camera 2 optical frame (x right, y down, z forward; REP 103 optical). The
camera-2 offset (``P_rect_02[:, 3]``, about 6 cm) is folded into the transform, so the matching
intrinsics are ``K = P_rect_02[:, :3]`` with zero Tx.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..config import KITTI_FOCAL_PX
from ..errors import DataError
from ..geometry import points_to_depth

# KITTI 2011_09_26 calibration (KITTI raw devkit), the generator's default camera.
KITTI_2011_09_26 = {
    'P_rect_02': np.array([[KITTI_FOCAL_PX, 0.0, 6.095593e+02, 4.485728e+01],
                           [0.0, KITTI_FOCAL_PX, 1.728540e+02, 2.163791e-01],
                           [0.0, 0.0, 1.0, 2.745884e-03]]),
    # the right colour camera: P_rect_03[:, 3] = K @ t, t its offset from cam0 (~0.47 m right,
    # so the 02-03 baseline is ~0.53 m)
    'P_rect_03': np.array([[7.215377e+02, 0.0, 6.095593e+02, -3.395242e+02],
                           [0.0, 7.215377e+02, 1.728540e+02, 2.199936e+00],
                           [0.0, 0.0, 1.0, 2.729905e-03]]),
    'R_rect_00': np.array([[9.999239e-01, 9.837760e-03, -7.445048e-03],
                           [-9.869795e-03, 9.999421e-01, -4.278459e-03],
                           [7.402527e-03, 4.351614e-03, 9.999631e-01]]),
    'velo_R': np.array([[7.533745e-03, -9.999714e-01, -6.166020e-04],
                        [1.480249e-02, 7.280733e-04, -9.998902e-01],
                        [9.998621e-01, 7.523790e-03, 1.480755e-02]]),
    'velo_T': np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01]),
    'size_wh': (1242, 375),
}


def read_calib_file(path: str) -> dict[str, np.ndarray]:
    """Read a KITTI ``key: v1 v2 ...`` calibration file; numeric rows become float64 arrays."""
    if not os.path.isfile(path):
        raise DataError(f'calibration file {path!r} is missing; a KITTI raw date folder holds '
                        'calib_cam_to_cam.txt and calib_velo_to_cam.txt')
    data: dict[str, np.ndarray] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if ':' not in line:
                continue
            key, value = line.split(':', 1)
            try:
                data[key.strip()] = np.array([float(v) for v in value.split()])
            except ValueError:
                continue  # calib_time and other text entries
    return data


def write_calib_file(path: str, entries: dict[str, object]) -> None:
    """Write ``key: values`` lines (arrays flattened row-major in KITTI's %e format)."""
    with open(path, 'w') as f:
        for key, value in entries.items():
            if isinstance(value, str):
                f.write(f'{key}: {value}\n')
            else:
                flat = np.asarray(value, np.float64).ravel()
                f.write(f'{key}: ' + ' '.join(f'{v:.6e}' for v in flat) + '\n')


def _need(data: dict[str, np.ndarray], key: str, size: int, path: str) -> np.ndarray:
    if key not in data or data[key].size != size:
        raise DataError(f'{path!r}: entry {key!r} with {size} numbers is missing or malformed')
    return data[key]


@dataclass(frozen=True)
class KittiCalib:
    """Calibration of one KITTI colour camera against the Velodyne.

    Attributes:
        P_rect: (3, 4) rectified projection of the camera (includes its offset from cam0).
        R_rect_00: (3, 3) rectifying rotation of cam0.
        T_cam0_velo: (4, 4) Velodyne -> unrectified cam0, metres.
        width, height: rectified image size, pixels.
    """

    P_rect: np.ndarray
    R_rect_00: np.ndarray
    T_cam0_velo: np.ndarray
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsics of the rectified camera, pixels."""
        return self.P_rect[:, :3].copy()

    @property
    def T_cam_velo(self) -> np.ndarray:
        """(4, 4) Velodyne -> this camera's optical frame (rectified, offset folded in), metres."""
        offset = np.eye(4)
        offset[:3, 3] = np.linalg.solve(self.K, self.P_rect[:, 3])
        rect = np.eye(4)
        rect[:3, :3] = self.R_rect_00
        return offset @ rect @ self.T_cam0_velo

    def for_camera(self, cam: int) -> 'KittiCalib':
        """This calibration for colour camera ``cam`` (2 or 3) of the same rectified rig.

        Both share K and R_rect_00; camera 3's ``P_rect[:, 3]`` carries KITTI's offset from
        cam0 (in metres, so it holds at any image scale).
        """
        if cam == 2:
            return self
        if cam != 3:
            raise DataError(f'KITTI colour cameras are 2 and 3, got {cam!r}')
        kitti = KITTI_2011_09_26
        t_m = np.linalg.solve(kitti['P_rect_03'][:, :3], kitti['P_rect_03'][:, 3])
        P = np.hstack([self.K, (self.K @ t_m)[:, None]])
        return KittiCalib(P, self.R_rect_00, self.T_cam0_velo, self.width, self.height)

    @classmethod
    def default(cls) -> 'KittiCalib':
        """KITTI's 2011_09_26 camera 2 (full 1242 x 375 frame)."""
        c = KITTI_2011_09_26
        t = np.eye(4)
        t[:3, :3] = c['velo_R']
        t[:3, 3] = c['velo_T']
        return cls(c['P_rect_02'].copy(), c['R_rect_00'].copy(), t, *c['size_wh'])

    def scaled(self, width: int, height: int) -> 'KittiCalib':
        """A KITTI-like camera of ``width`` x ``height``: ``P_rect`` scaled per axis.

        This defines a new camera (the synthetic generator renders its images with exactly
        this ``K``), it does not resample existing KITTI images: for that use
        :func:`urcdc_depth_ros.geometry.resize_intrinsics`, whose pixel-centre rule moves the
        principal point by another ``0.5 * (s - 1)`` px. Kept as the plain scale so the
        synthetic data sets stay byte-identical.
        """
        s = np.diag([width / self.width, height / self.height, 1.0])
        return KittiCalib(s @ self.P_rect, self.R_rect_00, self.T_cam0_velo, width, height)

    @classmethod
    def load(cls, date_dir: str, cam: int = 2) -> 'KittiCalib':
        """Read ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` from a date folder."""
        cc_path = os.path.join(date_dir, 'calib_cam_to_cam.txt')
        vc_path = os.path.join(date_dir, 'calib_velo_to_cam.txt')
        cc = read_calib_file(cc_path)
        vc = read_calib_file(vc_path)
        p = _need(cc, f'P_rect_0{cam}', 12, cc_path).reshape(3, 4)
        r = _need(cc, 'R_rect_00', 9, cc_path).reshape(3, 3)
        w, h = _need(cc, f'S_rect_0{cam}', 2, cc_path)
        t = np.eye(4)
        t[:3, :3] = _need(vc, 'R', 9, vc_path).reshape(3, 3)
        t[:3, 3] = _need(vc, 'T', 3, vc_path)
        return cls(p, r, t, int(round(w)), int(round(h)))

    def write(self, date_dir: str, calib_time: str = '09-Jan-2012 13:57:47') -> None:
        """Write the three KITTI raw calibration files.

        Cameras 0..3 share this camera's intrinsics; camera 3 is offset as KITTI's right colour
        camera (:meth:`for_camera`); the IMU->Velodyne transform is KITTI's nominal one.
        """
        os.makedirs(date_dir, exist_ok=True)
        cc: dict[str, object] = {'calib_time': calib_time, 'corner_dist': np.array([0.0995])}
        k = self.K
        right = self.for_camera(3).P_rect
        for cam in range(4):
            cc[f'S_0{cam}'] = np.array([1392.0, 512.0])
            cc[f'K_0{cam}'] = k
            cc[f'D_0{cam}'] = np.zeros(5)
            cc[f'R_0{cam}'] = np.eye(3)
            P = {2: self.P_rect, 3: right}.get(cam, np.hstack([k, np.zeros((3, 1))]))
            cc[f'T_0{cam}'] = np.linalg.solve(k, P[:, 3])
            cc[f'S_rect_0{cam}'] = np.array([float(self.width), float(self.height)])
            cc[f'R_rect_0{cam}'] = self.R_rect_00 if cam == 0 else np.eye(3)
            cc[f'P_rect_0{cam}'] = P
        write_calib_file(os.path.join(date_dir, 'calib_cam_to_cam.txt'), cc)
        write_calib_file(os.path.join(date_dir, 'calib_velo_to_cam.txt'), {
            'calib_time': calib_time, 'R': self.T_cam0_velo[:3, :3],
            'T': self.T_cam0_velo[:3, 3], 'delta_f': np.zeros(2), 'delta_c': np.zeros(2)})
        write_calib_file(os.path.join(date_dir, 'calib_imu_to_velo.txt'), {
            'calib_time': calib_time,
            'R': np.array([[9.999976e-01, 7.553071e-04, -2.035826e-03],
                           [-7.854027e-04, 9.998898e-01, -1.482298e-02],
                           [2.024406e-03, 1.482454e-02, 9.998881e-01]]),
            'T': np.array([-8.086759e-01, 3.195559e-01, -7.997231e-01])})


def velodyne_to_depth(points_velo: np.ndarray, calib: KittiCalib) -> np.ndarray:
    """Velodyne scan (N, 4) x, y, z, intensity -> (H, W) float32 sparse depth of the camera."""
    return points_to_depth(points_velo, calib.T_cam_velo, calib.K, calib.width, calib.height)
