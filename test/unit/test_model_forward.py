"""Forward contract of the full network: shapes, ranges, branch isolation, padding, export."""
from __future__ import annotations

import io
import warnings

import pytest
import torch
import torch.nn.functional as F

from urcdc_depth_ros.errors import InputError
from urcdc_depth_ros.model import DepthOutput, build_model

CNN_ONLY = ('backbone.base_model', 'backbone.fusion', 'decoder2', 'last_layer_')


@pytest.fixture(scope='module')
def nano():
    torch.manual_seed(0)
    return build_model('nano07', max_depth=80.0).eval()


def _image(n=1, h=70, w=130, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('name', ['nano07', 'tiny07'])
def test_eval_forward_at_odd_size_gives_depth_and_uncertainty_maps(name):
    torch.manual_seed(0)
    net = build_model(name, max_depth=80.0).eval()
    with torch.inference_mode():
        out = net(_image())
    assert isinstance(out, DepthOutput)
    assert out.depth.shape == out.uncertainty.shape == (1, 1, 70, 130)
    assert out.depth_cnn is None and out.uncertainty_cnn is None
    assert out.depth.dtype == torch.float32
    assert 0 < out.depth.min() and out.depth.max() < 80.0
    assert 0 <= out.uncertainty.min() and out.uncertainty.max() <= 1


def test_eval_outputs_identical_with_and_without_cnn_branch(nano):
    x = _image()
    with torch.inference_mode():
        alone = nano(x)
        both = nano(x, with_cnn=True)
        other_cnn_input = nano(x, x_cnn=_image(seed=5), with_cnn=True)
    assert both.depth_cnn.shape == both.uncertainty_cnn.shape == (1, 1, 70, 130)
    assert torch.equal(alone.depth, both.depth)
    assert torch.equal(alone.uncertainty, both.uncertainty)
    assert torch.equal(alone.depth, other_cnn_input.depth)
    assert not torch.allclose(both.depth_cnn, other_cnn_input.depth_cnn)


def test_eval_path_never_runs_cnn_modules(nano):
    called = []
    handles = [m.register_forward_hook(lambda m, a, o, n=name: called.append(n))
               for name, m in nano.named_modules() if name.startswith(CNN_ONLY)]
    try:
        with torch.inference_mode():
            nano(_image(h=64, w=64))
        assert called == []
        with torch.inference_mode():
            nano(_image(h=64, w=64), with_cnn=True)
        assert called  # the hooks do fire when the branch runs
    finally:
        for h in handles:
            h.remove()


def test_odd_input_is_edge_padded_to_multiples_of_32_and_cropped_back(nano):
    x = _image(h=70, w=130)
    padded = F.pad(x, (0, 160 - 130, 0, 96 - 70), mode='replicate')
    with torch.inference_mode():
        out = nano(x)
        ref = nano(padded)
    torch.testing.assert_close(out.depth, ref.depth[..., :70, :130])
    torch.testing.assert_close(out.uncertainty, ref.uncertainty[..., :70, :130])


def test_batch_items_are_independent_in_eval(nano):
    x = torch.cat([_image(h=64, w=96, seed=1), _image(h=64, w=96, seed=2)])
    with torch.inference_mode():
        both = nano(x).depth
        second = nano(x[1:]).depth
    torch.testing.assert_close(both[1:], second, rtol=1e-4, atol=1e-4)


def test_train_mode_returns_both_branches():
    torch.manual_seed(0)
    net = build_model('nano07').train()
    out = net(_image(n=2, h=64, w=96))
    assert all(t is not None and t.shape == (2, 1, 64, 96) for t in out)
    assert 0 <= out.uncertainty_cnn.min() and out.uncertainty_cnn.max() <= 1
    assert 0 < out.depth_cnn.min() and out.depth_cnn.max() < net.max_depth


def _grads(net):
    return {n: p.grad for n, p in net.named_parameters()}


def test_cnn_loss_puts_no_gradient_into_transformer_branch():
    torch.manual_seed(0)
    net = build_model('nano07', coupling_skip_prob=0.0).train()
    out = net(_image(n=2, h=64, w=96))
    out.depth_cnn.mean().backward()
    g = _grads(net)
    transformer = {n: v for n, v in g.items() if not n.startswith(CNN_ONLY)}
    assert transformer and all(v is None or not v.any() for v in transformer.values())
    assert g['backbone.base_model.conv0.weight'].abs().sum() > 0
    assert g['backbone.fusion4.conv1.weight'].abs().sum() > 0


def test_transformer_loss_puts_no_gradient_into_cnn_branch():
    torch.manual_seed(0)
    net = build_model('nano07').train()
    out = net(_image(n=2, h=64, w=96))
    out.depth.mean().backward()
    g = _grads(net)
    assert all(v is None for n, v in g.items() if n.startswith(CNN_ONLY))
    assert g['backbone.patch_embed.proj.weight'].abs().sum() > 0


def test_bad_input_shape_raises_input_error(nano):
    with pytest.raises(InputError, match='N,3,H,W'):
        nano(torch.zeros(1, 1, 64, 64))
    with pytest.raises(InputError, match='x_cnn'):
        nano(torch.zeros(1, 3, 64, 64), x_cnn=torch.zeros(1, 3, 32, 64), with_cnn=True)


def test_eval_path_exports_to_onnx_opset17_and_matches_onnxruntime(nano):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    f = io.BytesIO()
    x = _image(h=64, w=192, seed=3)
    with warnings.catch_warnings():  # the tracer warns about static shapes; intended
        warnings.simplefilter('ignore')
        torch.onnx.export(nano, torch.zeros(1, 3, 64, 192), f, opset_version=17,
                          dynamo=False, input_names=['image'],
                          output_names=['depth', 'uncertainty'])
    sess = ort.InferenceSession(f.getvalue(), providers=['CPUExecutionProvider'])
    depth, unc = sess.run(None, {'image': x.numpy()})
    ops = {n.op_type for n in __import__('onnx').load_from_string(f.getvalue()).graph.node}
    assert not any('Adaptive' in op or 'Loop' in op or op == 'If' for op in ops), ops
    with torch.inference_mode():
        ref = nano(x)
    torch.testing.assert_close(torch.from_numpy(depth), ref.depth, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(torch.from_numpy(unc), ref.uncertainty, rtol=1e-4, atol=1e-5)
