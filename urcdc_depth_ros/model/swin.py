"""Swin Transformer backbone, detection/segmentation flavour (any input size).

Adapted from Swin-Transformer-Object-Detection / NeWCRFs ``swin_transformer.py`` (MIT):
patch-embed padding, padding to window multiples inside every block, PatchMerging that pads
odd sizes, shifted windows with region masks (-1e4 rather than the official -100, see
``layers.MASK_VALUE``), stochastic depth rising linearly over all blocks,
no absolute position embedding, and an extra LayerNorm ``norm{i}`` on each stage output (taken
before PatchMerging). Parameter names follow the official checkpoints.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (DropPath, Mlp, ceil_to, relative_position_bias, relative_position_index,
                     shifted_window_mask, trunc_normal_, window_partition, window_reverse,
                     window_softmax)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (ws x ws) windows with relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) relative-position bias, N = ws*ws."""
        return relative_position_bias(self.relative_position_bias_table,
                                      self.relative_position_index)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B*nW, N, C) tokens, optional (nW, N, N) mask -> (B*nW, N, C)."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = window_softmax(q, k, self.position_bias(), mask, self.scale)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class SwinBlock(nn.Module):
    """(Shifted-)window attention block; pads to window multiples internally."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, h*w, C) tokens -> (B, h*w, C)."""
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        hp, wp = ceil_to(h, ws), ceil_to(w, ws)
        if hp != h or wp != w:
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        mask = None
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, s, x.device).to(x.dtype)
        x = self.attn(window_partition(x, ws), mask)
        x = window_reverse(x, ws, hp, wp)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        if hp != h or wp != w:
            x = x[:, :h, :w, :].contiguous()
        x = self.drop_path(x.view(b, h * w, c)).add_(shortcut)  # x is fresh: add in place
        return self.drop_path(self.mlp(self.norm2(x))).add_(x)


class PatchMerging(nn.Module):
    """2x2 patch merging (pads odd sizes): (B, h*w, C) -> (B, ceil(h/2)*ceil(w/2), 2C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Merge tokens of an (h, w) grid."""
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = torch.cat([x0, x1, x2, x3], -1).view(b, -1, 4 * c)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks (every second one shifted) and optional PatchMerging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 drop_path: Sequence[float], downsample: bool, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                      mlp_ratio, drop_path[i]) for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int):
        """Return (stage output tokens, next-stage tokens, next h, next w)."""
        for blk in self.blocks:
            x = blk(x, h, w)
        if self.downsample is None:
            return x, x, h, w
        return x, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
    """Conv patch embedding (pads to patch multiples) + LayerNorm: (B,3,H,W) -> (B,C,H/p,W/p)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed; output (B, C, ceil(H/p), ceil(W/p))."""
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x)
        b, c, hh, ww = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(b, c, hh, ww)


class SwinTransformer(nn.Module):
    """Hierarchical Swin encoder returning four normalised NCHW stage features.

    Stage ``i`` has ``channels[i] = embed_dim * 2**i`` channels at stride ``reductions[i]``
    (4, 8, 16, 32) of the input. Submodules: ``patch_embed``, ``layers``, ``norm0..3``.
    """

    def __init__(self, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7,
                 patch_size: int = 4, mlp_ratio: float = 4.0, drop_path_rate: float = 0.3):
        super().__init__()
        self._build_swin(embed_dim, depths, num_heads, window_size, patch_size, mlp_ratio,
                         drop_path_rate)

    def _build_swin(self, embed_dim, depths, num_heads, window_size, patch_size, mlp_ratio,
                    drop_path_rate) -> None:
        """Register ``patch_embed``, ``layers`` and ``norm0..3`` (shared with subclasses)."""
        n = len(depths)
        self.channels = [int(embed_dim * 2 ** i) for i in range(n)]
        self.reductions = [patch_size * 2 ** i for i in range(n)]
        self.window_size = window_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        self.layers = nn.ModuleList()
        for i in range(n):
            start = sum(depths[:i])
            self.layers.append(BasicLayer(
                self.channels[i], depths[i], num_heads[i], window_size,
                dpr[start:start + depths[i]], downsample=i < n - 1, mlp_ratio=mlp_ratio))
        for i in range(n):
            self.add_module(f'norm{i}', nn.LayerNorm(self.channels[i]))
        self.apply(_init_swin_weights)

    def embed(self, x: torch.Tensor):
        """(B,3,H,W) -> (tokens (B, h*w, C), h, w) with h, w = ceil(H/4), ceil(W/4)."""
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), int(h), int(w)

    def run_stage(self, i: int, tokens: torch.Tensor, h: int, w: int):
        """Run stage ``i``; return (normalised NCHW feature, next tokens, next h, next w)."""
        out, tokens, nh, nw = self.layers[i](tokens, h, w)
        out = getattr(self, f'norm{i}')(out)
        feat = out.view(-1, h, w, self.channels[i]).permute(0, 3, 1, 2).contiguous()
        return feat, tokens, nh, nw

    def forward_swin(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) -> four (B, channels[i], ~H/reductions[i], ~W/reductions[i]) features."""
        tokens, h, w = self.embed(x)
        feats = []
        for i in range(len(self.layers)):
            feat, tokens, h, w = self.run_stage(i, tokens, h, w)
            feats.append(feat)
        return feats

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Same as :meth:`forward_swin`."""
        return self.forward_swin(x)


def _init_swin_weights(m: nn.Module) -> None:
    """Swin's initialisation: Linear trunc-normal(0.02), zero bias; LayerNorm 1/0."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
