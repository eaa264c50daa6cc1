"""KITTI raw drive reader: image_02 frames, Velodyne scans and their UTC stamps.

Layout (KITTI raw ``*_sync`` drives, real or from ``urcdc_training.synthetic``)::

    DATE/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    DATE/DATE_drive_XXXX_sync/image_02/data/0000000000.png, image_02/timestamps.txt
    DATE/DATE_drive_XXXX_sync/velodyne_points/data/0000000000.bin, .../timestamps.txt

Stamps in ``timestamps.txt`` (``2011-09-26 13:02:25.964389445``) are read as UTC and returned
as integer nanoseconds since the Unix epoch, without going through floats.
"""
from __future__ import annotations

import calendar
import datetime as dt
import glob
import os

import numpy as np

from ..errors import DataError
from .calib import KittiCalib


def parse_kitti_stamp_ns(text: str) -> int:
    """``'2011-09-26 13:02:25.964389445'`` (UTC) -> nanoseconds since the epoch (int)."""
    text = text.strip()
    whole, _, frac = text.partition('.')
    try:
        t = dt.datetime.strptime(whole, '%Y-%m-%d %H:%M:%S')
        frac_ns = int((frac + '000000000')[:9]) if frac else 0
    except ValueError as exc:
        raise DataError(f'timestamp {text!r} is not KITTI\'s "YYYY-MM-DD HH:MM:SS.fffffffff"'
                        ) from exc
    return calendar.timegm(t.timetuple()) * 1_000_000_000 + frac_ns


def read_timestamps_ns(path: str) -> np.ndarray:
    """Read a KITTI ``timestamps.txt`` into an (N,) int64 array of UTC nanoseconds."""
    if not os.path.isfile(path):
        raise DataError(f'{path!r} is missing; every KITTI sensor folder holds timestamps.txt')
    with open(path) as f:
        lines = [ln for ln in f if ln.strip()]
    return np.array([parse_kitti_stamp_ns(ln) for ln in lines], np.int64)


def read_velodyne_bin(path: str) -> np.ndarray:
    """Read one scan: (N, 4) float32 x, y, z (m; Velodyne: x fwd, y left, z up), intensity."""
    raw = np.fromfile(path, np.float32)
    if raw.size % 4:
        raise DataError(f'{path!r} holds {raw.size} floats, not a multiple of 4 (x, y, z, i); '
                        'the file is truncated or not a KITTI Velodyne scan')
    return raw.reshape(-1, 4)


class KittiDrive:
    """One KITTI raw drive folder (``.../DATE/DATE_drive_XXXX_sync``).

    Attributes:
        drive_dir: the drive folder; its parent holds the calibration files.
        calib: camera-2 calibration (:class:`KittiCalib`).
        image_paths, velo_paths: sorted file lists (same length in ``_sync`` drives).
        image_stamps_ns, velo_stamps_ns: (N,) int64 UTC nanoseconds.
    """

    def __init__(self, drive_dir: str, camera: int = 2) -> None:
        self.drive_dir = os.path.abspath(drive_dir.rstrip('/'))
        if not os.path.isdir(self.drive_dir):
            raise DataError(f'KITTI drive folder {drive_dir!r} does not exist; pass '
                            'RAW/DATE/DATE_drive_XXXX_sync')
        self.date_dir = os.path.dirname(self.drive_dir)
        self.calib = KittiCalib.load(self.date_dir, cam=camera)
        cam_dir = os.path.join(self.drive_dir, f'image_0{camera}')
        velo_dir = os.path.join(self.drive_dir, 'velodyne_points')
        self.image_paths = sorted(glob.glob(os.path.join(cam_dir, 'data', '*.png')))
        self.velo_paths = sorted(glob.glob(os.path.join(velo_dir, 'data', '*.bin')))
        if not self.image_paths:
            raise DataError(f'no PNG frames under {cam_dir!r}/data; is this a KITTI raw drive?')
        self.image_stamps_ns = read_timestamps_ns(os.path.join(cam_dir, 'timestamps.txt'))
        self.velo_stamps_ns = (read_timestamps_ns(os.path.join(velo_dir, 'timestamps.txt'))
                               if self.velo_paths else np.zeros(0, np.int64))
        for name, paths, stamps in (('image', self.image_paths, self.image_stamps_ns),
                                    ('velodyne', self.velo_paths, self.velo_stamps_ns)):
            if len(stamps) < len(paths):
                raise DataError(f'{self.drive_dir!r}: {len(paths)} {name} files but only '
                                f'{len(stamps)} timestamps; the drive is incomplete')

    @property
    def name(self) -> str:
        """Drive folder name, e.g. ``2011_09_26_drive_0001_sync``."""
        return os.path.basename(self.drive_dir)

    def __len__(self) -> int:
        """Number of camera frames."""
        return len(self.image_paths)

    def frame_index(self, path: str) -> int:
        """KITTI frame number of a data file (``0000000042.png`` -> 42)."""
        return int(os.path.splitext(os.path.basename(path))[0])

    def read_image(self, i: int) -> np.ndarray:
        """Frame ``i`` as (H, W, 3) uint8 RGB."""
        import cv2
        bgr = cv2.imread(self.image_paths[i], cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f'cannot decode {self.image_paths[i]!r}; the PNG is corrupt')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_scan(self, i: int) -> np.ndarray:
        """Scan ``i`` as (N, 4) float32 (x, y, z in metres, Velodyne frame; intensity)."""
        return read_velodyne_bin(self.velo_paths[i])


__all__ = ['KittiDrive', 'parse_kitti_stamp_ns', 'read_timestamps_ns', 'read_velodyne_bin']
