"""Intrinsics under one pixel-centre convention, the CameraInfo rule, and LiDAR projection."""
import cv2
import numpy as np
import pytest

from urcdc_depth_ros.config import EstimatorConfig, ModelMeta
from urcdc_depth_ros.errors import InputError
from urcdc_depth_ros.estimator import DepthEstimator
from urcdc_depth_ros.evaluation.lidar_gt import depth_image_intrinsics
from urcdc_depth_ros.geometry import (camera_info_intrinsics, crop_intrinsics,
                                      project_to_depth, resize_intrinsics, validate_intrinsics)

K_CAM = np.array([[500.0, 0.0, 310.3], [0.0, 480.0, 118.7], [0.0, 0.0, 1.0]])


def _dot_centroid(image_hw, u, v, dst_hw):
    """Where ``cv2.resize`` puts a small blob drawn at continuous pixel (u, v): (u', v')."""
    ys, xs = np.mgrid[0:image_hw[0], 0:image_hw[1]].astype(np.float64)
    blob = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * 8.0 ** 2)).astype(np.float32)
    out = cv2.resize(blob, (dst_hw[1], dst_hw[0]), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:dst_hw[0], 0:dst_hw[1]]
    return float((xs * out).sum() / out.sum()), float((ys * out).sum() / out.sum())


@pytest.mark.parametrize('dst_hw', [(120, 320), (480, 1280), (96, 200)])
def test_resized_K_projects_a_point_where_cv2_resize_moves_its_pixel(dst_hw):
    point = np.array([0.2, -0.05, 4.0])  # metres, optical frame
    u, v = (K_CAM @ point)[:2] / point[2]
    cu, cv = _dot_centroid((240, 640), u, v, dst_hw)
    K2 = resize_intrinsics(K_CAM, (240, 640), dst_hw)
    u2, v2 = (K2 @ point)[:2] / point[2]
    assert abs(u2 - cu) < 0.05 and abs(v2 - cv) < 0.05, (u2, cu, v2, cv)
    # the sceptic's baseline: the plain diagonal scale misses by 0.5 * (s - 1) px
    s = dst_hw[1] / 640
    u_diag = (np.diag([s, dst_hw[0] / 240, 1.0]) @ K_CAM @ point)[0] / point[2]
    assert abs(u_diag - cu) == pytest.approx(abs(0.5 * (s - 1)), abs=0.05)


def test_crop_moves_the_principal_point_by_the_window_offset():
    point = np.array([0.3, 0.1, 5.0])
    u, v = (K_CAM @ point)[:2] / point[2]
    u2, v2 = (crop_intrinsics(K_CAM, 20, 45) @ point)[:2] / point[2]
    assert (u - u2, v - v2) == pytest.approx((45.0, 20.0))


@pytest.mark.parametrize('K,fragment', [
    (np.eye(4), 'shape'),
    (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), 'non-finite'),
    (np.zeros((3, 3)), 'singular'),
    (np.diag([0.0, 1.0, 1.0]), 'non-positive'),
    ('abc', 'numeric'),
])
def test_malformed_intrinsics_raise_input_error(K, fragment):
    with pytest.raises(InputError, match=fragment):
        validate_intrinsics(K)


def test_camera_info_uses_K_when_it_is_valid():
    P = np.hstack([2 * K_CAM, np.ones((3, 1))])   # a different P must not win over a valid K
    np.testing.assert_array_equal(camera_info_intrinsics(K_CAM.ravel(), P.ravel()), K_CAM)


def test_camera_info_with_an_all_zero_K_falls_back_to_the_left_block_of_P():
    P = np.hstack([K_CAM, [[-40.0], [0.0], [0.0]]])
    np.testing.assert_array_equal(camera_info_intrinsics(np.zeros(9), P.ravel()), K_CAM)


@pytest.mark.parametrize('k,p,fragment', [
    (np.zeros(9), np.zeros(12), 'not calibrated'),
    # a K that is set but broken is an error even with a good P: a bad calibration shows
    (np.diag([-500.0, 480.0, 1.0]).ravel(), np.hstack([K_CAM, np.zeros((3, 1))]).ravel(),
     'non-positive'),
    (np.full(9, np.nan), np.hstack([K_CAM, np.zeros((3, 1))]).ravel(), 'non-finite'),
])
def test_camera_info_without_usable_intrinsics_raises_input_error(k, p, fragment):
    with pytest.raises(InputError, match=fragment):
        camera_info_intrinsics(k, p)


def test_z_buffer_keeps_the_nearest_return_per_pixel():
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    pts = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 5.0], [0.0, 0.0, -3.0], [1e3, 0, 1.0]])
    depth = project_to_depth(pts, K, 100, 100)
    assert depth[50, 50] == 5.0
    assert np.count_nonzero(depth) == 1


class _FlatBackend:
    """A backend answering 10 m everywhere: the K path does not depend on the network."""

    name = 'flat'

    def __init__(self, meta):
        self.meta = meta
        self.input_shape = (1, 3, meta.input_height, meta.input_width)

    def infer(self, x):
        shape = (1, 1) + x.shape[2:]
        return {'depth': np.full(shape, 10.0, np.float32),
                'uncertainty': np.full(shape, 0.9, np.float32)}

    def close(self):
        pass


@pytest.mark.parametrize('image_hw,model_hw', [((240, 640), (64, 192)), ((96, 160), (128, 320))])
def test_the_node_and_the_bag_evaluator_agree_on_K_for_the_same_resize(image_hw, model_hw):
    # the node publishes DepthEstimator's K with its depth (output_resolution 'model');
    # the evaluator rebuilds K for a depth image of that size from the camera's camera_info
    meta = ModelMeta(variant='nano07', input_height=model_hw[0], input_width=model_hw[1])
    est = DepthEstimator(_FlatBackend(meta), EstimatorConfig(
        resize_mode='resize', output_resolution='model', rescale_focal=False))
    res = est.estimate(np.zeros(image_hw + (3,), np.uint8), K_CAM)
    h, w = res.depth_m.shape
    assert (h, w) == model_hw
    K_eval = depth_image_intrinsics(K_CAM, (image_hw[1], image_hw[0]), (w, h))
    np.testing.assert_array_equal(res.K, K_eval)
    assert not np.allclose(K_eval[:2, 2], (np.diag([w / image_hw[1], h / image_hw[0]])
                                           @ K_CAM[:2, 2]), atol=0.1)  # not the diagonal scale
