"""KITTI OXTS (GPS/IMU) files: read them as vehicle poses, write them from poses.

A KITTI raw drive holds ``oxts/data/NNNNNNNNNN.txt`` (one line of 30 numbers per frame:
lat, lon (deg), alt (m), roll, pitch, yaw (rad), velocities, accelerations, angular rates,
accuracies and status flags) and ``oxts/timestamps.txt``. Poses follow the KITTI raw devkit
(``devkit/matlab/convertOxtsToPose.m``; pykitti's ``utils.pose_from_oxts_packet``): a Mercator
projection with the scale ``cos(lat_0)`` of the first packet gives x east, y north (m),
z = altitude; the rotation is ``Rz(yaw) Ry(pitch) Rx(roll)``; the world origin is the first
packet's position, so ``T_world_imu`` of frame 0 is a pure rotation. The IMU frame is the
vehicle frame: x forward, y left, z up (REP 103). ``calib_imu_to_velo.txt`` in the date folder
holds ``T_velo_imu`` (maps IMU points into the Velodyne frame).
"""
from __future__ import annotations

import glob
import os

import numpy as np

from ..errors import DataError
from .calib import read_calib_file

EARTH_RADIUS_M = 6378137.0  # devkit's ``er``
N_FIELDS = 30
# Written for the fields a pose does not determine (accelerations, rates: 0): accuracies
# (pos m, vel m/s) and the status flags navstat, numsats, posmode, velmode, orimode.
_STATUS = (0.05, 0.02, 4, 10, 5, 5, 6)


