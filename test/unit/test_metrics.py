"""Depth and uncertainty metrics against worked examples."""
import math

import numpy as np
import pytest

from urcdc_depth_ros import metrics


def test_depth_metrics_of_a_worked_example():
    gt = np.array([10.0, 20.0])
    pred = np.array([11.0, 16.0])
    m = metrics.depth_metrics(pred, gt)
    assert m['abs_rel'] == pytest.approx((0.1 + 0.2) / 2)
    assert m['sq_rel'] == pytest.approx((1 / 10 + 16 / 20) / 2)
    assert m['rms'] == pytest.approx(math.sqrt((1 + 16) / 2))
    g = np.log([1.1, 0.8])
    assert m['log_rms'] == pytest.approx(math.sqrt(np.mean(g ** 2)))
    assert m['silog'] == pytest.approx(100 * math.sqrt(np.mean(g ** 2) - np.mean(g) ** 2))
    assert m['log10'] == pytest.approx(np.mean(np.abs(np.log10([1.1, 0.8]))))
    # ratios 1.1 and 1.25: 1.25 is not < 1.25
    assert (m['d1'], m['d2'], m['d3']) == (0.5, 1.0, 1.0)


def test_perfect_prediction_scores_zero_error_and_full_accuracy():
    gt = np.linspace(1, 80, 50)
    m = metrics.depth_metrics(gt.copy(), gt)
    assert m['abs_rel'] == 0 and m['rms'] == 0 and m['silog'] == pytest.approx(0, abs=1e-6)
    assert m['d1'] == 1.0


def test_evaluate_depth_clamps_crops_and_reports_coverage():
    gt = np.full((100, 200), 10.0)
    gt[:, :10] = 0.0                      # no ground truth there
    pred = np.full((100, 200), 200.0)     # clamped to max_depth 80
    pred[50, 100] = np.nan                # a missing prediction on a valid pixel
    m = metrics.evaluate_depth(pred, gt, max_depth=80.0, crop=None)
    assert m['abs_rel'] == pytest.approx(7.0)
    assert m['n'] == 100 * 190 - 1
    assert m['coverage'] == pytest.approx((100 * 190 - 1) / (100 * 190))
    garg = metrics.evaluate_depth(pred, gt, crop='garg')
    assert garg['n'] < m['n']


def test_unknown_crop_is_rejected_with_the_allowed_names():
    with pytest.raises(ValueError, match='garg'):
        metrics.valid_mask(np.ones((4, 4)), crop='nope')


def test_metrics_by_range_splits_on_ground_truth_bands():
    gt = np.array([5.0, 15.0, 30.0, 60.0, 70.0])
    rows = metrics.metrics_by_range(gt * 1.1, gt)
    assert [rows[k]['n'] for k in ('0-10', '10-20', '20-40', '40-80')] == [1, 1, 1, 2]
    assert rows['40-80']['abs_rel'] == pytest.approx(0.1)


def test_accumulator_averages_per_image_and_skips_empty_images():
    acc = metrics.MetricAccumulator()
    acc.add(metrics.depth_metrics(np.array([11.0]), np.array([10.0])))
    acc.add(metrics.depth_metrics(np.array([13.0]), np.array([10.0])))
    acc.add(metrics.depth_metrics(np.array([]), np.array([])))
    assert acc.count == 2
    assert acc.mean()['abs_rel'] == pytest.approx(0.2)


def test_sparsification_of_a_perfect_ranking_equals_the_oracle():
    rng = np.random.default_rng(0)
    err = rng.random(1000)
    frac, model, oracle = metrics.sparsification_curve(err, err * 3 + 1, steps=10)
    np.testing.assert_allclose(model, oracle)
    assert model[0] == pytest.approx(1.0) and np.all(np.diff(model) < 0)
    scores = metrics.ause_aurg(err, err)
    assert scores['ause'] == pytest.approx(0.0, abs=1e-12) and scores['aurg'] > 0.2


def test_random_uncertainty_has_positive_ause_and_near_zero_aurg():
    rng = np.random.default_rng(1)
    err = rng.random(20000)
    scores = metrics.ause_aurg(err, rng.random(20000))
    assert scores['ause'] > 0.2
    assert abs(scores['aurg']) < 0.02


def test_inverted_uncertainty_gives_negative_gain():
    err = np.linspace(0, 1, 500)
    assert metrics.ause_aurg(err, -err)['aurg'] < 0


def test_calibration_bins_are_equal_count_and_ordered_by_prediction():
    pred_err = np.arange(100.0)
    pred, obs, cnt = metrics.calibration_bins(pred_err * 2, pred_err, bins=4)
    assert list(cnt) == [25, 25, 25, 25]
    np.testing.assert_allclose(obs, pred * 2)


def test_nyu_crops_are_the_official_eval_crop_and_the_training_region():
    official = metrics.nyu_eval_mask()
    rows, cols = np.nonzero(official)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    train = metrics.valid_mask(np.full((480, 640), 5.0), crop='nyu_train')
    rows, cols = np.nonzero(train)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 43, 607)
    assert metrics.valid_mask(np.full((480, 640), 5.0), crop='nyu').sum() == official.sum()
