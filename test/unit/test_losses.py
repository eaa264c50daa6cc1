"""Losses of docs/method.md §3 against hand-computed values, and where gradients flow."""
import math

import pytest
import torch

from urcdc_training import losses as L


def _t(values):
    """(1, 1, 1, n) float64 tensor from a list."""
    return torch.tensor(values, dtype=torch.float64).reshape(1, 1, 1, -1)


def test_silog_matches_hand_computed_value_and_ignores_masked_pixels():
    pred = _t([4.0, 4.0, 50.0])
    gt = _t([2.0, 4.0, 0.5])  # third pixel below the 1 m KITTI threshold
    mask = L.valid_depth_mask(gt, 1.0)
    # g = [ln 2, 0]: mean g^2 = ln2^2 / 2, mean g = ln2 / 2
    expected = 10 * math.log(2) * math.sqrt(0.5 - 0.85 * 0.25)
    assert expected == pytest.approx(3.716588, abs=1e-6)
    assert L.silog_loss(pred, gt, mask).item() == pytest.approx(expected, rel=1e-12)


def test_uncertainty_target_is_exp_of_minus_five_relative_error():
    pred = _t([2.0, 3.0])
    gt = _t([4.0, 3.0])
    target = L.uncertainty_target(pred, gt)
    assert target[0, 0, 0, 0].item() == pytest.approx(math.exp(-5 * 2 / (6 + 1e-7)), rel=1e-12)
    assert target[0, 0, 0, 1].item() == pytest.approx(1.0, abs=1e-12)


def test_distillation_loss_sums_epsilon_over_every_pixel():
    pred = _t([1.0, 2.0, 7.0])
    target = _t([2.0, 2.0, 1.0])
    weight = _t([0.5, 1.0, 1.0])
    mask = _t([1.0, 1.0, 0.0]) > 0
    # numerator |2-1|*0.5 + 0 = 0.5; denominator 0.5 + 1 + 0 + 3 * 1e-7
    expected = 0.5 / (1.5 + 3e-7)
    assert L.distillation_loss(pred, target, weight, mask).item() == pytest.approx(
        expected, rel=1e-12)


def test_uncertainty_loss_is_mean_abs_difference_on_mask():
    u = _t([0.2, 0.9, 0.0])
    target = _t([0.5, 0.5, 1.0])
    mask = _t([1.0, 1.0, 0.0]) > 0
    assert L.uncertainty_loss(u, target, mask).item() == pytest.approx((0.3 + 0.4) / 2)


def test_compute_losses_applies_paper_weights():
    gt = _t([4.0, 2.0, 0.0])
    d1, d2 = _t([2.0, 2.5, 9.0]), _t([3.0, 1.0, 9.0])
    u1, u2 = _t([0.1, 0.2, 0.3]), _t([0.9, 0.8, 0.7])
    out = L.compute_losses(d1, u1, d2, u2, gt, min_depth=1.0)
    mask = gt > 1.0
    t1 = torch.exp(-5 * (gt - d1).abs() / (gt + d1 + 1e-7))
    t2 = torch.exp(-5 * (gt - d2).abs() / (gt + d2 + 1e-7))
    m = mask.double()
    loss3 = 0.1 * ((d2 - d1).abs() * m * t2).sum() / (m * t2 + 1e-7).sum()
    loss4 = 0.1 * ((d1 - d2).abs() * m * t1).sum() / (m * t1 + 1e-7).sum()
    assert out['loss3'].item() == pytest.approx(loss3.item(), rel=1e-12)
    assert out['loss4'].item() == pytest.approx(loss4.item(), rel=1e-12)
    assert out['loss5'].item() == pytest.approx(
        0.5 * (t1 - u1).abs()[mask].mean().item(), rel=1e-12)
    assert out['loss6'].item() == pytest.approx(
        0.5 * (t2 - u2).abs()[mask].mean().item(), rel=1e-12)
    assert out['loss1'].item() == pytest.approx(L.silog_loss(d1, gt, mask).item())


def _leaves():
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 1, 4, 5, generator=gen, dtype=torch.float64) * 20
    gt[0, 0, 0, :] = 0.0
    tensors = {name: (torch.rand(2, 1, 4, 5, generator=gen, dtype=torch.float64) * scale + off)
               .requires_grad_() for name, scale, off in
               (('d1', 20, 1), ('u1', 1, 0), ('d2', 20, 1), ('u2', 1, 0))}
    return tensors, gt


@pytest.mark.parametrize('loss_name, trained', [
    ('loss1', {'d1'}), ('loss2', {'d2'}),
    ('loss3', {'d1'}), ('loss4', {'d2'}),  # the distillation target is detached
    ('loss5', {'u1'}), ('loss6', {'u2'}),  # the uncertainty target's depth is detached
])
def test_gradients_flow_only_into_the_trained_tensor(loss_name, trained):
    x, gt = _leaves()
    losses = L.compute_losses(x['d1'], x['u1'], x['d2'], x['u2'], gt, min_depth=1.0)
    grads = torch.autograd.grad(losses[loss_name], list(x.values()), allow_unused=True)
    for (name, _), grad in zip(x.items(), grads):
        has_grad = grad is not None and bool(grad.abs().sum() > 0)
        assert has_grad == (name in trained), f'{loss_name}: gradient into {name}={has_grad}'


def test_alternation_even_steps_silog_and_uncertainty_odd_steps_distillation():
    losses = {name: torch.tensor(float(10 ** i)) for i, name in enumerate(L.LOSS_NAMES)}
    assert L.total_loss(losses, 0).item() == 1 + 10 + 10_000 + 100_000
    assert L.total_loss(losses, 7).item() == 100 + 1000


def test_empty_mask_gives_zero_loss_with_a_gradient_path():
    d = torch.full((1, 1, 2, 2), 5.0, requires_grad=True)
    gt = torch.zeros(1, 1, 2, 2)
    loss = L.silog_loss(d, gt, L.valid_depth_mask(gt, 1.0))
    loss.backward()
    assert loss.item() == 0.0 and d.grad is not None
