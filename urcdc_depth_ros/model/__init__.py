"""The URCDC-Depth network: variants as data, builder, checkpoints.

Public API::

    net = build_model('tiny07', max_depth=80.0)   # VARIANTS: tiny07 base07 base12 large07 nano07
    out = net(x)                                  # DepthOutput(depth, uncertainty, ...)
    meta = load_weights(net, 'ckpt.pth')          # project or official checkpoints
"""
from __future__ import annotations

from typing import Any

from ..config import KITTI_MAX_DEPTH_M
from .checkpoint import (infer_variant, init_backbones, load_weights, read_checkpoint,
                         save_checkpoint)
from .urcdc import DepthOutput, URCDCDepth
from .variants import PAPER_VARIANTS, VARIANTS, resolve_variant


def build_model(name: str, max_depth: float = KITTI_MAX_DEPTH_M,
                **overrides: Any) -> URCDCDepth:
    """Build variant ``name`` with random weights.

    Args:
        name: a key of :data:`VARIANTS`; anything else raises ValueError listing them.
        max_depth: depth range of the sigmoid heads, metres.
        overrides: architecture keys to change (see :func:`variants.resolve_variant`), e.g.
            ``drop_path_rate=0.0``.
    """
    if not max_depth > 0:
        raise ValueError(f'max_depth must be > 0 m, got {max_depth!r}')
    return URCDCDepth(name, resolve_variant(name, **overrides), max_depth=max_depth)


__all__ = ['VARIANTS', 'PAPER_VARIANTS', 'build_model', 'load_weights', 'save_checkpoint',
           'read_checkpoint', 'DepthOutput', 'URCDCDepth', 'init_backbones', 'infer_variant']
