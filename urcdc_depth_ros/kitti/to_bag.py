"""``urcdc-kitti2bag``: write a KITTI raw drive (real or synthetic) into a rosbag2.

Topics (stamps are KITTI's ``timestamps.txt`` read as UTC, in nanoseconds; every message is
logged at its own header stamp):

* ``/kitti/camera_color_left/image_raw``: ``sensor_msgs/Image`` rgb8, frame
  ``kitti_camera_color_left_optical`` (REP 103 optical: x right, y down, z forward).
* ``/kitti/camera_color_left/camera_info``: K = ``P_rect_02[:, :3]``, P = ``[K | 0]`` (zero Tx:
  the camera's offset from cam0 is folded into TF), D = 0, R = I, the image size.
* ``/kitti/velo/pointcloud``: ``sensor_msgs/PointCloud2`` x, y, z, intensity float32 in
  ``kitti_velo`` (x forward, y left, z up, metres).
* ``/tf_static``: one ``TransformStamped`` per camera with ``header.frame_id = kitti_velo``
  (parent) and ``child_frame_id = kitti_camera_color_left_optical`` (child); its transform is
  the camera's pose in the Velodyne frame, ``T_velo_cam = inv(KittiCalib.T_cam_velo)``, i.e. it
  maps points written in the camera optical frame into the Velodyne frame. Evaluators look up
  the inverse (``T_cam_velo``) to bring LiDAR points into the camera. It is latched (transient
  local QoS) and written once at the first stamp. With OXTS data it also holds ``kitti_imu``
  (the vehicle frame: x forward, y left, z up) -> ``kitti_velo``, from
  ``calib_imu_to_velo.txt``.
* ``/tf`` (when the drive has ``oxts/``): ``world`` -> ``kitti_imu`` at every OXTS stamp, the
  vehicle pose of the KITTI devkit (:mod:`.oxts`; world origin at the first pose, x east,
  y north, z up), so consumers get the ego-motion between any two frames.
* ``/kitti/oxts/odometry`` (``--odometry``): the same pose as ``nav_msgs/Odometry``
  (``frame_id`` world, ``child_frame_id`` kitti_imu; twist from the OXTS velocities).

With ``--cameras 02,03`` the right colour camera (``image_03``, ``P_rect_03``) is written the
same way on ``/kitti/camera_color_right/{image_raw,camera_info}`` in frame
``kitti_camera_color_right_optical``: K = ``P_rect_03[:, :3]``, zero Tx, and its ~0.53 m
baseline in its own /tf_static transform.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

import numpy as np

from ..errors import DataError, UrcdcDepthError
from ..evaluation import bag_io
from .oxts import read_oxts, read_T_velo_imu
from .raw import KittiDrive

logger = logging.getLogger(__name__)

IMAGE_TOPIC = '/kitti/camera_color_left/image_raw'
CAMERA_INFO_TOPIC = '/kitti/camera_color_left/camera_info'
LIDAR_TOPIC = '/kitti/velo/pointcloud'
TF_STATIC_TOPIC = '/tf_static'
TF_TOPIC = '/tf'
ODOMETRY_TOPIC = '/kitti/oxts/odometry'
ODOMETRY_TYPE = 'nav_msgs/msg/Odometry'
CAMERA_FRAME = 'kitti_camera_color_left_optical'
LIDAR_FRAME = 'kitti_velo'
VEHICLE_FRAME = 'kitti_imu'
WORLD_FRAME = 'world'
#: KITTI colour camera -> (topic prefix, optical frame)
CAMERAS = {
    '02': ('/kitti/camera_color_left', CAMERA_FRAME),
    '03': ('/kitti/camera_color_right', 'kitti_camera_color_right_optical'),
}
STORAGES = ('mcap', 'sqlite3')


def _tf_static_qos_profiles() -> tuple:
    """Reliable, transient-local, depth-1 QoS so ``ros2 bag play`` latches /tf_static."""
    try:
        from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                        QosReliability, QosTime)
    except ImportError:  # reason: older rosbags has no typed QoS; default profile then
        return ()
    zero = QosTime(sec=0, nsec=0)
    return (Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
                durability=QosDurability.TRANSIENT_LOCAL, deadline=zero, lifespan=zero,
                liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=zero,
                avoid_ros_namespace_conventions=False),)


def parse_cameras(text: str) -> tuple[str, ...]:
    """``'02,03'`` -> ``('02', '03')``; DataError naming an unknown or repeated camera."""
    names = tuple(c.strip() for c in str(text).split(',') if c.strip())
    bad = [c for c in names if c not in CAMERAS]
    if not names or bad or len(set(names)) != len(names):
        raise DataError(f'--cameras {text!r}: give KITTI colour cameras from {list(CAMERAS)}, '
                        'each once, comma-separated (e.g. 02,03)')
    return names


def convert_drive(drive_dir: str, out_bag: str, storage: str = 'mcap', start: int = 0,
                  end: int | None = None, overwrite: bool = False,
                  progress: bool = True, odometry: bool = False,
                  cameras: tuple[str, ...] = ('02',)) -> dict:
    """Write frames ``[start, end)`` of a KITTI raw drive into the rosbag2 ``out_bag``.

    Args:
        drive_dir: ``RAW/DATE/DATE_drive_XXXX_sync``.
        out_bag: bag folder to create (must not exist unless ``overwrite``).
        storage: ``'mcap'`` or ``'sqlite3'``.
        start, end: frame range (indices into the sorted frame list; ``end`` exclusive).
        odometry: also write the OXTS poses as ``nav_msgs/Odometry`` (needs ``oxts/``).
        cameras: KITTI colour cameras to write (keys of :data:`CAMERAS`).
    Returns:
        summary dict: frames, scans, topics, storage, path, first/last stamp (ns).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    if storage not in STORAGES:
        raise DataError(f'storage={storage!r} is not one of {list(STORAGES)}')
    cameras = parse_cameras(','.join(cameras))
    views = [(cam, KittiDrive(drive_dir, camera=int(cam))) for cam in cameras]
    drive = views[0][1]
    n = min(len(d) for _, d in views)
    end = n if end is None else min(int(end), n)
    if not (0 <= start < end):
        raise DataError(f'frame range [{start}, {end}) is empty; the drive has {n} frames')
    if os.path.exists(out_bag):
        if not overwrite:
            raise DataError(f'{out_bag!r} exists; remove it or pass --overwrite')
        shutil.rmtree(out_bag)
    ts = bag_io.get_ros2_typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    n_scans = 0
    oxts = read_oxts(drive.drive_dir)
    if odometry and oxts is None:
        raise DataError(f'--odometry needs OXTS poses, but {drive.drive_dir!r} has no '
                        'oxts/data/*.txt')
    topics = []
    with Writer(out_bag, version=8, storage_plugin=plugin) as writer:
        conns = []
        for cam, view in views:
            prefix, frame = CAMERAS[cam]
            conns.append((view, frame,
                          writer.add_connection(f'{prefix}/image_raw', bag_io.IMAGE_TYPE,
                                                typestore=ts),
                          writer.add_connection(f'{prefix}/camera_info',
                                                bag_io.CAMERA_INFO_TYPE, typestore=ts)))
            topics += [f'{prefix}/image_raw', f'{prefix}/camera_info']
        c_velo = writer.add_connection(LIDAR_TOPIC, bag_io.POINTCLOUD_TYPE, typestore=ts)
        c_tf = writer.add_connection(TF_STATIC_TOPIC, bag_io.TF_TYPE, typestore=ts,
                                     offered_qos_profiles=_tf_static_qos_profiles())
        first_ns = int(drive.image_stamps_ns[start])
        static = [(LIDAR_FRAME, frame, np.linalg.inv(view.calib.T_cam_velo))
                  for view, frame, _, _ in conns]
        if oxts is not None:
            static.append((VEHICLE_FRAME, LIDAR_FRAME,
                           np.linalg.inv(read_T_velo_imu(drive.date_dir))))
            topics.append(TF_TOPIC)
            _write_poses(writer, ts, oxts, drive.image_stamps_ns[start:end], odometry)
            if odometry:
                topics.append(ODOMETRY_TOPIC)
        tf = bag_io.tf_message(ts, static, first_ns)
        writer.write(c_tf, first_ns, ts.serialize_cdr(tf, bag_io.TF_TYPE))
        frames = range(start, end)
        if progress:
            from ..progress import progress_bar
            frames = progress_bar(frames, desc=f'kitti2bag {drive.name}', unit='frame')
        for i in frames:
            for view, frame, c_img, c_info in conns:
                _write_camera_frame(ts, writer, view, i, frame, c_img, c_info)
            if i < len(drive.velo_paths):
                t_velo = int(drive.velo_stamps_ns[i])
                cloud = bag_io.pointcloud_msg(ts, drive.read_scan(i), t_velo, LIDAR_FRAME)
                writer.write(c_velo, t_velo, ts.serialize_cdr(cloud, bag_io.POINTCLOUD_TYPE))
                n_scans += 1
    summary = {'path': os.path.abspath(out_bag), 'storage': storage, 'drive': drive.name,
               'frames': end - start, 'scans': n_scans, 'first_stamp_ns': first_ns,
               'last_stamp_ns': int(drive.image_stamps_ns[end - 1]), 'cameras': list(cameras),
               'topics': topics + [LIDAR_TOPIC, TF_STATIC_TOPIC]}
    logger.info('wrote %d frames of %s and %d scans of %s to %s (%s)', summary['frames'],
                '+'.join(cameras), n_scans, drive.name, out_bag, storage)
    return summary


