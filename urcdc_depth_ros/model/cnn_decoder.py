"""CNN decoder, GLP-style: 1x1 projections and three selective-feature-fusion (SFF) blocks.

Adapted from the official URCDC-Depth code (``networks/NewCRFDepth.py``, ``Decoder_CNN`` and
``SelectiveFeatureFusion``; MIT), which follows GLPDepth (Kim et al. 2022); bilinear x2
upsampling, stride 32 -> stride 1.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)


class SelectiveFeatureFusion(nn.Module):
    """Blend local and global (B, C, h, w) maps with two sigmoid attention maps."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.conv1 = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.BatchNorm2d(c),
                                   nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.BatchNorm2d(c // 2),
                                   nn.ReLU())
        self.conv3 = nn.Conv2d(c // 2, 2, 3, padding=1)

    def forward(self, x_local: torch.Tensor, x_global: torch.Tensor) -> torch.Tensor:
        """Two (B, C, h, w) maps -> (B, C, h, w)."""
        attn = torch.sigmoid(self.conv3(self.conv2(self.conv1(
            torch.cat((x_local, x_global), dim=1)))))
        return x_local * attn[:, 0:1] + x_global * attn[:, 1:2]


class GLPDecoder(nn.Module):
    """Decode four CNN features (strides 4, 8, 16, 32) to (B, channels, H, W).

    ``in_channels`` are the encoder widths at strides 4, 8, 16, 32; the stride-4 feature is
    fused directly, so its width must equal ``channels`` (as in the official model).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 96):
        super().__init__()
        c4, c8, c16, c32 = in_channels
        if c4 != channels:
            raise ValueError(f'CNN decoder width {channels!r} must equal the stride-4 encoder '
                             f'width {c4!r}; set cnn_decoder_channels={c4}')
        self.bot_conv = nn.Conv2d(c32, channels, 1)
        self.skip_conv1 = nn.Conv2d(c16, channels, 1)
        self.skip_conv2 = nn.Conv2d(c8, channels, 1)
        self.fusion1 = SelectiveFeatureFusion(channels)
        self.fusion2 = SelectiveFeatureFusion(channels)
        self.fusion3 = SelectiveFeatureFusion(channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """feats: [stride 4, 8, 16, 32] -> (B, channels, 4*h4, 4*w4)."""
        x4, x8, x16, x32 = feats
        out = _up2(self.bot_conv(x32))
        out = _up2(self.fusion1(self.skip_conv1(x16), out))
        out = _up2(self.fusion2(self.skip_conv2(x8), out))
        out = self.fusion3(x4, out)
        return _up2(_up2(out))
