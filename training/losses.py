"""URCDC-Depth training losses (docs/method.md §3), as pure functions of tensors.

Notation: ``d1``/``u1`` are the Transformer branch's depth (m) and uncertainty (confidence in
[0, 1], high = reliable), ``d2``/``u2`` the CNN branch's; ``gt`` is ground-truth depth in metres
(0 = none); all are (N, 1, H, W). ``mask`` is a bool tensor of the same shape selecting pixels
with ground truth (``gt > min_depth``: 1.0 m for KITTI, 0.1 m for NYU).

What is detached (gradients flow only where the paper says):

* ``uncertainty_target`` detaches the depth it is computed from (and ``gt``), so loss5/loss6
  train only the uncertainty heads.
* Cross-distillation detaches the *target* branch and the weights: loss3 moves only d1 (towards
  d2), loss4 moves only d2 (towards d1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_NAMES = ('loss1', 'loss2', 'loss3', 'loss4', 'loss5', 'loss6')
EVEN_STEP_LOSSES = ('loss1', 'loss2', 'loss5', 'loss6')  # SILog of both branches + uncertainty
ODD_STEP_LOSSES = ('loss3', 'loss4')  # cross-distillation
PARITY_MODES = ('epoch', 'global')


def valid_depth_mask(gt: torch.Tensor, min_depth: float) -> torch.Tensor:
    """Bool mask of pixels with ground truth deeper than ``min_depth`` metres; shape of ``gt``."""
    return gt > min_depth


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    # reason: a batch without a single valid pixel must give a finite 0 that still touches the
    # graph (DDP and the optimiser expect a gradient, even an all-zero one), not NaN.
    return t.sum() * 0.0


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
               variance_focus: float = 0.85) -> torch.Tensor:
    """Scale-invariant log loss ``10 * sqrt(mean(g^2) - variance_focus * mean(g)^2)``.

    Args:
        pred: (N, 1, H, W) predicted depth, metres, > 0 on the mask.
        gt: (N, 1, H, W) ground-truth depth, metres.
        mask: (N, 1, H, W) bool, pixels to use.
        variance_focus: lambda of the loss (0.85 in the paper).
    Returns:
        scalar tensor (0 when the mask is empty).
    """
    if not bool(mask.any()):
        return _zero_like_graph(pred)
    g = torch.log(pred[mask]) - torch.log(gt[mask])
    return torch.sqrt((g ** 2).mean() - variance_focus * g.mean() ** 2) * 10.0


def uncertainty_target(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Target confidence ``exp(-5 |gt - d| / (gt + d + 1e-7))`` with ``d`` (and ``gt``) detached.

    Args:
        pred: (N, 1, H, W) predicted depth d, metres.
        gt: (N, 1, H, W) ground truth, metres.
    Returns:
        (N, 1, H, W) tensor in (0, 1], no gradient; 1 where the prediction is exact.
    """
    d = pred.detach()
    g = gt.detach()
    return torch.exp(-5.0 * torch.abs(g - d) / (g + d + 1e-7))


def distillation_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """Weighted L1 ``sum(|t - p| m w) / sum(m w + 1e-7)`` (the 1e-7 is summed over all pixels).

    ``target`` and ``weight`` are detached here, so only ``pred`` receives a gradient.

    Args:
        pred: (N, 1, H, W) depth being trained, metres.
        target: (N, 1, H, W) depth of the other branch, metres.
        weight: (N, 1, H, W) per-pixel weight (the other branch's uncertainty target).
        mask: (N, 1, H, W) bool.
    """
    m = mask.to(pred.dtype)
    w = weight.detach()
    return torch.sum(torch.abs(target.detach() - pred) * m * w) / torch.sum(m * w + 1e-7)


def uncertainty_loss(u_pred: torch.Tensor, u_target: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference ``mean(|u_target - u_pred|)`` over the mask (no 0.5 factor).

    ``u_target`` is detached; only the uncertainty head is trained.
    """
    if not bool(mask.any()):
        return _zero_like_graph(u_pred)
    return torch.abs(u_target.detach()[mask] - u_pred[mask]).mean()


@dataclass(frozen=True)
class LossWeights:
    """Factors of the six losses (paper: 1, 1, 0.1, 0.1, 0.5, 0.5)."""

    silog: float = 1.0
    distill: float = 0.1
    uncertainty: float = 0.5
    variance_focus: float = 0.85


def compute_losses(d1: torch.Tensor, u1: torch.Tensor, d2: torch.Tensor, u2: torch.Tensor,
                   gt: torch.Tensor, min_depth: float,
                   weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """All six URCDC losses of one batch (already weighted).

    Args:
        d1, u1: (N, 1, H, W) Transformer depth (m) and confidence.
        d2, u2: (N, 1, H, W) CNN depth (m) and confidence.
        gt: (N, 1, H, W) ground-truth depth, metres, 0 = none.
        min_depth: valid-GT threshold, metres (KITTI 1.0, NYU 0.1).
    Returns:
        dict ``loss1``..``loss6``: loss1/2 SILog of d1/d2, loss3 = 0.1 L(d1, d2, u_hat2),
        loss4 = 0.1 L(d2, d1, u_hat1), loss5/6 = 0.5 mean |u_hat - u| of branch 1/2.
    """
    mask = valid_depth_mask(gt, min_depth)
    t1 = uncertainty_target(d1, gt)
    t2 = uncertainty_target(d2, gt)
    return {
        'loss1': weights.silog * silog_loss(d1, gt, mask, weights.variance_focus),
        'loss2': weights.silog * silog_loss(d2, gt, mask, weights.variance_focus),
        'loss3': weights.distill * distillation_loss(d1, d2, t2, mask),
        'loss4': weights.distill * distillation_loss(d2, d1, t1, mask),
        'loss5': weights.uncertainty * uncertainty_loss(u1, t1, mask),
        'loss6': weights.uncertainty * uncertainty_loss(u2, t2, mask),
    }


def step_losses(step: int) -> tuple[str, ...]:
    """Names of the losses optimised at ``step`` (even: SILog + uncertainty; odd: distillation)."""
    return EVEN_STEP_LOSSES if step % 2 == 0 else ODD_STEP_LOSSES


def total_loss(losses: dict[str, torch.Tensor], step: int) -> torch.Tensor:
    """Sum of the losses that ``step``'s parity selects (see ``step_losses``)."""
    names = step_losses(step)
    total = losses[names[0]]
    for name in names[1:]:
        total = total + losses[name]
    return total


__all__ = ['LOSS_NAMES', 'EVEN_STEP_LOSSES', 'ODD_STEP_LOSSES', 'PARITY_MODES', 'LossWeights',
           'valid_depth_mask', 'silog_loss', 'uncertainty_target', 'distillation_loss',
           'uncertainty_loss', 'compute_losses', 'step_losses', 'total_loss']