def _write_poses(writer, ts, oxts, image_stamps_ns, odometry: bool) -> None:
    """``/tf`` world -> vehicle (and Odometry) for the OXTS stamps within the frame range."""
    stamps, T_world_imu = oxts
    lo, hi = int(image_stamps_ns[0]), int(image_stamps_ns[-1])
    # one pose before and after the range, so every camera stamp can be interpolated
    keep = np.nonzero((stamps >= lo) & (stamps <= hi))[0]
    if keep.size == 0:
        logger.warning('no OXTS stamp falls inside the frames written; /tf is left out')
        return
    keep = np.arange(max(keep[0] - 1, 0), min(keep[-1] + 2, len(stamps)))
    c_tf = writer.add_connection(TF_TOPIC, bag_io.TF_TYPE, typestore=ts)
    c_odom = (writer.add_connection(ODOMETRY_TOPIC, ODOMETRY_TYPE, typestore=ts)
              if odometry else None)
    t_s = stamps / 1e9
    v_world = (np.gradient(T_world_imu[:, :3, 3], t_s, axis=0) if len(stamps) > 1
               else np.zeros((1, 3)))
    for i in keep:
        st = int(stamps[i])
        tf = bag_io.tf_message(ts, [(WORLD_FRAME, VEHICLE_FRAME, T_world_imu[i])], st)
        writer.write(c_tf, st, ts.serialize_cdr(tf, bag_io.TF_TYPE))
        if c_odom is not None:
            v_body = T_world_imu[i, :3, :3].T @ v_world[i]
            writer.write(c_odom, st, ts.serialize_cdr(
                _odometry_msg(ts, T_world_imu[i], v_body, st), ODOMETRY_TYPE))


