"""urcdc-calibrate: the table travels in the ONNX file and the checkpoint; bad input exits 2."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fixtures.models import make_onnx_model

from urcdc_depth_ros.calibration import fit_calibration
from urcdc_depth_ros.config import EstimatorConfig
from urcdc_depth_ros.estimator import DepthEstimator
from urcdc_depth_ros.evaluation.calibrate import main, read_model_meta

K = np.array([[300.0, 0, 160.0], [0, 300.0, 48.0], [0, 0, 1]])


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    return make_onnx_model(tmp_path_factory.mktemp('models'), height=64, width=192)


def _table(tmp_path, variant='nano07', max_depth=80.0) -> str:
    rng = np.random.default_rng(0)
    n = 20_000
    depth = rng.uniform(2, 70, n)
    head = rng.uniform(0.3, 1.0, n)
    err = depth * (-np.log(head) / 5) * rng.exponential(1.0, n)
    cal = fit_calibration(head, depth, err, variant, max_depth, source='made up')
    path = os.path.join(tmp_path, f'{variant}_{max_depth:g}.json')
    with open(path, 'w') as f:
        f.write(cal.to_json())
    return path


def _image():
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (96, 320, 3), dtype=np.uint8)


def test_applied_table_gives_onnx_runtime_and_torch_the_same_metres(models, tmp_path):
    onnx_path, ckpt_path, _ = models
    table = _table(tmp_path)
    out_onnx, out_ckpt = str(tmp_path / 'cal.onnx'), str(tmp_path / 'cal.ckpt')
    assert main(['--model', onnx_path, '--apply', table, '--output-model', out_onnx,
                 '--out', str(tmp_path / 'o1')]) == 0
    assert main(['--model', ckpt_path, '--apply', table, '--output-model', out_ckpt,
                 '--out', str(tmp_path / 'o2')]) == 0
    assert read_model_meta(onnx_path).calibration() is None  # the original is untouched
    assert read_model_meta(out_onnx).calibration() == read_model_meta(out_ckpt).calibration()
    cfg = EstimatorConfig(resize_mode='resize', output_resolution='model')
    ort = DepthEstimator.from_model(out_onnx, 'onnxruntime', cfg).estimate(_image(), K)
    pt = DepthEstimator.from_model(out_ckpt, 'torch', cfg).estimate(_image(), K)
    raw = DepthEstimator.from_model(onnx_path, 'onnxruntime', cfg).estimate(_image(), K)
    np.testing.assert_allclose(ort.uncertainty, pt.uncertainty, rtol=1e-3, atol=1e-3)
    assert not np.allclose(ort.uncertainty, raw.uncertainty, rtol=0.01)
    written = json.loads((tmp_path / 'o1' / 'calibration.json').read_text())
    assert written['variant'] == 'nano07'


@pytest.mark.parametrize('variant, max_depth, message', [
    ('tiny07', 80.0, 'variant'), ('nano07', 10.0, 'max_depth')])
def test_a_table_for_another_model_exits_2_naming_the_mismatch(models, tmp_path, caplog,
                                                               variant, max_depth, message):
    onnx_path, _, _ = models
    table = _table(tmp_path, variant, max_depth)
    assert main(['--model', onnx_path, '--apply', table,
                 '--output-model', str(tmp_path / 'x.onnx')]) == 2
    assert message in caplog.text and not (tmp_path / 'x.onnx').exists()


def test_a_corrupt_table_exits_2(models, tmp_path, caplog):
    onnx_path, _, _ = models
    bad = tmp_path / 'bad.json'
    bad.write_text('{"format": "urcdc-uncertainty-calibration/1", "variant": "nano07"}')
    assert main(['--model', onnx_path, '--apply', str(bad),
                 '--output-model', str(tmp_path / 'x.onnx')]) == 2
    assert 'corrupt' in caplog.text


def test_fitting_on_a_short_bag_refuses_with_the_pixel_count(models, tmp_path, caplog):
    from urcdc_depth_ros.kitti.to_bag import convert_drive
    synthetic = pytest.importorskip('urcdc_training.synthetic')
    info = synthetic.generate_dataset(str(tmp_path / 'data'), drives=1, frames=2, seed=0,
                                      width=320, height=96, test_drives=1)
    bag = convert_drive(os.path.join(info.raw_path, info.date, info.drives[0]),
                        str(tmp_path / 'bag'), progress=False)['path']
    onnx_path, _, _ = models
    assert main(['--model', onnx_path, '--bag', bag, '--crop', 'none',
                 '--output-model', str(tmp_path / 'x.onnx')]) == 2
    assert 'at least 10000 pixels' in caplog.text and 'got ' in caplog.text
