"""Small shared building blocks (no I/O): DropPath, trunc_normal_, Mlp, window helpers.

Adapted from the Swin Transformer reference code (microsoft/Swin-Transformer, MIT), written
here so the package does not depend on timm.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02, a: float = -2.0,
                  b: float = 2.0) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, std) truncated to [a, b] (absolute bounds)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=a, b=b)


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability ``p``.

    Kept samples are scaled by 1/(1-p). Identity in eval mode or when ``p == 0``.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``x`` (B, ...) along the batch dimension."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        """Show the drop probability."""
        return f'p={self.p}'


class Mlp(nn.Module):
    """Two Linear layers with GELU between: (..., C) -> (..., hidden) -> (..., C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        return self.fc2(self.act(self.fc1(x)))


def relative_position_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(heads, N, N) bias from a ((2ws-1)^2, heads) table and its (N, N) index, N = ws*ws."""
    n = index.shape[0]
    return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)


def window_softmax(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor,
                   mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention weights softmax(scale * q k^T + bias [+ mask]) over (B*nW, heads, N, d) windows.

    ``bias`` (heads, N, N) is the relative-position bias, ``mask`` (nW, N, N) the shifted-window
    mask or None. The sums go in place into the fresh logits: no extra (B*nW, heads, N, N)
    tensors, which are tens of MB at stride 4.
    """
    attn = (q * scale) @ k.transpose(-2, -1)
    attn = attn.add_(bias.unsqueeze(0))
    if mask is not None:
        b, heads, n, _ = attn.shape
        nw = mask.shape[0]
        attn = attn.view(b // nw, nw, heads, n, n).add_(mask[None, :, None]).view(b, heads, n, n)
    return attn.softmax(dim=-1)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``ws`` -> (B * nW, ws * ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C); inverse of :func:`window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) int64 index into a ((2ws-1)^2, heads) relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing='ij'))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


# Logit offset between shifted-window regions. The official code adds -100; after softmax that
# leaves weights of about exp(-100) = 3.7e-44, which are float32 *subnormals*. x86 GEMMs slow
# down 10-30x on subnormal operands (with -100 a large07 CPU forward took 10 s, not 5). -1e4
# makes those weights exactly 0 instead; attention outputs change by < 1e-40 (below float32
# resolution of any normal value), and -1e4 still fits float16 for GPU/TensorRT FP16.
MASK_VALUE = -1e4


@lru_cache(maxsize=32)
def _shift_mask_cpu(hp: int, wp: int, ws: int, shift: int) -> torch.Tensor:
    """CPU mask for :func:`shifted_window_mask`, cached per size (never an inference tensor)."""
    with torch.inference_mode(False), torch.no_grad():
        def region(n: int) -> torch.Tensor:
            i = torch.arange(n, device='cpu')
            return (i >= n - ws).long() + (i >= n - shift).long()

        labels = (region(hp)[:, None] * 3 + region(wp)[None, :]).float()
        win = window_partition(labels[None, :, :, None], ws).squeeze(-1)  # (nW, ws*ws)
        diff = win[:, None, :] - win[:, :, None]
        return torch.where(diff != 0, torch.full_like(diff, MASK_VALUE), torch.zeros_like(diff))


def shifted_window_mask(hp: int, wp: int, ws: int, shift: int,
                        device: torch.device | None = None) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) float32 mask: 0 within a region, MASK_VALUE across (Swin SW-MSA).

    ``hp``, ``wp`` are the padded sizes (multiples of ``ws``). Built from static sizes only,
    so tracing/ONNX export records it as a constant.
    """
    mask = _shift_mask_cpu(hp, wp, ws, shift)
    return mask if device is None else mask.to(device)


def ceil_to(n: int, m: int) -> int:
    """Smallest multiple of ``m`` that is >= ``n``."""
    return int(math.ceil(n / m)) * m