def _odometry_msg(ts, T_world_imu: np.ndarray, v_body_mps: np.ndarray, stamp_ns: int):
    t = ts.types
    q = bag_io.matrix_to_quaternion(T_world_imu[:3, :3])
    pose = t['geometry_msgs/msg/Pose'](
        position=t['geometry_msgs/msg/Point'](x=float(T_world_imu[0, 3]),
                                              y=float(T_world_imu[1, 3]),
                                              z=float(T_world_imu[2, 3])),
        orientation=t['geometry_msgs/msg/Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3]))
    vec = t['geometry_msgs/msg/Vector3']
    twist = t['geometry_msgs/msg/Twist'](linear=vec(x=float(v_body_mps[0]),
                                                    y=float(v_body_mps[1]),
                                                    z=float(v_body_mps[2])),
                                         angular=vec(x=0.0, y=0.0, z=0.0))
    cov = np.zeros(36)
    return t[ODOMETRY_TYPE](
        header=bag_io._header(ts, stamp_ns, WORLD_FRAME),
        child_frame_id=VEHICLE_FRAME,
        pose=t['geometry_msgs/msg/PoseWithCovariance'](pose=pose, covariance=cov),
        twist=t['geometry_msgs/msg/TwistWithCovariance'](twist=twist, covariance=cov))


def _write_camera_frame(ts, writer, view: KittiDrive, i: int, frame: str, c_img,
                        c_info) -> None:
    """Image ``i`` of one camera and its camera_info (K of its calibration, zero Tx)."""
    calib = view.calib
    t_img = int(view.image_stamps_ns[i])
    rgb = view.read_image(i)
    h, w = rgb.shape[:2]
    if (w, h) != (calib.width, calib.height):
        raise DataError(f'{view.image_paths[i]!r} is {w}x{h} but the calibration says '
                        f'{calib.width}x{calib.height}; the calib files do not match')
    writer.write(c_img, t_img, ts.serialize_cdr(
        bag_io.image_msg(ts, rgb, t_img, frame), bag_io.IMAGE_TYPE))
    writer.write(c_info, t_img, ts.serialize_cdr(
        bag_io.camera_info_msg(ts, calib.K, w, h, t_img, frame), bag_io.CAMERA_INFO_TYPE))


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``urcdc-kitti2bag``."""
    p = argparse.ArgumentParser(prog='urcdc-kitti2bag', description=__doc__.split('\n')[0])
    p.add_argument('--drive', required=True, help='RAW/DATE/DATE_drive_XXXX_sync folder')
    p.add_argument('--out', required=True, help='bag folder to create')
    p.add_argument('--storage', choices=STORAGES, default='mcap', help='rosbag2 storage plugin')
    p.add_argument('--start', type=int, default=0, help='first frame index (inclusive)')
    p.add_argument('--end', type=int, default=None, help='last frame index (exclusive)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    p.add_argument('--no-progress', action='store_true', help='no tqdm progress bar')
    p.add_argument('--odometry', action='store_true',
                   help=f'also write the OXTS poses as nav_msgs/Odometry on {ODOMETRY_TOPIC}')
    p.add_argument('--cameras', default='02',
                   help='KITTI colour cameras, comma-separated: 02 (left, default) and/or 03 '
                        '(right, /kitti/camera_color_right/...)')
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success, 2 on a data error (message on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        s = convert_drive(args.drive, args.out, args.storage, args.start, args.end,
                          overwrite=args.overwrite, progress=not args.no_progress,
                          odometry=args.odometry, cameras=parse_cameras(args.cameras))
    except UrcdcDepthError as exc:
        logger.error('%s', exc)
        return 2
    logger.info('%s: %d frames, %d scans, topics %s', s['path'], s['frames'], s['scans'],
                ', '.join(s['topics']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
