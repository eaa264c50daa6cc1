"""OXTS poses: KITTI format round trip, the generator's oxts/, and kitti2bag's /tf + Odometry."""
import os
from pathlib import Path

import numpy as np
import pytest

from urcdc_depth_ros.evaluation.bag_topics import open_bag
from urcdc_depth_ros.evaluation.temporal import ego_motion, read_pose_track
from urcdc_depth_ros.kitti.oxts import oxts_to_poses, poses_to_oxts, read_oxts
from urcdc_depth_ros.kitti.raw import KittiDrive
from urcdc_depth_ros.kitti.to_bag import CAMERA_FRAME, ODOMETRY_TOPIC, TF_TOPIC, convert_drive

synthetic = pytest.importorskip('urcdc_training.synthetic')


def test_oxts_rows_and_poses_round_trip_below_a_micrometre():
    rng = np.random.default_rng(0)
    T = np.tile(np.eye(4), (6, 1, 1))
    for i in range(1, 6):
        a = rng.uniform(-0.3, 0.3, 3)
        cr, sr, cp, sp, cy, sy = np.cos(a[0]), np.sin(a[0]), np.cos(a[1]), np.sin(a[1]), \
            np.cos(a[2]), np.sin(a[2])
        T[i, :3, :3] = (np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
                        @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
                        @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]]))
        T[i, :3, 3] = rng.uniform(-200, 200, 3)
    T[0, :3, :3] = T[1, :3, :3]
    rows = poses_to_oxts(T, np.arange(6) * 100_000_000)
    assert rows.shape == (6, 30)
    np.testing.assert_allclose(oxts_to_poses(rows), T, atol=1e-6)


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp('oxts')
    info = synthetic.generate_dataset(str(root / 'data'), drives=1, frames=4, seed=1,
                                      width=160, height=48, test_drives=1)
    d = os.path.join(info.raw_path, info.date, info.drives[0])
    bag = convert_drive(d, str(root / 'bag'), progress=False, odometry=True)
    return d, bag


def test_synthetic_oxts_carries_the_cameras_straight_drive(drive):
    d, bag = drive
    kd = KittiDrive(d)
    stamps, T_world_imu = read_oxts(d)
    np.testing.assert_array_equal(stamps, kd.image_stamps_ns)
    assert {TF_TOPIC, ODOMETRY_TOPIC} <= set(bag['topics'])
    reader = open_bag([bag['path']])
    try:
        track, world = read_pose_track(reader, CAMERA_FRAME)
        odom = [reader.deserialize(raw, c.msgtype) for c, _, raw in
                reader.messages([c for c in reader.connections if c.topic == ODOMETRY_TOPIC])]
    finally:
        reader.close()
    assert world == 'world' and len(track) == len(stamps)
    for k in range(len(stamps) - 1):
        T_b_a = ego_motion(track, int(stamps[k]), int(stamps[k + 1]))
        # the synthetic camera only translates, forward along its optical z (6-12 m/s)
        np.testing.assert_allclose(T_b_a[:3, :3], np.eye(3), atol=1e-9)
        assert abs(T_b_a[1, 3]) < 1e-6 and -1.3 < T_b_a[2, 3] < -0.6
    p = odom[1].pose.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], T_world_imu[1, :3, 3], atol=1e-9)
    assert odom[1].twist.twist.linear.x > 5   # forward speed, m/s


def test_drive_without_oxts_has_no_tf_and_odometry_is_refused(tmp_path, drive):
    import shutil
    from urcdc_depth_ros.errors import DataError
    d, _ = drive
    date = Path(tmp_path) / Path(d).parent.name
    shutil.copytree(Path(d).parent, date)
    copy = date / Path(d).name
    shutil.rmtree(copy / 'oxts')
    bag = convert_drive(str(copy), str(tmp_path / 'bag'), progress=False)
    assert TF_TOPIC not in bag['topics']
    with pytest.raises(DataError, match='OXTS'):
        convert_drive(str(copy), str(tmp_path / 'bag2'), progress=False, odometry=True)
