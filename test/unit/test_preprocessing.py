"""Pre-processing: the network window, normalisation, and K that stays exact through it."""
import cv2
import numpy as np
import pytest

from urcdc_depth_ros.config import ModelMeta
from urcdc_depth_ros.errors import InputError
from urcdc_depth_ros.preprocessing import (apply_geometry, normalise, plan_geometry, preprocess,
                                           view_fraction)

K_CAM = np.array([[500.0, 0.0, 300.3], [0.0, 480.0, 170.7], [0.0, 0.0, 1.0]])


def _blob_image(h, w, u, v, sigma=6.0):
    """(h, w) float32 Gaussian blob centred at continuous pixel (u, v) (pixel centres at i)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def _centroid(img):
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    wsum = img.sum()
    return float((xs * img).sum() / wsum), float((ys * img).sum() / wsum)


def _project(K_px, point):
    p = K_px @ point
    return p[0] / p[2], p[1] / p[2]


@pytest.mark.parametrize('image_hw,model_hw,mode', [
    ((400, 640), (256, 448), 'kb_crop'),    # plain crop
    ((200, 300), (256, 448), 'kb_crop'),    # upscaled to cover, then cropped
    ((250, 700), (256, 448), 'kb_crop'),    # too short only: upscale, crop width
    ((400, 640), (256, 448), 'resize'),     # downscale, aspect changes
    ((200, 300), (256, 448), 'resize'),     # upscale
    ((400, 640), (256, 448), 'auto'),       # focal 500 -> 350: shrink, crop rows, pad columns
    ((250, 700), (300, 448), 'auto'),       # shrink, pad rows, crop columns
])
def test_a_3d_point_lands_where_the_updated_K_projects_it(image_hw, model_hw, mode):
    point = np.array([0.3, 0.25, 5.0])  # metres, camera frame (x right, y down, z forward)
    K_img = K_CAM.copy()
    K_img[0, 2], K_img[1, 2] = image_hw[1] / 2 + 3.3, image_hw[0] / 2 - 1.7
    u, v = _project(K_img, point)
    image = _blob_image(*image_hw, u, v)
    geom = plan_geometry(image_hw, K_img, model_hw, mode, focal_px=350.0)
    window = apply_geometry(image[..., None].repeat(3, 2), geom)[..., 0]
    assert window.shape == model_hw
    u2, v2 = _project(geom.K_model, point)
    cu, cv = _centroid(window)
    assert abs(cu - u2) < 0.05 and abs(cv - v2) < 0.05, (cu, cv, u2, v2)


def test_kb_crop_takes_bottom_rows_horizontally_centred():
    geom = plan_geometry((375, 1242), K_CAM, (352, 1216), 'kb_crop')
    assert (geom.crop_top, geom.crop_left) == (23, 13)
    assert geom.scaled_size == (375, 1242)
    np.testing.assert_allclose(geom.K_model[:2, 2], K_CAM[:2, 2] - [13, 23])
    np.testing.assert_allclose(geom.K_model[0, 0], K_CAM[0, 0])


def test_kb_crop_upscales_small_images_to_cover_the_model_input():
    geom = plan_geometry((100, 200), K_CAM, (64, 192), 'kb_crop')
    assert geom.scaled_size == (100, 200)
    geom = plan_geometry((50, 100), K_CAM, (64, 192), 'kb_crop')
    assert geom.scaled_size[0] >= 64 and geom.scaled_size[1] >= 192
    assert geom.K_model[0, 0] == pytest.approx(K_CAM[0, 0] * geom.scaled_size[1] / 100)


def test_normalise_applies_mean_and_std_per_channel_in_nchw():
    rgb = np.full((2, 3, 3), 255, np.uint8)
    x = normalise(rgb, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 3.0, 0.5], rtol=1e-6)


def test_preprocess_returns_model_sized_input_and_matching_geometry():
    meta = ModelMeta(variant='nano07', input_height=64, input_width=192)
    image = cv2.resize(np.arange(256, dtype=np.uint8).reshape(16, 16),
                       (320, 120))[..., None].repeat(3, 2)
    x, geom = preprocess(image, K_CAM, meta, 'rgb8', 'kb_crop')
    assert x.shape == (1, 3, 64, 192)
    assert geom.crop_top == 120 - 64 and geom.crop_left == (320 - 192) // 2


# the demo's model: trained at half KITTI resolution (fx 360.77 px at its 176 x 608 input)
HALF_KITTI = ModelMeta(variant='nano07', input_height=176, input_width=608,
                       focal_px=721.5377 / 2)
K_KITTI = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])


def test_auto_matches_the_training_focal_and_sees_most_of_a_full_size_kitti_frame():
    size = (HALF_KITTI.input_height, HALF_KITTI.input_width)
    auto = plan_geometry((375, 1242), K_KITTI, size, 'auto', focal_px=HALF_KITTI.focal_px)
    kb = plan_geometry((375, 1242), K_KITTI, size, 'kb_crop')
    assert auto.scaled_size == (188, 621)
    assert abs(auto.K_model[0, 0] - HALF_KITTI.focal_px) < 0.01 * HALF_KITTI.focal_px
    assert view_fraction(kb) < 0.25  # the crop of the full-size image: 23 %
    assert view_fraction(auto) > 0.9
    assert (auto.crop_top, auto.crop_left) == (188 - 176, (621 - 608) // 2)


def test_auto_pads_a_small_image_with_the_mean_colour_and_keeps_all_of_it():
    image = np.full((100, 300, 3), 7, np.uint8)
    f = HALF_KITTI.focal_px
    K_small = np.array([[f, 0, 150.0], [0, f, 50.0], [0, 0, 1]])
    x, geom = preprocess(image, K_small, HALF_KITTI, 'rgb8', 'auto')
    assert geom.scaled_size == (100, 300) and view_fraction(geom) == 1.0
    top, left = -geom.crop_top, -geom.crop_left
    assert (top, left) == ((176 - 100) // 2, (608 - 300) // 2)
    inside = x[0, :, top:top + 100, left:left + 300]
    expected = (7 / 255 - np.array(HALF_KITTI.mean)) / np.array(HALF_KITTI.std)
    np.testing.assert_allclose(inside[:, 0, 0], expected, atol=1e-5)
    assert np.abs(x[0, :, 0, 0]).max() < 0.02  # padding normalises to ~0
    np.testing.assert_allclose(geom.K_model[:2, 2], K_small[:2, 2] + [left, top])


def test_auto_without_a_training_focal_is_refused():
    with pytest.raises(InputError, match='focal'):
        plan_geometry((100, 200), K_CAM, (64, 192), 'auto', focal_px=None)
