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
from urcdc_depth_ros.stamps import stamp_to_ns


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
    assert [stamp_to_ns(m.header.stamp) for _, m in imgs] == kd.image_stamps_ns.tolist()
    assert [t for t, _ in imgs] == kd.image_stamps_ns.tolist()
    np.testing.assert_array_equal(bag_io.image_to_numpy(imgs[2][1]), kd.read_image(2))
    assert imgs[0][1].encoding == 'rgb8'
    assert imgs[0][1].header.frame_id == to_bag.CAMERA_FRAME
    clouds = msgs[to_bag.LIDAR_TOPIC]
    assert [stamp_to_ns(m.header.stamp) for _, m in clouds] == kd.velo_stamps_ns.tolist()
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


def test_two_cameras_of_a_synthetic_drive_become_one_bag_with_their_own_info_and_tf(tmp_path):
    from urcdc_training.synthetic import generate_dataset
    info = generate_dataset(str(tmp_path / 'synth'), drives=1, frames=2, width=310, height=94,
                            test_drives=0)
    drive_dir = os.path.join(info.raw_path, info.date, info.drives[0])
    calib = KittiDrive(drive_dir).calib
    bag = str(tmp_path / 'stereo')
    assert to_bag.main(['--drive', drive_dir, '--out', bag, '--cameras', '02,03',
                        '--no-progress']) == 0
    msgs = _read(bag)
    left, right = to_bag.CAMERAS['02'], to_bag.CAMERAS['03']
    for prefix, frame in (left, right):
        imgs = msgs[f'{prefix}/image_raw']
        infos = msgs[f'{prefix}/camera_info']
        assert len(imgs) == len(infos) == 2
        assert {m.header.frame_id for _, m in imgs + infos} == {frame}
        np.testing.assert_allclose(np.reshape(infos[0][1].k, (3, 3)), calib.K)
        np.testing.assert_allclose(np.reshape(infos[0][1].p, (3, 4))[:, 3], 0.0)  # Tx in TF
    assert [t for t, _ in msgs[f'{left[0]}/image_raw']] == \
        [t for t, _ in msgs[f'{right[0]}/image_raw']]  # triggered together
    (_, tf), = msgs['/tf_static']
    poses = {}
    for tr in tf.transforms:
        if tr.child_frame_id == to_bag.LIDAR_FRAME:  # kitti_imu -> kitti_velo (OXTS drives)
            assert tr.header.frame_id == to_bag.VEHICLE_FRAME
            continue
        assert tr.header.frame_id == to_bag.LIDAR_FRAME
        poses[tr.child_frame_id] = np.array([tr.transform.translation.x,
                                             tr.transform.translation.y,
                                             tr.transform.translation.z])
    assert set(poses) == {left[1], right[1]}
    # KITTI's colour cameras are 0.53 m apart, the right one along the Velodyne's -y (right)
    baseline = poses[right[1]] - poses[left[1]]
    assert abs(np.linalg.norm(baseline) - 0.532) < 0.005 and baseline[1] < -0.5
    l_img = bag_io.image_to_numpy(msgs[f'{left[0]}/image_raw'][0][1])
    r_img = bag_io.image_to_numpy(msgs[f'{right[0]}/image_raw'][0][1])
    assert l_img.shape == r_img.shape and np.abs(l_img.astype(int) - r_img).mean() > 1.0


def test_unknown_cameras_exit_2(drive, tmp_path):
    drive_dir, _ = drive
    assert to_bag.main(['--drive', drive_dir, '--out', str(tmp_path / 'b'),
                        '--cameras', '02,04', '--no-progress']) == 2
