"""Post-processing: focal rescaling, validity range, placement back, uncertainty units."""
import numpy as np
import pytest

from urcdc_depth_ros.config import EstimatorConfig, ModelMeta
from urcdc_depth_ros.postprocessing import (convert_uncertainty, metres_from_confidence,
                                            postprocess, relative_error_from_confidence,
                                            to_input_resolution)
from urcdc_depth_ros.preprocessing import plan_geometry

META = ModelMeta(variant='nano07', input_height=64, input_width=192, focal_px=500.0,
                 max_depth=80.0)
K = np.array([[500.0, 0, 160.0], [0, 500.0, 60.0], [0, 0, 1]])


def test_relative_uncertainty_recovers_the_relative_error_the_head_was_trained_on():
    d = np.array([2.0, 10.0, 30.0, 50.0], np.float32)
    gt = np.array([2.5, 13.0, 20.0, 50.0], np.float32)  # farther, farther, nearer, exact
    u = np.exp(-5 * np.abs(gt - d) / (gt + d))  # the training target
    np.testing.assert_allclose(relative_error_from_confidence(u), np.abs(gt - d) / (gt + d),
                               atol=1e-6)


def test_uncalibrated_metres_is_the_mean_of_the_two_truths_the_head_allows():
    # d = 10 m with the head of a 0.2 relative error: the truth is 15 m (farther: |e| = 5 m) or
    # 20/3 m (nearer: (10 - g) / (10 + g) = 0.2, |e| = 10/3 m); both give the same head value
    d = np.array([10.0, 10.0], np.float32)
    gt = np.array([15.0, 20.0 / 3.0], np.float32)
    u = np.exp(-5 * np.abs(gt - d) / (gt + d))
    np.testing.assert_allclose(u[0], u[1], rtol=1e-6)
    e = metres_from_confidence(u, d)
    np.testing.assert_allclose(e, (5.0 + 10.0 / 3.0) / 2, rtol=1e-4)
    assert (e < 5.0).all() and (e > 10.0 / 3.0).all()  # between the two observed errors


def test_zero_confidence_gives_a_large_but_finite_error():
    e = metres_from_confidence(np.array([0.0]), np.array([10.0]))
    assert np.isfinite(e).all() and e[0] > 1000


def test_confidence_kind_passes_the_raw_head_through():
    u = np.array([0.2, 0.9], np.float32)
    np.testing.assert_array_equal(convert_uncertainty(u, u, 'confidence'), u)


def test_focal_rescaling_scales_depth_by_the_focal_ratio():
    geom = plan_geometry((120, 320), K * [[2], [2], [1]], (64, 192), 'kb_crop')
    depth = np.full((64, 192), 10.0, np.float32)
    u = np.full((64, 192), 0.9, np.float32)
    cfg = EstimatorConfig(output_resolution='model')
    d, *_ = postprocess(depth, u, geom, META, cfg)
    np.testing.assert_allclose(d, 20.0, rtol=1e-6)  # camera fx 1000 vs training 500
    d_off, *_ = postprocess(depth, u, geom, META, EstimatorConfig(
        output_resolution='model', rescale_focal=False))
    np.testing.assert_allclose(d_off, 10.0)


def test_depth_outside_the_valid_range_is_nan_with_nan_uncertainty():
    geom = plan_geometry((64, 192), K, (64, 192), 'kb_crop')
    depth = np.linspace(0.5, 79, 64 * 192, dtype=np.float32).reshape(64, 192)
    u = np.full_like(depth, 0.5)
    cfg = EstimatorConfig(min_depth=1.0, max_depth=50.0, rescale_focal=False)
    d, unc, conf, _ = postprocess(depth, u, geom, META, cfg)
    bad = (depth < 1.0) | (depth > 50.0)
    assert np.isnan(d[bad]).all() and np.isfinite(d[~bad]).all()
    assert np.isnan(unc[bad]).all() and np.isfinite(unc[~bad]).all()
    assert np.isfinite(conf).all()  # the raw head stays available where depth is invalid


def test_kb_crop_window_is_placed_back_with_nan_outside_the_view():
    geom = plan_geometry((120, 320), K, (64, 192), 'kb_crop')
    values = np.arange(64 * 192, dtype=np.float32).reshape(64, 192)
    full = to_input_resolution(values, geom)
    assert full.shape == (120, 320)
    np.testing.assert_array_equal(full[56:, 64:256], values)
    outside = np.ones((120, 320), bool)
    outside[56:, 64:256] = False
    assert np.isnan(full[outside]).all()


def test_resize_mode_returns_input_resolution_with_the_original_K():
    geom = plan_geometry((120, 320), K, (64, 192), 'resize')
    depth = np.full((64, 192), 7.0, np.float32)
    d, unc, conf, K_out = postprocess(depth, np.full_like(depth, 0.8), geom, META,
                                      EstimatorConfig(resize_mode='resize', rescale_focal=False))
    assert d.shape == (120, 320) and np.allclose(d, 7.0)
    np.testing.assert_array_equal(K_out, K)


@pytest.mark.parametrize('kind', ['metres', 'relative', 'confidence'])
def test_uncertainty_kinds_are_all_finite_inside_the_view(kind):
    geom = plan_geometry((64, 192), K, (64, 192), 'kb_crop')
    depth = np.full((64, 192), 10.0, np.float32)
    head = np.exp(-1.0)  # the head of a 0.2 relative error: truth 15 m or 20/3 m at d = 10 m
    _, unc, _, _ = postprocess(depth, np.full_like(depth, head), geom, META,
                               EstimatorConfig(uncertainty=kind, rescale_focal=False))
    expected = {'metres': (5.0 + 10.0 / 3.0) / 2, 'relative': 0.2, 'confidence': head}[kind]
    np.testing.assert_allclose(unc, expected, rtol=1e-5)


def test_auto_padding_is_dropped_when_placing_back_and_the_whole_image_is_covered():
    small = (50, 100)  # smaller than the 64 x 192 input at the training focal: padded
    geom = plan_geometry(small, K, (64, 192), 'auto', focal_px=500.0)
    assert geom.scaled_size == small and geom.crop_top < 0 and geom.crop_left < 0
    depth = np.full((64, 192), 30.0, np.float32)
    depth[-geom.crop_top:-geom.crop_top + 50, -geom.crop_left:-geom.crop_left + 100] = 10.0
    d, unc, _, K_out = postprocess(depth, np.full((64, 192), 0.9, np.float32), geom, META,
                                   EstimatorConfig(resize_mode='auto'))
    assert d.shape == small and np.isfinite(unc).all()
    np.testing.assert_allclose(d, 10.0)  # only the image's own pixels come back
    np.testing.assert_allclose(K_out, K)
