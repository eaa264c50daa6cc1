"""LiDAR ground truth pieces: TF tree, message conversions, projection and the Tx rule."""
import numpy as np
import pytest

from urcdc_depth_ros.errors import DataError, InputError
from urcdc_depth_ros.evaluation import bag_io
from urcdc_depth_ros.kitti.raw import parse_kitti_stamp_ns
from urcdc_depth_ros.evaluation.lidar_gt import depth_image_intrinsics, lidar_depth

TS = bag_io.get_ros2_typestore()


def _rt(yaw, t):
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = t
    return T


def test_tf_tree_composes_a_chain_walked_against_and_along_the_edges():
    T_base_velo = _rt(0.3, [1.0, 0.0, 1.8])
    T_base_cam = _rt(-1.2, [1.5, 0.2, 1.4])
    T_cam_opt = _rt(0.7, [0.0, 0.05, 0.0])
    tree = bag_io.TransformTree()
    tree.add('base_link', 'velo', T_base_velo)
    tree.add('/base_link', 'cam', T_base_cam)   # a leading slash names the same frame
    tree.add('cam', 'cam_optical', T_cam_opt)
    expect = np.linalg.inv(T_base_cam @ T_cam_opt) @ T_base_velo
    np.testing.assert_allclose(tree.lookup('cam_optical', 'velo'), expect, atol=1e-12)
    np.testing.assert_allclose(tree.lookup('velo', 'cam_optical'), np.linalg.inv(expect),
                               atol=1e-12)


def test_tf_tree_without_a_path_names_both_frames():
    tree = bag_io.TransformTree()
    tree.add('a', 'b', np.eye(4))
    with pytest.raises(DataError, match="'lidar'.*'b'|'b'.*'lidar'"):
        tree.lookup('b', 'lidar')


def test_tf_message_round_trips_through_cdr():
    T = _rt(2.5, [0.1, -0.2, 0.3])
    T[:3, :3] = T[:3, :3] @ _rt(-0.4, [0, 0, 0])[:3, :3][[2, 0, 1]][:, [2, 0, 1]]
    msg = bag_io.tf_message(TS, [('velo', 'cam', T)], 123)
    back = TS.deserialize_cdr(TS.serialize_cdr(msg, bag_io.TF_TYPE), bag_io.TF_TYPE)
    tree = bag_io.TransformTree()
    tree.add_message(back)
    np.testing.assert_allclose(tree.lookup('velo', 'cam'), T, atol=1e-9)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'mono8', '32FC1'])
def test_image_message_round_trips_to_the_same_array(encoding):
    rng = np.random.default_rng(1)
    if encoding == '32FC1':
        arr = rng.uniform(1, 80, (5, 7)).astype(np.float32)
    else:
        arr = rng.integers(0, 255, (5, 7, 3) if encoding != 'mono8' else (5, 7), np.uint8)
    msg = bag_io.image_msg(TS, arr, 5, 'cam', encoding)
    out = bag_io.image_to_numpy(TS.deserialize_cdr(TS.serialize_cdr(msg, bag_io.IMAGE_TYPE),
                                                   bag_io.IMAGE_TYPE))
    expect = arr[..., ::-1] if encoding == 'bgr8' else arr  # bgr comes back as RGB
    np.testing.assert_array_equal(out, expect)


def test_16uc1_depth_is_millimetres_and_zero_is_missing():
    mm = np.array([[0, 1500], [80000 // 2, 1]], np.uint16)
    out = bag_io.image_to_numpy(bag_io.image_msg(TS, mm, 0, 'cam', '16UC1'))
    np.testing.assert_allclose(out, [[np.nan, 1.5], [40.0, 0.001]])


def test_truncated_image_message_is_an_input_error():
    msg = bag_io.image_msg(TS, np.zeros((4, 4, 3), np.uint8), 0, 'cam')
    msg.data = msg.data[:10]
    with pytest.raises(InputError, match='truncated'):
        bag_io.image_to_numpy(msg)


def test_bag_camera_info_follows_the_node_rule_for_K():
    K = np.array([[100.0, 0, 20], [0, 100.0, 10], [0, 0, 1]])
    P = np.hstack([K, [[-10.0], [0], [0]]])
    msg = bag_io.camera_info_msg(TS, np.zeros((3, 3)), 40, 20, 0, 'cam', P=P)
    np.testing.assert_array_equal(bag_io.camera_info_to_numpy(msg)[0], K)   # K unset: P's
    msg = bag_io.camera_info_msg(TS, np.diag([-100.0, 100.0, 1.0]), 40, 20, 0, 'cam', P=P)
    with pytest.raises(InputError, match='non-positive'):   # K set but broken: no fallback
        bag_io.camera_info_to_numpy(msg)


def test_pointcloud_round_trip_keeps_xyz_and_drops_nan():
    pts = np.array([[1, 2, 3, 0.5], [np.nan, 0, 0, 1], [-4, 5.5, 6, 0]], np.float32)
    msg = bag_io.pointcloud_msg(TS, pts, 0, 'velo')
    back = TS.deserialize_cdr(TS.serialize_cdr(msg, bag_io.POINTCLOUD_TYPE),
                              bag_io.POINTCLOUD_TYPE)
    np.testing.assert_array_equal(bag_io.pointcloud_to_xyz(back), pts[[0, 2], :3])


def test_projection_keeps_the_nearest_return_per_pixel():
    K = np.array([[100.0, 0, 20], [0, 100.0, 10], [0, 0, 1]])
    T = np.eye(4)
    pts = np.array([[0, 0, 10.0], [0, 0, 5.0], [0.1, 0, 2.0], [0, 0, -3.0]])
    d = lidar_depth(pts, T, K, 40, 20)
    assert d[10, 20] == 5.0 and d[10, 25] == 2.0
    assert np.count_nonzero(d) == 2


def test_tx_is_ignored_by_default_and_applied_once_on_request():
    K = np.array([[100.0, 0, 20], [0, 100.0, 10], [0, 0, 1]])
    P = np.hstack([K, [[-100.0 * 0.1], [0], [0]]])   # right camera, 0.1 m baseline
    pts = np.array([[0.0, 0.0, 10.0]])
    assert lidar_depth(pts, np.eye(4), K, 40, 20, P=P)[10, 20] == 10.0
    applied = lidar_depth(pts, np.eye(4), K, 40, 20, P=P, tx_mode='apply')
    assert applied[10, 19] == 10.0 and applied[10, 20] == 0.0


def test_depth_image_intrinsics_follow_the_image_size_with_pixel_centres():
    K = np.array([[100.0, 0, 49.5], [0, 80.0, 39.5], [0, 0, 1]])   # principal point centred
    np.testing.assert_array_equal(depth_image_intrinsics(K, (100, 80), (100, 80)), K)
    # halving keeps the principal point at the image centre: (50 - 1) / 2 px, not 49.5 / 2
    np.testing.assert_allclose(depth_image_intrinsics(K, (100, 80), (50, 40)),
                               [[50, 0, 24.5], [0, 40, 19.5], [0, 0, 1]])


def test_kitti_stamps_keep_nanoseconds_in_utc():
    assert parse_kitti_stamp_ns('2011-09-26 13:02:25.964389445') == 1317042145964389445
    with pytest.raises(DataError, match='YYYY-MM-DD'):
        parse_kitti_stamp_ns('yesterday')
