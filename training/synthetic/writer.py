"""Write synthetic drives in the KITTI raw + annotated-depth layout (see the package docstring)."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from urcdc_depth_ros.errors import ConfigError
from urcdc_depth_ros.kitti.calib import KittiCalib, velodyne_to_depth
from urcdc_depth_ros.kitti.oxts import poses_to_oxts, read_T_velo_imu, write_oxts

from .lidar import scan
from .scene import CameraRays, StreetScene, make_street_scene, render_camera

logger = logging.getLogger(__name__)

DEFAULT_DATE = '2011_09_26'
FRAME_DT_S = 0.1036  # KITTI's camera period, seconds (about 9.65 Hz)
DEPTH_SCALE = 256.0  # uint16 PNG value per metre (KITTI convention)
OXTS_YAW0_RAD = 0.3  # heading of the synthetic vehicle in the OXTS world (east = 0)
# Fast deflate, no per-row PNG filter (cv2's default adaptive filtering costs more than the
# compression saves here). Files stay ordinary, lossless PNGs.
INFO_FILE = 'synthetic_info.json'  # written last: the DatasetInfo fields + generator settings
PNG_FLAGS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


@dataclass(frozen=True)
class DatasetInfo:
    """Where :func:`generate_dataset` put things (all paths absolute).

    Attributes:
        out_dir: the root passed in. raw_path: ``out_dir/raw`` (the loaders' ``data_path``).
        gt_path: ``out_dir/depth_annotated`` (the loaders' ``gt_path``).
        splits_dir: ``out_dir/splits``; train_split, test_split: the two split files.
        date: KITTI date folder name; drives: all drive folder names, train_drives and
        test_drives partition them. fx: focal length written in the split files, pixels.
        width, height: image size, pixels; frames: frames per drive; seed: the seed used.
    """

    out_dir: str
    raw_path: str
    gt_path: str
    splits_dir: str
    train_split: str
    test_split: str
    date: str
    drives: tuple[str, ...]
    train_drives: tuple[str, ...]
    test_drives: tuple[str, ...]
    fx: float
    width: int
    height: int
    frames: int
    seed: int


def kitti_timestamp(ns: int) -> str:
    """KITTI timestamp text for ``ns`` nanoseconds since the epoch (UTC).

    E.g. ``2011-09-26 13:02:25.964389445``.
    """
    sec, frac = divmod(int(ns), 1_000_000_000)
    t = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc)
    return f'{t:%Y-%m-%d %H:%M:%S}.{frac:09d}'


def encode_depth_png(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) metres -> uint16 metres x 256; 0 where not finite, <= 0 or beyond 255.99 m.

    Rounds half to even. float32 input stays float32 (scaling by 256 is exact).
    """
    d = np.asarray(depth_m)
    scaled = d * np.asarray(DEPTH_SCALE, np.float32 if d.dtype == np.float32 else np.float64)
    ok = (scaled > 0) & (scaled <= 65535)  # False for NaN and inf
    return np.rint(scaled, out=np.zeros_like(scaled), where=ok).astype(np.uint16)


def _write_png(path: str, img: np.ndarray) -> None:
    if not cv2.imwrite(path, img, PNG_FLAGS):
        raise OSError(f'could not write {path!r}')


def _validate(drives, frames, width, height, test_drives):
    if drives < 1 or frames < 1:
        raise ConfigError(f'need drives >= 1 and frames >= 1, got drives={drives}, '
                          f'frames={frames}')
    if not 0 <= test_drives <= drives:
        raise ConfigError(f'test_drives={test_drives} must be in 0..drives ({drives})')
    if width < 32 or height < 32:
        raise ConfigError(f'image size {width}x{height} is too small; use at least 32x32')


def generate_drive(drive_dir: str, gt_dir: str, calib: KittiCalib, frames: int,
                   rng: np.random.Generator, start_ns: int,
                   lidar_azimuth_step_deg: float = 0.2) -> None:
    """Render ``frames`` frames of one drive into ``drive_dir`` (raw) and ``gt_dir``."""
    speed = rng.uniform(6.0, 12.0)  # m/s
    sway_amp, sway_phase = rng.uniform(0.0, 0.3), rng.uniform(0, 2 * np.pi)
    dts = FRAME_DT_S + rng.uniform(-5e-4, 5e-4, frames)
    dts[0] = 0.0
    t_s = np.cumsum(dts)
    z_cam = speed * t_s
    scene = make_street_scene(rng, -130.0, float(z_cam[-1]) + 260.0)
    dirs = {k: os.path.join(drive_dir, k) for k in
            ('image_02/data', 'image_03/data', 'velodyne_points/data', 'dense_depth/image_02')}
    for d in list(dirs.values()) + [gt_dir]:
        os.makedirs(d, exist_ok=True)
    stamps_cam, stamps_velo, v_start, v_end = [], [], [], []
    T_cam_velo = calib.T_cam_velo
    origins = []
    right = calib.for_camera(3)
    # camera 3's centre in camera 2's frame (the rectified pair shares its orientation)
    right_offset_m = (T_cam_velo @ np.linalg.inv(right.T_cam_velo))[:3, 3]
    for k in range(frames):
        origin = np.array([sway_amp * np.sin(z_cam[k] / 40.0 + sway_phase), 0.0, z_cam[k]])
        origins.append(origin)
        name = f'{k:010d}'
        rgb, depth = render_camera(scene, CameraRays(calib.K, calib.width, calib.height,
                                                     origin))
        T_world_cam = np.eye(4)
        T_world_cam[:3, 3] = origin
        points = scan(scene, T_world_cam @ T_cam_velo, lidar_azimuth_step_deg)
        gt = velodyne_to_depth(points, calib)
        _write_png(os.path.join(dirs['image_02/data'], name + '.png'),
                   cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        rgb_right, _ = render_camera(scene, CameraRays(right.K, right.width, right.height,
                                                       origin + right_offset_m))
        _write_png(os.path.join(dirs['image_03/data'], name + '.png'),
                   cv2.cvtColor(rgb_right, cv2.COLOR_RGB2BGR))
        _write_png(os.path.join(dirs['dense_depth/image_02'], name + '.png'),
                   encode_depth_png(depth))
        _write_png(os.path.join(gt_dir, name + '.png'), encode_depth_png(gt))
        points.tofile(os.path.join(dirs['velodyne_points/data'], name + '.bin'))
        ns = start_ns + int(round(t_s[k] * 1e9))
        stamps_cam.append(kitti_timestamp(ns))
        stamps_velo.append(kitti_timestamp(ns - 2_000_000))
        v_start.append(kitti_timestamp(ns - 52_000_000))
        v_end.append(kitti_timestamp(ns + 48_000_000))
    for rel, lines in (('image_02/timestamps.txt', stamps_cam),
                       ('image_03/timestamps.txt', stamps_cam),
                       ('velodyne_points/timestamps.txt', stamps_velo),
                       ('velodyne_points/timestamps_start.txt', v_start),
                       ('velodyne_points/timestamps_end.txt', v_end)):
        with open(os.path.join(drive_dir, rel), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    T_cam_imu = T_cam_velo @ read_T_velo_imu(os.path.dirname(drive_dir))
    write_oxts(drive_dir, poses_to_oxts(oxts_poses(np.array(origins), T_cam_imu),
                                        np.array([start_ns + int(round(t * 1e9)) for t in t_s])),
               stamps_cam)


def oxts_poses(origins_m: np.ndarray, T_cam_imu: np.ndarray) -> np.ndarray:
    """(N, 4, 4) ``T_world_imu`` (KITTI OXTS world) of a camera moving through ``origins_m``.

    The scene's world has the camera's optical axes (x right, y down, z forward); the camera
    only translates, to ``origins_m`` (N, 3) metres. The OXTS world puts the first IMU pose
    at the origin, heading ``OXTS_YAW0_RAD``, so every pose is exact:
    ``T_world_imu(k) = Rz(yaw0) @ inv(T_scene_imu(0)) @ T_scene_imu(k)``.
    """
    c, s = np.cos(OXTS_YAW0_RAD), np.sin(OXTS_YAW0_RAD)
    yaw0 = np.eye(4)
    yaw0[:2, :2] = [[c, -s], [s, c]]
    out = np.empty((len(origins_m), 4, 4))
    for k, o in enumerate(origins_m):
        T_scene_cam = np.eye(4)
        T_scene_cam[:3, 3] = o
        out[k] = T_scene_cam @ T_cam_imu
    inv0 = np.linalg.inv(out[0])
    out = np.einsum('ij,njk->nik', yaw0 @ inv0, out)
    out[0, :3, 3] = 0.0  # exact zero (the devkit's origin) rather than rounding residue
    return out


def read_dataset_info(out_dir: str) -> DatasetInfo | None:
    """The DatasetInfo of a finished :func:`generate_dataset` run in ``out_dir``; None if none."""
    try:
        with open(os.path.join(out_dir, INFO_FILE)) as f:
            meta = json.load(f)
        return DatasetInfo(**{k.name: tuple(meta[k.name]) if isinstance(meta[k.name], list)
                              else meta[k.name] for k in fields(DatasetInfo)})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def generate_dataset(out_dir: str, drives: int = 2, frames: int = 5, seed: int = 0,
                     width: int = 1242, height: int = 375, test_drives: int = 1,
                     date: str = DEFAULT_DATE, lidar_azimuth_step_deg: float | None = None,
                     progress: bool = False) -> DatasetInfo:
    """Generate a synthetic KITTI-format data set (deterministic in ``seed``).

    Args:
        out_dir: output root; created if needed (existing files are overwritten).
        drives, frames: number of drives and frames per drive.
        width, height: image size, pixels (KITTI's intrinsics scaled to it).
        test_drives: the last ``test_drives`` drives go to ``synthetic_test.txt``.
        lidar_azimuth_step_deg: LiDAR azimuth step, degrees; None picks 0.2 at full width and
            proportionally coarser for smaller images.
    """
    _validate(drives, frames, width, height, test_drives)
    out_dir = os.path.abspath(out_dir)
    raw = os.path.join(out_dir, 'raw')
    gt_root = os.path.join(out_dir, 'depth_annotated')
    splits = os.path.join(out_dir, 'splits')
    date_dir = os.path.join(raw, date)
    for d in (date_dir, gt_root, splits):
        os.makedirs(d, exist_ok=True)
    calib = KittiCalib.default().scaled(width, height)
    calib.write(date_dir)
    if lidar_azimuth_step_deg is None:
        lidar_azimuth_step_deg = 0.2 * max(1.0, 1242.0 / width)
    fx = float(calib.K[0, 0])
    names = [f'{date}_drive_{i + 1:04d}_sync' for i in range(drives)]
    base_ns = int(_dt.datetime(2011, 9, 26, 13, 2, 25, tzinfo=_dt.timezone.utc).timestamp()
                  * 1e9) + 964389445
    it = range(drives)
    if progress:
        from urcdc_depth_ros.progress import progress_bar
        it = progress_bar(it, desc='drives', unit='drive')
    for i in it:
        rng = np.random.default_rng([seed, i])
        generate_drive(os.path.join(date_dir, names[i]),
                       os.path.join(gt_root, names[i], 'proj_depth', 'groundtruth', 'image_02'),
                       calib, frames, rng, base_ns + i * 600_000_000_000, lidar_azimuth_step_deg)
    n_train = drives - test_drives
    split_paths = {}
    for split, subset in (('train', names[:n_train]), ('test', names[n_train:])):
        lines = [f'{date}/{d}/image_02/data/{k:010d}.png '
                 f'{d}/proj_depth/groundtruth/image_02/{k:010d}.png {fx:.4f}'
                 for d in subset for k in range(frames)]
        path = os.path.join(splits, f'synthetic_{split}.txt')
        with open(path, 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
        split_paths[split] = path
    info = DatasetInfo(out_dir, raw, gt_root, splits, split_paths['train'], split_paths['test'],
                       date, tuple(names), tuple(names[:n_train]), tuple(names[n_train:]),
                       fx, width, height, frames, seed)
    meta = asdict(info)
    meta.update(cam_height_m=StreetScene.empty().cam_height, depth_scale=DEPTH_SCALE,
                lidar_azimuth_step_deg=lidar_azimuth_step_deg)
    with open(os.path.join(out_dir, INFO_FILE), 'w') as f:
        json.dump(meta, f, indent=1)
    logger.info('wrote %d drives x %d frames (%dx%d, fx %.4f px) to %s', drives, frames, width,
                height, fx, out_dir)
    return info
