"""Uncertainty calibration: fit on data whose error distribution is known, transfer, storage."""
import json
from dataclasses import replace

import numpy as np
import pytest

from urcdc_depth_ros.calibration import (UncertaintyCalibration, fit_calibration, frame_key,
                                         isotonic_non_decreasing, overlapping_frames)
from urcdc_depth_ros.config import EstimatorConfig, ModelMeta
from urcdc_depth_ros.errors import ConfigError, DataError
from urcdc_depth_ros.metrics import calibration_error
from urcdc_depth_ros.postprocessing import postprocess
from urcdc_depth_ros.preprocessing import plan_geometry

META = ModelMeta(variant='nano07', max_depth=80.0, input_height=64, input_width=192,
                 focal_px=500.0)


def drive(seed: int, n: int = 200_000):
    """Pixels of a made-up drive whose expected |error| is known in closed form.

    The head sees a latent relative error q in [0.01, 0.3] through noise; the true |error| is
    depth * q * (0.5 + depth / 60) * X with X ~ Exponential(1) (mean 1), so
    E|error| = depth * q * (0.5 + depth / 60) and the 90 % bound is that times ln 10.
    """
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.uniform(np.log(2.0), np.log(70.0), n))
    q = rng.uniform(0.01, 0.3, n)
    head = np.clip(np.exp(-5 * q) * np.exp(rng.normal(0, 0.02, n)), 0, 1)
    expected = depth * q * (0.5 + depth / 60)
    err = expected * rng.exponential(1.0, n)
    return head, depth, err, expected


@pytest.fixture(scope='module')
def fitted():
    head, depth, err, _ = drive(seed=1)
    return fit_calibration(head, depth, err, 'nano07', 80.0,
                           frame_keys=[frame_key('cam', i) for i in range(24)], source='calib')


def test_fitted_calibration_transfers_to_another_drive_within_bin_error_0_05(fitted):
    head, depth, err, expected = drive(seed=2)  # held-out "test drive"
    predicted = fitted.expected_abs_error_m(head, depth)
    assert calibration_error(err, predicted) <= 0.05
    # against the known truth, not only against noisy observations
    assert np.mean(np.abs(predicted - expected)) / np.mean(expected) < 0.15
    assert abs(predicted.mean() / err.mean() - 1) < 0.05


def test_the_90_percent_bound_covers_about_90_percent_on_the_test_drive(fitted):
    head, depth, err, _ = drive(seed=3)
    coverage = np.mean(err <= fitted.bound_m(head, depth))
    assert 0.87 <= coverage <= 0.93


def test_calibration_ranks_better_than_depth_alone_when_the_head_is_informative(fitted):
    from urcdc_depth_ros.metrics import uncertainty_scores
    head, depth, err, _ = drive(seed=4, n=50_000)
    gt = depth + err  # truth farther by the error
    s = uncertainty_scores(depth, gt, fitted.expected_abs_error_m(head, depth))
    assert s['aurg_abs_m'] > s['depth_aurg_abs_m'] + 0.02


def test_a_less_confident_head_never_gets_a_smaller_expected_error(fitted):
    head = np.linspace(1.0, 0.2, 200)
    for d in (3.0, 15.0, 60.0):
        e = fitted.expected_abs_error_m(head, np.full(200, d))
        assert np.all(np.diff(e) >= -1e-6)


def test_pool_adjacent_violators_on_a_hand_worked_sequence():
    out = isotonic_non_decreasing(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4))
    np.testing.assert_allclose(out, [1.0, 2.5, 2.5, 4.0])
    out = isotonic_non_decreasing(np.array([5.0, 0.0, 1.0]), np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(out, [3.0, 3.0, 3.0])


def test_fitting_on_too_few_pixels_refuses_with_the_count():
    head, depth, err, _ = drive(seed=5, n=9_999)
    with pytest.raises(DataError, match='9999'):
        fit_calibration(head, depth, err, 'nano07', 80.0)


def test_the_table_round_trips_through_model_metadata(fitted):
    meta = replace(META, uncertainty_calibration=fitted.to_json())
    back = ModelMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert back.calibration() == fitted
    assert back.calibration().fitted_on['n_frames'] == 24


@pytest.mark.parametrize('change, message', [
    (dict(variant='tiny07'), 'variant'),
    (dict(max_depth=10.0), 'max_depth'),
])
def test_a_table_for_another_model_fails_naming_the_mismatch(fitted, change, message):
    table = fitted.to_json()
    with pytest.raises(ConfigError, match=message):
        ModelMeta.from_dict({**replace(META, **change).to_dict(),
                             'uncertainty_calibration': table})


@pytest.mark.parametrize('corrupt, message', [
    (lambda d: d.update(mean_ratio=d['mean_ratio'][:-1]), 'shape'),
    (lambda d: d.update(r_centres=d['r_centres'][::-1]), 'increasing'),
    (lambda d: d['mean_ratio'][0].__setitem__(0, 99.0), 'must not decrease'),
    (lambda d: d.pop('n_pixels'), 'corrupt'),
    (lambda d: d.update(format='other/1'), 'format'),
])
def test_a_corrupt_table_fails_naming_the_problem(fitted, corrupt, message):
    d = fitted.to_dict()
    corrupt(d)
    with pytest.raises(ConfigError, match=message):
        UncertaintyCalibration.from_dict(d)


def test_overlap_with_the_fitted_frames_is_counted(fitted):
    assert overlapping_frames(fitted, [frame_key('cam', i) for i in range(20, 30)]) == 4
    assert overlapping_frames(fitted, [frame_key('cam', i) for i in range(100, 110)]) == 0


def test_postprocess_publishes_the_calibrated_metres_and_the_bound(fitted):
    meta = replace(META, uncertainty_calibration=fitted.to_json())
    K = np.array([[500.0, 0, 96.0], [0, 500.0, 32.0], [0, 0, 1]])
    geom = plan_geometry((64, 192), K, (64, 192), 'kb_crop')
    depth = np.full((64, 192), 20.0, np.float32)
    head = np.full((64, 192), np.exp(-5 * 0.1), np.float32)
    cal_m = postprocess(depth, head, geom, meta, EstimatorConfig())[1]
    raw_m = postprocess(depth, head, geom, META, EstimatorConfig())[1]
    bound = postprocess(depth, head, geom, meta, EstimatorConfig(uncertainty='bound90'))[1]
    # the known truth at q = 0.1, depth 20 m: 20 * 0.1 * (0.5 + 20 / 60) = 1.667 m
    assert cal_m[0, 0] == pytest.approx(1.667, rel=0.1)
    assert not np.isclose(raw_m[0, 0], cal_m[0, 0], rtol=0.05)
    assert bound[0, 0] == pytest.approx(1.667 * np.log(10), rel=0.1)
    with pytest.raises(ConfigError, match='bound90'):
        postprocess(depth, head, geom, META, EstimatorConfig(uncertainty='bound90'))
