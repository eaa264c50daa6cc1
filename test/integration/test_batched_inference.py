"""One backend call for several cameras gives each camera what a call of its own gives.

Real nano07 network (random weights, 64 x 192), real ONNX Runtime (dynamic batch and fixed
batch 1, which splits a batch into calls) and torch; three cameras whose sizes, intrinsics and
resize modes differ, so every image takes its own geometry into the shared batch.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures.models import make_model, make_onnx_model

from urcdc_depth_ros.config import EstimatorConfig
from urcdc_depth_ros.estimator import DepthEstimator

pytest.importorskip('onnxruntime')

# (height, width, fx px, resize mode): smaller than, like and larger than the 64 x 192 input
CAMERAS = [(48, 150, 500.0, None), (64, 192, 721.5377, 'kb_crop'), (120, 400, 1100.0, None)]


def _inputs():
    rng = np.random.default_rng(3)
    images, Ks, modes = [], [], []
    for h, w, fx, mode in CAMERAS:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 7.0)], -1) * 200
        images.append((base + rng.uniform(0, 55, (h, w, 3))).clip(0, 255).astype(np.uint8))
        Ks.append(np.array([[fx, 0, w / 2 - 0.5], [0, fx, h / 2 + 0.3], [0, 0, 1]]))
        modes.append(mode)
    return images, Ks, modes


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp('batched')
    onnx_path, ckpt_path, meta = make_onnx_model(d)
    from urcdc_training.export import export_onnx
    dyn_path = os.path.join(str(d), 'nano07_dynamic.onnx')
    export_onnx(make_model(), meta, dyn_path, dynamic_batch=True)
    return {'onnx_fixed': (onnx_path, 'onnxruntime'), 'onnx_dynamic': (dyn_path, 'onnxruntime'),
            'torch': (ckpt_path, 'torch')}


class CountingBackend:
    """Wraps a backend and records the batch size of every call."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []
        self.name, self.meta, self.input_shape = inner.name, inner.meta, inner.input_shape

    def infer(self, x):
        self.batches.append(x.shape[0])
        return self.inner.infer(x)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize('which,flip_tta', [
    ('onnx_dynamic', False), ('onnx_fixed', False), ('torch', False), ('onnx_dynamic', True)])
def test_a_batch_equals_one_call_per_camera(models, which, flip_tta):
    path, backend = models[which]
    cfg = EstimatorConfig(flip_tta=flip_tta)
    est = DepthEstimator.from_model(path, backend, config=cfg)
    counting = CountingBackend(est.backend)
    est.backend = counting
    images, Ks, modes = _inputs()
    batched = est.estimate_batch(images, Ks, ['rgb8'] * 3, modes)
    assert counting.batches == [3] * (2 if flip_tta else 1)  # one call (two with TTA)
    single_cfgs = [EstimatorConfig(flip_tta=flip_tta, resize_mode=m or cfg.resize_mode)
                   for m in modes]
    for i, res in enumerate(batched):
        alone = DepthEstimator(counting, single_cfgs[i]).estimate(images[i], Ks[i])
        assert res.depth_m.shape == images[i].shape[:2]
        np.testing.assert_array_equal(np.isnan(res.depth_m), np.isnan(alone.depth_m))
        np.testing.assert_allclose(res.depth_m, alone.depth_m, rtol=1e-4, equal_nan=True)
        np.testing.assert_allclose(res.uncertainty, alone.uncertainty, rtol=1e-3, atol=1e-4,
                                   equal_nan=True)
        np.testing.assert_allclose(res.K, Ks[i])
    # the three cameras really differ (not one map copied three times)
    assert len({round(float(np.nanmean(r.depth_m)), 4) for r in batched}) == 3
    est.close()


def test_a_fixed_batch_model_runs_a_larger_batch_as_several_calls(models):
    path, _ = models['onnx_fixed']
    est = DepthEstimator.from_model(path, 'onnxruntime')
    assert est.backend.input_shape[0] == 1 and not est.backend.dynamic_batch
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 192)).astype(np.float32)
    out = est.backend.infer(x)
    assert out['depth'].shape == (3, 1, 64, 192)
    np.testing.assert_allclose(out['depth'][2], est.backend.infer(x[2:])['depth'][0], rtol=1e-5)
    est.close()


@pytest.mark.parametrize('max_batch,calls', [(1, [1, 1, 1]), (2, [2, 1]), (3, [3])])
def test_max_batch_caps_each_backend_call_and_keeps_every_result(models, max_batch, calls):
    path, backend = models['onnx_dynamic']
    images, Ks, modes = _inputs()
    one_call = DepthEstimator.from_model(path, backend).estimate_batch(
        images, Ks, ['rgb8'] * 3, modes)
    est = DepthEstimator.from_model(path, backend, config=EstimatorConfig(max_batch=max_batch))
    counting = CountingBackend(est.backend)
    est.backend = counting
    capped = est.estimate_batch(images, Ks, ['rgb8'] * 3, modes)
    assert counting.batches == calls
    for a, b in zip(capped, one_call):
        np.testing.assert_allclose(a.depth_m, b.depth_m, rtol=1e-4, equal_nan=True)
        np.testing.assert_allclose(a.uncertainty, b.uncertainty, rtol=1e-3, atol=1e-4,
                                   equal_nan=True)
    est.close()
