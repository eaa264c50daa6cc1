"""CNN encoder: torchvision DenseNet ``features``, run module by module in four segments.

The segments end at ``pool0`` (stride 4), ``transition1`` (8), ``transition2`` (16) and
``norm5`` (32), the points where the official code couples the CNN feature with the Swin
feature of the same scale.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models import DenseNet

SEGMENT_ENDS = ('pool0', 'transition1', 'transition2', 'norm5')


def build_densenet_features(growth_rate: int = 48, block_config: Sequence[int] = (6, 12, 36, 24),
                            num_init_features: int = 96, bn_size: int = 4) -> nn.Sequential:
    """torchvision DenseNet ``features`` (defaults: DenseNet-161), random weights."""
    net = DenseNet(growth_rate=growth_rate, block_config=tuple(block_config),
                   num_init_features=num_init_features, bn_size=bn_size)
    return net.features


def segment_channels(features: nn.Sequential) -> list[int]:
    """Channels of the four segment outputs (pool0, transition1, transition2, norm5)."""
    mods = dict(features.named_children())
    return [mods['conv0'].out_channels, mods['transition1'].conv.out_channels,
            mods['transition2'].conv.out_channels, mods['norm5'].num_features]


def run_segment(features: nn.Sequential, i: int, x: torch.Tensor) -> torch.Tensor:
    """Run the modules of segment ``i`` (0..3) of ``features`` on ``x``."""
    names = [n for n, _ in features.named_children()]
    start = 0 if i == 0 else names.index(SEGMENT_ENDS[i - 1]) + 1
    stop = names.index(SEGMENT_ENDS[i]) + 1
    for name in names[start:stop]:
        x = getattr(features, name)(x)
    return x
