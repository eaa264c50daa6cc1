"""TensorRT backend on a real GPU: build through the cache, parity with ONNX Runtime, refusals.

Marked ``tensorrt`` (and ``gpu``): skipped where the TensorRT Python API / pycuda / CUDA are
missing. Pure cache/sidecar logic is tested without a GPU in test/unit/test_engine_cache.py.
"""
import json
import logging
import os

import numpy as np
import pytest
from fixtures.models import make_onnx_model

from urcdc_depth_ros.config import EstimatorConfig
from urcdc_depth_ros.errors import BackendError
from urcdc_depth_ros.estimator import DepthEstimator
from urcdc_depth_ros.inference import create_backend
from urcdc_depth_ros.inference.engine_cache import sidecar_path

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

K = np.array([[721.5, 0.0, 150.0], [0.0, 721.5, 50.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope='module')
def nano(tmp_path_factory):
    return make_onnx_model(tmp_path_factory.mktemp('models'))


@pytest.fixture(scope='module')
def fp16_onnx(nano, tmp_path_factory):
    from urcdc_training.onnx_precision import write_precision
    return write_precision(nano[0], str(tmp_path_factory.mktemp('fp16') / 'm.onnx'), 'fp16')


@pytest.fixture(scope='module')
def fp16_engine(fp16_onnx, tmp_path_factory):
    """A strongly typed engine from the FP16 ONNX (the path every TensorRT 10.3-11 takes)."""
    cache = tmp_path_factory.mktemp('engines')
    backend = create_backend('tensorrt', fp16_onnx, precision='fp16', cache_dir=str(cache))
    path = backend.model_path
    backend.close()
    return path, str(cache)


def _image(seed=0, h=90, w=300):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def test_first_start_builds_an_engine_with_a_sidecar(fp16_engine):
    path, _ = fp16_engine
    side = json.load(open(sidecar_path(path)))
    assert os.path.getsize(path) > 0
    for field in ('gpu_name', 'compute_capability', 'tensorrt_version', 'onnx_sha256', 'meta',
                  'shapes', 'build_seconds'):
        assert field in side
    assert side['precision'] == 'fp16' and side['shapes']['image'] == [1, 3, 64, 192]


def test_second_start_reuses_the_cached_engine(fp16_onnx, fp16_engine, caplog):
    path, cache = fp16_engine
    mtime = os.path.getmtime(path)
    with caplog.at_level(logging.INFO):
        backend = create_backend('tensorrt', fp16_onnx, precision='auto', cache_dir=cache)
    backend.close()
    assert backend.model_path == path and os.path.getmtime(path) == mtime
    assert 'using cached TensorRT engine' in caplog.text


def test_tensorrt_fp16_matches_onnxruntime_within_2_cm(nano, fp16_engine):
    cfg = EstimatorConfig(output_resolution='model')
    trt_est = DepthEstimator.from_model(fp16_engine[0], 'tensorrt', cfg)
    ort_est = DepthEstimator.from_model(nano[0], 'onnxruntime', cfg, providers='cpu')
    try:
        for seed in (0, 1):
            a, b = trt_est.estimate(_image(seed), K), ort_est.estimate(_image(seed), K)
            assert np.array_equal(np.isnan(a.depth_m), np.isnan(b.depth_m))
            assert float(np.nanmax(np.abs(a.depth_m - b.depth_m))) <= 2e-2
    finally:
        trt_est.close()


def test_the_fp16_engine_is_strongly_typed(fp16_engine):
    side = json.load(open(sidecar_path(fp16_engine[0])))
    assert side['strongly_typed'] is True and side['precision'] == 'fp16'
    assert side['onnx_precision'] == 'fp16' and side['fp32_layers'] == 0


def test_fp16_from_an_fp32_onnx_is_weakly_typed_before_11_and_refused_on_11(nano, tmp_path):
    import tensorrt as trt
    if int(trt.__version__.split('.')[0]) >= 11:
        with pytest.raises(BackendError, match='--precision fp16'):
            create_backend('tensorrt', nano[0], precision='fp16', cache_dir=str(tmp_path))
        return
    backend = create_backend('tensorrt', nano[0], precision='fp16', cache_dir=str(tmp_path))
    side = json.load(open(sidecar_path(backend.model_path)))
    backend.close()
    assert side['strongly_typed'] is False and side['fp32_layers'] > 0


def test_an_engine_with_a_foreign_sidecar_is_refused(fp16_engine, tmp_path):
    path, _ = fp16_engine
    copy = tmp_path / 'foreign.engine'
    copy.write_bytes(open(path, 'rb').read())
    side = json.load(open(sidecar_path(path)))
    side['tensorrt_version'] = '8.6.1'
    (tmp_path / 'foreign.engine.json').write_text(json.dumps(side))
    with pytest.raises(BackendError, match='built for another device'):
        create_backend('tensorrt', copy)


def test_a_corrupt_engine_is_a_backend_error(fp16_engine, tmp_path):
    path, _ = fp16_engine
    bad = tmp_path / 'bad.engine'
    bad.write_bytes(b'\x00garbage' * 1000)
    (tmp_path / 'bad.engine.json').write_text(open(sidecar_path(path)).read())
    with pytest.raises(BackendError, match='cannot deserialize'):
        create_backend('tensorrt', bad)


def test_a_corrupt_onnx_is_a_backend_error(tmp_path):
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'\x08garbage' * 100)
    with pytest.raises(BackendError):
        create_backend('tensorrt', bad, cache_dir=str(tmp_path))


@pytest.fixture(scope='module')
def dynamic_onnx(nano, tmp_path_factory):
    """The nano model exported with a symbolic batch axis (``--dynamic-batch``)."""
    from fixtures.models import make_model

    from urcdc_training.export import export_onnx
    path = str(tmp_path_factory.mktemp('dynamic') / 'dynamic.onnx')
    return export_onnx(make_model(), nano[2], path, dynamic_batch=True)


def test_a_max_batch_2_profile_runs_3_frames_in_two_calls_like_onnxruntime(
        dynamic_onnx, tmp_path):
    backend = create_backend('tensorrt', dynamic_onnx, max_batch=2, cache_dir=str(tmp_path))
    try:
        side = json.load(open(sidecar_path(backend.model_path)))
        assert backend.max_batch == 2 and side['max_batch'] == 2
        assert side['profile'] == [[1, 3, 64, 192], [2, 3, 64, 192], [2, 3, 64, 192]]
        x = np.random.default_rng(0).normal(0, 1, (3, 3, 64, 192)).astype(np.float32)
        got = backend.infer(x)
        ort = create_backend('onnxruntime', dynamic_onnx, providers='cpu')
        want = ort.infer(x)
        assert got['depth'].shape == (3, 1, 64, 192)
        assert float(np.max(np.abs(got['depth'] - want['depth']))) <= 2e-2
    finally:
        backend.close()


def test_a_static_batch_onnx_with_max_batch_4_is_refused_before_building(nano, tmp_path):
    with pytest.raises(BackendError, match='urcdc-export onnx --dynamic-batch'):
        create_backend('tensorrt', nano[0], max_batch=4, cache_dir=str(tmp_path))
    assert not list(tmp_path.glob('*.engine'))
