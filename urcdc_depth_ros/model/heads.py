"""Output heads of both branches (official names ``disp_head1``, ``last_layer_depth``...)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DispHead(nn.Module):
    """Transformer head: 3x3 conv -> sigmoid -> bilinear x``scale`` (align_corners False).

    (B, C, h, w) -> (B, 1, scale*h, scale*w) in [0, 1]; the depth head is multiplied by
    max_depth by the caller, the uncertainty head is used as is.
    """

    def __init__(self, input_dim: int, scale: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, 1, 3, padding=1)
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 1, scale*h, scale*w)."""
        x = torch.sigmoid(self.conv1(x))
        if self.scale > 1:
            size = (int(x.shape[-2]) * self.scale, int(x.shape[-1]) * self.scale)
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        return x


def cnn_head(channels: int) -> nn.Sequential:
    """CNN head body: 3x3 conv C->C, ReLU, 3x3 conv C->1 (sigmoid applied by the caller)."""
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=False),
                         nn.Conv2d(channels, 1, 3, padding=1))
