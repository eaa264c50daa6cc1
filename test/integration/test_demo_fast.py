"""`make demo`'s pipeline at tiny sizes (profile ``fast``): every step runs, every output lands.

The real chain end to end: synthetic drives -> urcdc-train (both branches) -> urcdc-eval ->
ONNX export -> kitti2bag -> urcdc-calibrate on the calibration drive -> bag evaluation of the
baselines (and, with ``--compare``, FP16 and INT8 QDQ copies of the model) -> replay through
the real depth_node over rclpy with the calibrated model -> report with the baselines beside.
A rerun reuses everything it can.
"""
from __future__ import annotations

import json
import math
import os

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    from urcdc_training.demo import run_demo
    out = tmp_path_factory.mktemp('demo')
    return out, run_demo(str(out), profile='fast', compare=True)


def test_fast_demo_writes_every_artefact_and_a_report_with_the_baseline(demo):
    out, s = demo
    for key in ('report', 'checkpoint', 'onnx', 'overview'):
        assert os.path.isfile(s[key]) and os.path.getsize(s[key]) > 0, key
    assert os.path.isfile(os.path.join(s['bag'], 'metadata.yaml'))
    assert s['replay']['sent'] == s['frames'] == 3 and s['replay']['dropped'] == 0
    for key in ('abs_rel', 'rms', 'ause', 'untrained_abs_rel'):
        assert math.isfinite(s[key]) and s[key] > 0, key
    # even 4 steps move the random network towards the scene's depth
    assert s['abs_rel'] < s['untrained_abs_rel']
    assert os.path.isfile(s['onnx_calibrated'])
    calibrated = s['uncertainty']['calibrated (node)']
    assert math.isfinite(calibrated['calibration_error'])
    assert math.isfinite(calibrated['depth_aurg_abs_m'])
    assert set(s['goals']) == {'aurg_margin_abs_m', 'calibration_error', 'mean_ratio_off'}
    html = open(s['report'], encoding='utf-8').read()
    assert 'Compared with' in html and 'untrained' in html
    metrics = json.loads((out / 'report' / 'metrics.json').read_text())
    assert metrics['baselines']['untrained']['abs_rel'] == pytest.approx(s['untrained_abs_rel'])
    # urcdc-eval scores both held-out drives (calibration + test), 3 frames each
    assert json.loads((out / 'eval' / 'metrics.json').read_text())['n_images'] == 6
    assert json.loads((out / 'summary.json').read_text())['onnx'] == s['onnx']


def test_rerun_reuses_data_checkpoint_export_and_bag(demo):
    from urcdc_training.demo import run_demo
    out, first = demo
    kept = {p: os.path.getmtime(p) for p in (
        first['checkpoint'], first['onnx'], os.path.join(first['bag'], 'metadata.yaml'),
        str(out / 'data' / 'synthetic_info.json'))}
    again = run_demo(str(out), profile='fast', compare=True)  # the same command as the fixture
    assert {p: os.path.getmtime(p) for p in kept} == kept
    assert again['abs_rel'] == pytest.approx(first['abs_rel'], rel=1e-5)


def test_compare_scores_fp16_and_int8_copies_beside_fp32(demo):
    from urcdc_depth_ros.evaluation.calibrate import read_model_meta
    out, s = demo
    prec = s['precision']
    assert set(prec) == {'fp32', 'fp16', 'int8'}
    metrics = json.loads((out / 'report' / 'metrics.json').read_text())
    for key, label in (('fp16', 'FP16 graph'), ('int8', 'INT8 QDQ')):
        path = os.path.splitext(s['onnx_calibrated'])[0] + f'_{key}.onnx'
        assert read_model_meta(path).precision == key
        assert math.isfinite(prec[key]['abs_rel']) and prec[key]['abs_rel'] > 0
        assert metrics['baselines'][label]['abs_rel'] == pytest.approx(prec[key]['abs_rel'])
    # the FP32 reference is the in-process run of the same bag (the uncalibrated report)
    fp32 = json.loads((out / 'uncalibrated_report' / 'metrics.json').read_text())
    assert prec['fp32']['abs_rel'] == pytest.approx(fp32['metrics']['abs_rel'])
    # FP16 weights and activations barely move a depth map; a broken conversion would
    assert prec['fp16']['change'] < 0.05
