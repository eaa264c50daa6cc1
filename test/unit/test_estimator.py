"""DepthEstimator with a numpy fake backend: wiring, geometry, flip TTA, errors, timings."""
import numpy as np
import pytest

from urcdc_depth_ros.config import EstimatorConfig, ModelMeta
from urcdc_depth_ros.errors import BackendError, ConfigError, InputError
from urcdc_depth_ros.estimator import DepthEstimator
from urcdc_depth_ros.inference import InferenceBackend

META = ModelMeta(variant='nano07', input_height=64, input_width=192, focal_px=500.0)
K = np.array([[500.0, 0, 160.0], [0, 500.0, 60.0], [0, 0, 1]])


class FakeBackend:
    """Depth = 5 m + 10 m * (red channel, normalised) so image content maps to known depth."""

    name = 'fake'

    def __init__(self, meta=META):
        self.meta = meta
        self.input_shape = (1, 3, meta.input_height, meta.input_width)
        self.calls = 0

    def infer(self, x):
        self.calls += 1
        red = x[:, :1] * self.meta.std[0] + self.meta.mean[0]  # back to [0, 1]
        return {'depth': (5.0 + 10.0 * red).astype(np.float32),
                'uncertainty': np.full_like(red, 0.8, dtype=np.float32)}

    def close(self):
        pass


def _image(h=120, w=320):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w).astype(np.uint8)[None, :]
    return img


def test_fake_backend_satisfies_the_protocol():
    assert isinstance(FakeBackend(), InferenceBackend)


def test_estimate_returns_input_sized_maps_with_nan_outside_the_crop():
    est = DepthEstimator(FakeBackend(), EstimatorConfig(rescale_focal=False))
    res = est.estimate(_image(), K)
    assert res.depth_m.shape == res.uncertainty.shape == res.confidence.shape == (120, 320)
    assert res.depth_m.dtype == np.float32
    assert np.isnan(res.depth_m[:56]).all() and np.isfinite(res.depth_m[56:, 64:256]).all()
    np.testing.assert_array_equal(res.K, K)
    expected = 5.0 + 10.0 * _image()[56:, 64:256, 0] / 255.0
    np.testing.assert_allclose(res.depth_m[56:, 64:256], expected, atol=1e-4)
    assert set(res.timings_ms) == {'preprocess', 'backend', 'postprocess'}
    assert est.input_size == (64, 192) and est.meta is META


def test_bgr_input_is_converted_before_the_network():
    est = DepthEstimator(FakeBackend(), EstimatorConfig(rescale_focal=False,
                                                        output_resolution='model'))
    rgb = _image()
    a = est.estimate(rgb, K, 'rgb8').depth_m
    b = est.estimate(np.ascontiguousarray(rgb[..., ::-1]), K, 'bgr8').depth_m
    np.testing.assert_array_equal(a, b)


def test_model_resolution_output_comes_with_the_model_K():
    est = DepthEstimator(FakeBackend(), EstimatorConfig(output_resolution='model'))
    res = est.estimate(_image(), K)
    assert res.depth_m.shape == (64, 192)
    np.testing.assert_allclose(res.K[:2, 2], [160.0 - 64, 60.0 - 56])


def test_a_longer_focal_length_scales_depth_proportionally():
    # kb_crop feeds the same pixels whatever fx is, so only the focal rescale changes depth
    est = DepthEstimator(FakeBackend(), EstimatorConfig(resize_mode='kb_crop',
                                                        output_resolution='model'))
    K2 = K.copy()
    K2[0, 0] = K2[1, 1] = 750.0
    d1 = est.estimate(_image(), K).depth_m
    d2 = est.estimate(_image(), K2).depth_m
    np.testing.assert_allclose(d2 / d1, 1.5, rtol=1e-5)


class RampBackend(FakeBackend):
    """Depth = 10 m at the network input's left column rising to 20 m at its right column.

    The output depends on the pixel position only, not on the content, so the mirrored
    image's prediction, mirrored back, is the opposite ramp: the fusion is what is checked.
    """

    def infer(self, x):
        self.calls += 1
        w = x.shape[-1]
        ramp = (10.0 + 10.0 * np.arange(w) / (w - 1)).astype(np.float32)
        depth = np.broadcast_to(ramp, x[:, :1].shape).copy()
        return {'depth': depth, 'uncertainty': np.full_like(depth, 0.8)}


def test_flip_tta_fuses_the_mirrored_prediction_with_edge_weights():
    backend = RampBackend()
    est = DepthEstimator(backend, EstimatorConfig(flip_tta=True, rescale_focal=False,
                                                  output_resolution='model'))
    d = est.estimate(_image(), K).depth_m
    assert backend.calls == 2
    w = d.shape[1]
    # the official fusion: the centre averages the two ramps (10..20 and 20..10 m) -> 15 m;
    # each edge keeps the prediction that saw it with context: the left edge the mirrored one
    # (20 m there), the right edge the direct one (20 m there)
    np.testing.assert_allclose(d[:, int(0.2 * w):int(0.8 * w)], 15.0, atol=1e-4)
    np.testing.assert_allclose(d[:, 0], 20.0, atol=1e-4)
    np.testing.assert_allclose(d[:, -1], 20.0, atol=1e-4)
    plain = DepthEstimator(RampBackend(), EstimatorConfig(
        rescale_focal=False, output_resolution='model')).estimate(_image(), K).depth_m
    np.testing.assert_allclose(plain[:, 0], 10.0, atol=1e-4)  # without TTA: the raw ramp


@pytest.mark.parametrize('image,K_px,encoding', [
    (np.zeros((120, 320, 3), np.float32), K, 'rgb8'),
    (np.zeros((120, 320), np.uint8), K, 'rgb8'),
    (np.zeros((120, 320, 3), np.uint8), np.zeros((3, 3)), 'rgb8'),
    (np.zeros((120, 320, 3), np.uint8), K, 'bgra8'),
])
def test_bad_frames_raise_input_error(image, K_px, encoding):
    est = DepthEstimator(FakeBackend())
    with pytest.raises(InputError):
        est.estimate(image, K_px, encoding)


def test_a_backend_returning_garbage_raises_backend_error():
    class Broken(FakeBackend):
        def infer(self, x):
            return {'depth': np.zeros(3)}

    with pytest.raises(BackendError, match='malformed'):
        DepthEstimator(Broken()).estimate(_image(), K)


def test_non_backends_and_bad_configs_are_refused():
    with pytest.raises(ConfigError):
        DepthEstimator(object())
    with pytest.raises(ConfigError):
        DepthEstimator(FakeBackend(), config={'flip_tta': True})
