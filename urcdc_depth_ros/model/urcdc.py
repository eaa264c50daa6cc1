"""URCDC-Depth network: Swin + NeWCRF Transformer branch, DenseNet + GLP CNN branch.

Reads like the paper's figure::

    x ──pad──► Swin stage i ──norm_i──► feats[i] ─────────────► PSP ─► NeWCRF 3..0 ─► heads
                                         │ (detached)                  (PixelShuffle x2)
    x_cnn ─pad─► DenseNet segment i ─► coupling i ─► ... ─► GLP decoder ─► CNN heads

In eval mode only the upper (Transformer) path runs; its outputs do not depend on the CNN
branch, so skipping it changes nothing (official ``pred_d``/``u1``).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import KITTI_MAX_DEPTH_M
from ..errors import InputError
from .cnn_decoder import GLPDecoder
from .coupling import CoupledBackbone
from .heads import DispHead, cnn_head
from .newcrf import NeWCRF, PSP

PAD_MULTIPLE = 32  # total stride of both encoders


class DepthOutput(NamedTuple):
    """Network outputs, all (N, 1, H, W) float32 at the input size.

    depth: Transformer-branch depth, metres in (0, max_depth) (official ``pred_d``).
    uncertainty: Transformer-branch map in [0, 1] (official ``u1``). Despite the name it is
        HIGH where the prediction is reliable: it is trained toward exp(-5|gt-d|/(gt+d)), so
        ``-ln(u)/5`` estimates the relative error |gt-d|/(gt+d).
    depth_cnn, uncertainty_cnn: the CNN branch's maps (official ``pred_d2``, ``u2``), or None
        when the CNN branch did not run (eval mode).
    """

    depth: torch.Tensor
    uncertainty: torch.Tensor
    depth_cnn: Optional[torch.Tensor] = None
    uncertainty_cnn: Optional[torch.Tensor] = None


class URCDCDepth(nn.Module):
    """The full two-branch model; build it with :func:`urcdc_depth_ros.model.build_model`.

    Attributes:
        variant: variant name; max_depth: depth range of the sigmoid heads, metres;
        cfg: the resolved architecture dict (see ``variants.VARIANTS``).
    """

    def __init__(self, variant: str, cfg: dict[str, Any],
                 max_depth: float = KITTI_MAX_DEPTH_M):
        super().__init__()
        self.variant = variant
        self.max_depth = float(max_depth)
        self.cfg = cfg
        self.backbone = CoupledBackbone(cfg['swin'], cfg['densenet'], cfg['coupling_skip_prob'])
        swin_ch = self.backbone.channels
        dims, heads, win = cfg['crf_dims'], cfg['crf_heads'], cfg['crf_window']
        psp_ch = cfg['psp_channels']
        # value stream of stage i: PixelShuffle(2) of stage i+1 (dims/4); stage 3: the PSP map
        v_dims = [dims[1] // 4, dims[2] // 4, dims[3] // 4, psp_ch]
        for i in (3, 2, 1, 0):
            self.add_module(f'crf{i}', NeWCRF(swin_ch[i], dims[i], v_dims[i], win, heads[i]))
        self.decoder = PSP(swin_ch[3], psp_ch, cfg['pool_scales'], cfg['psp_gn_groups'])
        self.disp_head1 = DispHead(dims[0], scale=4)
        self.uncer_head1 = DispHead(dims[0], scale=4)
        self.decoder2 = GLPDecoder(self.backbone.cnn_channels, cfg['cnn_decoder_channels'])
        self.last_layer_depth = cnn_head(cfg['cnn_decoder_channels'])
        self.last_layer_uncer = cnn_head(cfg['cnn_decoder_channels'])

    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad right/bottom to multiples of 32 (static sizes; no-op when aligned)."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode='replicate')
        return x

    def decode_transformer(self, feats: list[torch.Tensor]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Swin features (strides 4..32) -> (depth m, uncertainty), (B,1,H,W) padded size."""
        e = self.crf3(feats[3], self.decoder(feats[3]))
        for i in (2, 1, 0):
            e = getattr(self, f'crf{i}')(feats[i], F.pixel_shuffle(e, 2))
        return self.disp_head1(e) * self.max_depth, self.uncer_head1(e)

    def decode_cnn(self, cnn_feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Coupled CNN features -> (depth m, uncertainty), (B,1,H,W) padded size."""
        out = self.decoder2(cnn_feats)
        depth = torch.sigmoid(self.last_layer_depth(out)) * self.max_depth
        return depth, torch.sigmoid(self.last_layer_uncer(out))

    def forward(self, x: torch.Tensor, x_cnn: torch.Tensor | None = None,
                with_cnn: bool | None = None) -> DepthOutput:
        """Predict depth and uncertainty.

        Args:
            x: (N,3,H,W) float32 ImageNet-normalised RGB, any H, W (padded to multiples of 32
                inside by edge replication, outputs cropped back).
            x_cnn: (N,3,H,W) input of the CNN branch (official ``imgs2``); default ``x``.
            with_cnn: run the CNN branch; default: only in training mode.
        Returns:
            :class:`DepthOutput` with (N,1,H,W) maps.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f'expected an (N,3,H,W) image tensor, got shape {tuple(x.shape)}')
        run_cnn = self.training if with_cnn is None else bool(with_cnn)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        xp = self._pad(x)
        if not run_cnn:
            depth, unc = self.decode_transformer(self.backbone.forward_swin(xp))
            return DepthOutput(depth[..., :h, :w], unc[..., :h, :w])
        if x_cnn is None:
            xc = xp
        elif x_cnn.shape != x.shape:
            raise InputError(f'x_cnn shape {tuple(x_cnn.shape)} differs from x shape '
                             f'{tuple(x.shape)}; pass the same-size image to both branches')
        else:
            xc = self._pad(x_cnn)
        feats, cnn_feats = self.backbone.forward_both(xp, xc)
        depth, unc = self.decode_transformer(feats)
        depth2, unc2 = self.decode_cnn(cnn_feats)
        return DepthOutput(depth[..., :h, :w], unc[..., :h, :w],
                           depth2[..., :h, :w], unc2[..., :h, :w])
