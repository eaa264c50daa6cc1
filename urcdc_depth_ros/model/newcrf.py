"""Transformer decoder: PSP pyramid-pooling head and NeWCRF window-attention stages.

Adapted from NeWCRFs (``newcrf_layers.py``, ``uper_crf_head.py``; MIT). Parameter names follow
the official checkpoints (``decoder.psp_modules.{i}.1.conv/gn``, ``crf{i}.crf_layer.blocks``).
Adaptive pooling is written as explicit bin slicing + mean so that ONNX/TensorRT see plain
slice/reduce ops at any (static) input size.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (DropPath, Mlp, ceil_to, relative_position_bias, relative_position_index,
                     shifted_window_mask, trunc_normal_, window_partition, window_reverse,
                     window_softmax)


def adaptive_avg_pool2d_static(x: torch.Tensor, size: int) -> torch.Tensor:
    """Same result as ``F.adaptive_avg_pool2d(x, size)``, from static slices and means.

    Bin i along a side of length n covers [floor(i*n/size), ceil((i+1)*n/size)), exactly as
    PyTorch defines adaptive pooling. (B, C, H, W) -> (B, C, size, size).
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    rows = [(i * h // size, -((-(i + 1) * h) // size)) for i in range(size)]
    cols = [(j * w // size, -((-(j + 1) * w) // size)) for j in range(size)]
    out = [torch.stack([x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)) for c0, c1 in cols], dim=-1)
           for r0, r1 in rows]
    return torch.stack(out, dim=-2)


class StaticAdaptiveAvgPool2d(nn.Module):
    """Module form of :func:`adaptive_avg_pool2d_static` (replaces nn.AdaptiveAvgPool2d)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, size, size)."""
        return adaptive_avg_pool2d_static(x, self.size)


class ConvModule(nn.Module):
    """Conv (no bias) + norm (``bn`` BatchNorm or ``gn`` GroupNorm) + ReLU, mmcv naming."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: str = 'bn', groups: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        if norm == 'gn':
            self.gn = nn.GroupNorm(groups, cout)
        else:
            self.bn = nn.BatchNorm2d(cout)
        self.norm_name = norm
        self.activate = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H, W)."""
        return self.activate(getattr(self, self.norm_name)(self.conv(x)))


class PSP(nn.Module):
    """Pyramid pooling on the last Swin feature: (B, C_in, h, w) -> (B, channels, h, w).

    Every pool scale uses GroupNorm (as the official code ends up doing); outputs are
    upsampled bilinearly (align_corners False) and concatenated after the input feature,
    then a 3x3 ConvModule with BatchNorm ("bottleneck") maps to ``channels``.
    """

    def __init__(self, in_channels: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), gn_groups: int = 256):
        super().__init__()
        self.channels = channels
        self.psp_modules = nn.ModuleList([
            nn.Sequential(StaticAdaptiveAvgPool2d(s),
                          ConvModule(in_channels, channels, 1, 'gn', gn_groups))
            for s in pool_scales])
        self.bottleneck = ConvModule(in_channels + len(pool_scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) -> (B, channels, h, w)."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        outs = [x] + [F.interpolate(m(x), size=size, mode='bilinear', align_corners=False)
                      for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))


class CRFWindowAttention(nn.Module):
    """Window attention whose queries/keys come from x and whose values are the raw v window."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size))
        self.qk = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x, v (B*nW, N, C), optional mask (nW, N, N) -> (B*nW, N, C)."""
        b, n, c = x.shape
        qk = self.qk(x).reshape(b, n, 2, self.num_heads, c // self.num_heads)
        q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)
        bias = relative_position_bias(self.relative_position_bias_table,
                                      self.relative_position_index)
        attn = window_softmax(q, k, bias, mask, self.scale)
        v = v.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class CRFBlock(nn.Module):
    """NeWCRF block: x + proj(attn(LN(x)) @ v), then x + MLP(LN(x)); pads/shifts x and v."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CRFWindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, v: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x (B, h*w, C) tokens, v (B, h, w, C) value map -> (B, h*w, C)."""
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        hp, wp = ceil_to(h, ws), ceil_to(w, ws)
        if hp != h or wp != w:
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
            v = F.pad(v, (0, 0, 0, wp - w, 0, hp - h))
        mask = None
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
            v = torch.roll(v, shifts=(-s, -s), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, s, x.device).to(x.dtype)
        x = self.attn(window_partition(x, ws), window_partition(v, ws), mask)
        x = window_reverse(x, ws, hp, wp)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        if hp != h or wp != w:
            x = x[:, :h, :w, :].contiguous()
        x = self.drop_path(x.view(b, h * w, c)).add_(shortcut)  # x is fresh: add in place
        return self.drop_path(self.mlp(self.norm2(x))).add_(x)


class BasicCRFLayer(nn.Module):
    """``depth`` CRF blocks, every second one shifted by window_size // 2."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int = 7,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList([
            CRFBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                     mlp_ratio) for i in range(depth)])

    def forward(self, x: torch.Tensor, v: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x (B, h*w, C), v (B, h, w, C) -> (B, h*w, C); the same v feeds every block."""
        for blk in self.blocks:
            x = blk(x, v, h, w)
        return x


class NeWCRF(nn.Module):
    """One NeWCRF decoder stage: (Swin feature, value map) -> (B, embed_dim, h, w).

    ``proj_x`` / ``proj_v`` are 3x3 convs to ``embed_dim`` (absent, as in the official code,
    when the input width already equals ``embed_dim``).
    """

    def __init__(self, input_dim: int, embed_dim: int, v_dim: int, window_size: int = 7,
                 num_heads: int = 4, depth: int = 2):
        super().__init__()
        self.embed_dim = embed_dim
        self.proj_x = nn.Conv2d(input_dim, embed_dim, 3, padding=1) \
            if input_dim != embed_dim else None
        self.proj_v = nn.Conv2d(v_dim, embed_dim, 3, padding=1) if v_dim != embed_dim else None
        self.crf_layer = BasicCRFLayer(embed_dim, depth, num_heads, window_size)
        self.norm_crf = nn.LayerNorm(embed_dim)
        # reason: the official NeWCRF keeps PyTorch's default Linear init (no trunc-normal
        # re-initialisation); it matters when training from scratch

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x (B, input_dim, h, w), v (B, v_dim, h, w) -> (B, embed_dim, h, w)."""
        if self.proj_x is not None:
            x = self.proj_x(x)
        if self.proj_v is not None:
            v = self.proj_v(v)
        b, c, h, w = x.shape
        h, w = int(h), int(w)
        x = self.crf_layer(x.flatten(2).transpose(1, 2), v.permute(0, 2, 3, 1), h, w)
        x = self.norm_crf(x)
        return x.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
