"""KITTI calibration files and Velodyne projection."""
import numpy as np
import pytest

from urcdc_depth_ros.errors import DataError
from urcdc_depth_ros.geometry import transform_points
from urcdc_depth_ros.kitti.calib import KittiCalib, read_calib_file, velodyne_to_depth


def test_calibration_round_trips_through_kitti_text_files(tmp_path):
    calib = KittiCalib.default().scaled(621, 188)
    calib.write(str(tmp_path))
    back = KittiCalib.load(str(tmp_path))
    np.testing.assert_allclose(back.P_rect, calib.P_rect, rtol=1e-6)
    np.testing.assert_allclose(back.T_cam_velo, calib.T_cam_velo, rtol=1e-5, atol=1e-7)
    assert (back.width, back.height) == (621, 188)
    assert 'R' in read_calib_file(str(tmp_path / 'calib_imu_to_velo.txt'))


def test_missing_calibration_names_the_file_and_what_belongs_there(tmp_path):
    with pytest.raises(DataError, match='calib_cam_to_cam.txt'):
        KittiCalib.load(str(tmp_path))


def test_a_point_ahead_of_the_velodyne_lands_near_the_principal_point():
    calib = KittiCalib.default()
    depth = velodyne_to_depth(np.array([[20.0, 0.0, -0.08, 0.5]]), calib)
    v, u = np.argwhere(depth > 0)[0]
    assert abs(u - calib.K[0, 2]) < 15 and abs(v - calib.K[1, 2]) < 15
    assert depth[v, u] == pytest.approx(20.0 - 0.27, abs=0.05)


def test_camera_frame_includes_the_camera_2_offset():
    calib = KittiCalib.default()
    origin_cam0 = calib.T_cam0_velo[:3, 3]
    origin_cam2 = transform_points(calib.T_cam_velo, np.zeros((1, 3)))[0]
    # camera 2 sits ~6 cm left of camera 0, so the same point is ~6 cm further right
    assert origin_cam2[0] - origin_cam0[0] == pytest.approx(0.06, abs=0.01)
