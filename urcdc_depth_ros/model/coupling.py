"""Coupling units and the coupled dual encoder (Swin + DenseNet) of URCDC-Depth.

A coupling unit fuses a CNN feature x (c channels) with the *detached*, normalised Swin feature
of the same scale (s channels); its output replaces the CNN feature for the rest of DenseNet:

    t = ReLU(BN_s(swin)); y = ReLU(BN_s(conv1x1(x))); y = ReLU(BN_s(conv3x3(y + t)))
    y = BN_c(conv1x1(y)); out = ReLU(y + x)

In training each unit is skipped (out = x) with probability ``skip_prob`` (0.05).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .densenet_branch import build_densenet_features, run_segment, segment_channels
from .swin import SwinTransformer


class CouplingUnit(nn.Module):
    """Fuse CNN (B, c, h, w) with Swin (B, s, h, w) -> (B, c, h, w). Convs have no bias."""

    def __init__(self, cnn_channels: int, swin_channels: int, skip_prob: float = 0.05):
        super().__init__()
        c, s = cnn_channels, swin_channels
        self.skip_prob = float(skip_prob)
        self.bn = nn.BatchNorm2d(s)
        self.conv1 = nn.Conv2d(c, s, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(s)
        self.conv2 = nn.Conv2d(s, s, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(s)
        self.conv3 = nn.Conv2d(s, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, swin: torch.Tensor) -> torch.Tensor:
        """x: CNN feature; swin: Swin feature (detached by the caller)."""
        if self.training and self.skip_prob > 0 and \
                float(torch.rand(())) < self.skip_prob:
            return x
        t = self.relu(self.bn(swin))
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y + t)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + x)


class CoupledBackbone(SwinTransformer):
    """Swin encoder with the DenseNet branch and coupling units beside it.

    Submodules (official names): ``base_model`` (DenseNet features), ``fusion1..4`` (coupling
    units), then the Swin parts ``patch_embed``, ``layers``, ``norm0..3``.
    :meth:`forward_swin` runs the Swin alone (inference); :meth:`forward_both` interleaves
    both encoders as the official training code does.
    """

    def __init__(self, swin: dict, densenet: dict, skip_prob: float = 0.05):
        nn.Module.__init__(self)
        # reason: registration order reproduces the official state_dict key order.
        self.base_model = build_densenet_features(**densenet)
        self.cnn_channels = segment_channels(self.base_model)
        embed, n = swin['embed_dim'], len(swin['depths'])
        swin_ch = [embed * 2 ** i for i in range(n)]
        for i in range(n):
            self.add_module(f'fusion{i + 1}',
                            CouplingUnit(self.cnn_channels[i], swin_ch[i], skip_prob))
        self._build_swin(embed, swin['depths'], swin['num_heads'], swin['window_size'],
                         swin.get('patch_size', 4), swin.get('mlp_ratio', 4.0),
                         swin.get('drop_path_rate', 0.3))

    def forward_both(self, x: torch.Tensor, x_cnn: torch.Tensor
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run both encoders with coupling.

        Args:
            x: (B,3,H,W) Swin input; x_cnn: (B,3,H,W) DenseNet input; H, W multiples of 32.
        Returns:
            (Swin features, coupled CNN features), four NCHW tensors each at strides 4..32.
        """
        tokens, h, w = self.embed(x)
        cnn = x_cnn
        feats: list[torch.Tensor] = []
        cnn_feats: list[torch.Tensor] = []
        for i in range(len(self.layers)):
            cnn = run_segment(self.base_model, i, cnn)
            feat, tokens, h, w = self.run_stage(i, tokens, h, w)
            feats.append(feat)
            cnn = getattr(self, f'fusion{i + 1}')(cnn, feat.detach())
            cnn_feats.append(cnn)
        return feats, cnn_feats

    @property
    def swin_channels(self) -> Sequence[int]:
        """Channels of the four Swin features."""
        return self.channels
