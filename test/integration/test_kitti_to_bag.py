"""urcdc-kitti2bag: a KITTI raw drive becomes a rosbag2 that rosbags reads back exactly."""
import os
from pathlib import Path

import numpy as np
import pytest
from fixtures.tiny_kitti import make_tiny_drive
from rosbags.highlevel import AnyReader

from urcdc_depth_ros.errors import DataError
from urcdc_depth_ros.evaluation import bag_io
from urcdc_depth_ros.kitti import to_bag
from urcdc_depth_ros.kitti.raw import KittiDrive


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp('kitti')
    drive_dir, calib, depths = make_tiny_drive(str(root), frames=5)
    return drive_dir, calib


def _read(bag):
    out = {}
    with AnyReader([Path(bag)], default_typestore=bag_io.get_ros2_typestore()) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, r.deserialize(raw, conn.msgtype)))
    return out


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_drive_becomes_a_bag_with_kitti_stamps_images_clouds_and_tf(drive, tmp_path, storage):
    drive_dir, calib = drive
    bag = str(tmp_path / 'bag')
    to_bag.convert_drive(drive_dir, bag, storage=storage, progress=False)
    msgs = _read(bag)
    kd = KittiDrive(drive_dir)
    assert sorted(msgs) == sorted([to_bag.IMAGE_TOPIC, to_bag.CAMERA_INFO_TOPIC,
                                   to_bag.LIDAR_TOPIC, '/tf_static'])
    imgs = msgs[to_bag.IMAGE_TOPIC]
    assert [bag_io.stamp_ns(m) for _, m in imgs] == kd.image_stamps_ns.tolist()
    assert [t for t, _ in imgs] == kd.image_stamps_ns.tolist()
    np.testing.assert_array_equal(bag_io.image_to_numpy(imgs[2][1]), kd.read_image(2))
    assert imgs[0][1].encoding == 'rgb8'
    assert imgs[0][1].header.frame_id == to_bag.CAMERA_FRAME
    clouds = msgs[to_bag.LIDAR_TOPIC]
    assert [bag_io.stamp_ns(m) for _, m in clouds] == kd.velo_stamps_ns.tolist()
    np.testing.assert_array_equal(bag_io.pointcloud_to_xyz(clouds[1][1]), kd.read_scan(1)[:, :3])
    K, P, w, h = bag_io.camera_info_to_numpy(msgs[to_bag.CAMERA_INFO_TOPIC][0][1])
    np.testing.assert_allclose(K, calib.K)
    assert P[0, 3] == 0.0 and (w, h) == (calib.width, calib.height)
    tree = bag_io.TransformTree()
    tree.add_message(msgs['/tf_static'][0][1])
    tf = msgs['/tf_static'][0][1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == (to_bag.LIDAR_FRAME,
                                                       to_bag.CAMERA_FRAME)
    np.testing.assert_allclose(tree.lookup(to_bag.CAMERA_FRAME, to_bag.LIDAR_FRAME),
                               calib.T_cam_velo, atol=2e-6)


def test_frame_range_and_cli(drive, tmp_path):
    drive_dir, _ = drive
    bag = str(tmp_path / 'part')
    rc = to_bag.main(['--drive', drive_dir, '--out', bag, '--start', '1', '--end', '3',
                      '--storage', 'sqlite3', '--no-progress'])
    assert rc == 0
    msgs = _read(bag)
    kd = KittiDrive(drive_dir)
    assert [t for t, _ in msgs[to_bag.IMAGE_TOPIC]] == kd.image_stamps_ns[1:3].tolist()
    assert os.path.isfile(os.path.join(bag, 'metadata.yaml'))
    assert to_bag.main(['--drive', drive_dir, '--out', bag]) == 2   # exists: refused


def test_missing_or_incomplete_drive_is_a_data_error(drive, tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        to_bag.convert_drive(str(tmp_path / 'nope'), str(tmp_path / 'b'), progress=False)
    drive_dir, _ = drive
    with pytest.raises(DataError, match='empty'):
        to_bag.convert_drive(drive_dir, str(tmp_path / 'b'), start=4, end=2, progress=False)