def _rot(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def _mercator(lat_deg, lon_deg, scale: float) -> tuple[np.ndarray, np.ndarray]:
    x = scale * np.asarray(lon_deg) * np.pi * EARTH_RADIUS_M / 180.0
    y = scale * EARTH_RADIUS_M * np.log(np.tan((90.0 + np.asarray(lat_deg)) * np.pi / 360.0))
    return x, y


def oxts_to_poses(packets: np.ndarray) -> np.ndarray:
    """(N, >=6) OXTS rows -> (N, 4, 4) ``T_world_imu`` (world origin at the first packet)."""
    p = np.asarray(packets, np.float64)
    if p.ndim != 2 or p.shape[1] < 6 or p.shape[0] == 0:
        raise DataError(f'OXTS data has shape {p.shape}; expected (N, {N_FIELDS}) rows of '
                        'lat lon alt roll pitch yaw ...')
    scale = np.cos(p[0, 0] * np.pi / 180.0)
    x, y = _mercator(p[:, 0], p[:, 1], scale)
    t = np.stack([x, y, p[:, 2]], axis=1)
    T = np.tile(np.eye(4), (len(p), 1, 1))
    for i, row in enumerate(p):
        T[i, :3, :3] = _rot(row[3], row[4], row[5])
    T[:, :3, 3] = t - t[0]
    return T


def poses_to_oxts(T_world_imu: np.ndarray, stamps_ns: np.ndarray, lat0_deg: float = 49.011,
                  lon0_deg: float = 8.423, alt0_m: float = 112.0) -> np.ndarray:
    """Inverse of :func:`oxts_to_poses`: (N, 4, 4) poses -> (N, 30) OXTS rows.

    The first pose's translation must be zero (the devkit's world origin); it is placed at
    ``lat0_deg, lon0_deg, alt0_m``. Velocities are finite differences (m/s, world: north,
    east; vehicle: forward, left, up); accelerations and angular rates are written as 0.
    """
    T = np.asarray(T_world_imu, np.float64)
    if np.abs(T[0, :3, 3]).max() > 1e-9:
        raise ValueError('the first pose must sit at the world origin (KITTI convention)')
    scale = np.cos(lat0_deg * np.pi / 180.0)
    x0, y0 = _mercator(lat0_deg, lon0_deg, scale)
    x, y, z = T[:, 0, 3] + x0, T[:, 1, 3] + y0, T[:, 2, 3] + alt0_m
    lon = x * 180.0 / (np.pi * EARTH_RADIUS_M * scale)
    lat = 360.0 / np.pi * np.arctan(np.exp(y / (scale * EARTH_RADIUS_M))) - 90.0
    R = T[:, :3, :3]
    pitch = -np.arcsin(np.clip(R[:, 2, 0], -1, 1))
    roll = np.arctan2(R[:, 2, 1], R[:, 2, 2])
    yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    t_s = np.asarray(stamps_ns, np.int64) / 1e9
    v_world = np.gradient(T[:, :3, 3], t_s, axis=0) if len(T) > 1 else np.zeros((1, 3))
    v_body = np.einsum('nji,nj->ni', R, v_world)
    rows = np.zeros((len(T), N_FIELDS))
    rows[:, 0], rows[:, 1], rows[:, 2] = lat, lon, z
    rows[:, 3], rows[:, 4], rows[:, 5] = roll, pitch, yaw
    rows[:, 6], rows[:, 7] = v_world[:, 1], v_world[:, 0]      # vn, ve
    rows[:, 8:11] = v_body                                      # vf, vl, vu
    rows[:, 23:30] = _STATUS
    return rows


def format_oxts_line(row: np.ndarray) -> str:
    """One OXTS text line (17 significant digits: lat/lon round-trip below a micrometre)."""
    return ' '.join(f'{v:.17g}' if i < 25 else str(int(v)) for i, v in enumerate(row))


def write_oxts(drive_dir: str, rows: np.ndarray, stamp_lines: list[str]) -> None:
    """Write ``oxts/data/*.txt``, ``oxts/timestamps.txt`` and ``oxts/dataformat.txt``."""
    data = os.path.join(drive_dir, 'oxts', 'data')
    os.makedirs(data, exist_ok=True)
    for k, row in enumerate(rows):
        with open(os.path.join(data, f'{k:010d}.txt'), 'w') as f:
            f.write(format_oxts_line(row) + '\n')
    with open(os.path.join(drive_dir, 'oxts', 'timestamps.txt'), 'w') as f:
        f.write('\n'.join(stamp_lines) + '\n')
    names = ('lat lon alt roll pitch yaw vn ve vf vl vu ax ay az af al au wx wy wz wf wl wu '
             'pos_accuracy vel_accuracy navstat numsats posmode velmode orimode').split()
    with open(os.path.join(drive_dir, 'oxts', 'dataformat.txt'), 'w') as f:
        f.write(''.join(f'{n}:\n' for n in names))


def read_oxts(drive_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(stamps_ns (N,), T_world_imu (N, 4, 4))`` of a drive's ``oxts/``; None when absent."""
    from .raw import read_timestamps_ns
    paths = sorted(glob.glob(os.path.join(drive_dir, 'oxts', 'data', '*.txt')))
    if not paths:
        return None
    rows = []
    for p in paths:
        with open(p) as f:
            vals = f.read().split()
        if len(vals) < 6:
            raise DataError(f'{p!r} holds {len(vals)} numbers; an OXTS line has {N_FIELDS}')
        try:
            rows.append([float(v) for v in vals])
        except ValueError as exc:
            raise DataError(f'{p!r} is not an OXTS line of numbers ({exc})') from exc
    stamps = read_timestamps_ns(os.path.join(drive_dir, 'oxts', 'timestamps.txt'))
    if len(stamps) < len(rows):
        raise DataError(f'{drive_dir!r}: {len(rows)} OXTS files but {len(stamps)} timestamps')
    width = min(len(r) for r in rows)
    return stamps[:len(rows)], oxts_to_poses(np.array([r[:width] for r in rows]))


def read_T_velo_imu(date_dir: str) -> np.ndarray:
    """(4, 4) IMU -> Velodyne transform from ``calib_imu_to_velo.txt``, metres."""
    path = os.path.join(date_dir, 'calib_imu_to_velo.txt')
    if not os.path.isfile(path):
        raise DataError(f'{path!r} is missing; KITTI raw date folders ship it beside '
                        'calib_velo_to_cam.txt (needed to place the OXTS poses)')
    c = read_calib_file(path)
    if c.get('R', np.zeros(0)).size != 9 or c.get('T', np.zeros(0)).size != 3:
        raise DataError(f'{path!r} needs R (9 numbers) and T (3 numbers)')
    T = np.eye(4)
    T[:3, :3] = c['R'].reshape(3, 3)
    T[:3, 3] = c['T']
    return T


__all__ = ['oxts_to_poses', 'poses_to_oxts', 'read_oxts', 'read_T_velo_imu', 'write_oxts']
