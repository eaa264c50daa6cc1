"""Official flip test-time-augmentation fusion."""
import numpy as np

from urcdc_depth_ros.tta import flip_fusion_weights, fuse_flip


def test_fusion_weights_trust_the_mirrored_view_at_the_left_edge_only():
    m, m_hat = flip_fusion_weights(200)
    assert m[0] == 1.0 and m_hat[-1] == 1.0
    assert np.all(m[40:] == 0.0)           # x > 0.1: the mirrored view is not favoured
    np.testing.assert_allclose(m_hat, m[::-1])


def test_fusion_is_the_plain_average_in_the_middle_and_one_view_at_each_edge():
    d = np.full((1, 3, 100), 2.0, np.float32)
    f = np.full((1, 3, 100), 4.0, np.float32)
    out = fuse_flip(d, f)
    assert np.allclose(out[..., 50], 3.0)
    assert np.allclose(out[..., 0], 4.0)   # left edge: mirrored prediction
    assert np.allclose(out[..., -1], 2.0)  # right edge: direct prediction


def test_fusion_of_equal_predictions_is_the_identity_for_numpy_and_torch():
    import torch
    d = np.random.default_rng(0).random((2, 1, 8, 64)).astype(np.float32)
    np.testing.assert_allclose(fuse_flip(d, d), d, rtol=1e-6)
    t = torch.from_numpy(d)
    assert torch.allclose(fuse_flip(t, t), t)
