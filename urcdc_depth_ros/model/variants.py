"""Model variants as data: ``VARIANTS[name]`` holds the architecture keyword arguments.

The window size of the Swin encoder is the name's last two digits (``large07`` -> 7). The
paper/official variants are ``tiny07``, ``base07``, ``base12`` and ``large07`` (the one the
official code trains). ``nano07`` is NOT from the paper: a small configuration of the same
architecture for CPU demos and small Jetsons; it has no published weights.
"""
from __future__ import annotations

import copy
from typing import Any

_DENSENET161 = dict(growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96)
_DECODER_OFFICIAL = dict(
    psp_channels=512, psp_gn_groups=256, pool_scales=(1, 2, 3, 6),
    crf_dims=(128, 256, 512, 1024), crf_heads=(4, 8, 16, 32), crf_window=7,
    cnn_decoder_channels=96, coupling_skip_prob=0.05)


def _swin(embed_dim: int, depths: tuple, num_heads: tuple, window: int) -> dict[str, Any]:
    return dict(embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=window,
                patch_size=4, mlp_ratio=4.0, drop_path_rate=0.3)


def _variant(swin: dict, densenet: dict = _DENSENET161, **decoder) -> dict[str, Any]:
    d = dict(_DECODER_OFFICIAL)
    d.update(decoder)
    return dict(swin=swin, densenet=dict(densenet), **d)


VARIANTS: dict[str, dict[str, Any]] = {
    'tiny07': _variant(_swin(96, (2, 2, 6, 2), (3, 6, 12, 24), 7)),
    'base07': _variant(_swin(128, (2, 2, 18, 2), (4, 8, 16, 32), 7)),
    'base12': _variant(_swin(128, (2, 2, 18, 2), (4, 8, 16, 32), 12)),
    'large07': _variant(_swin(192, (2, 2, 18, 2), (6, 12, 24, 48), 7)),
    # NON-paper: ~1/4-width Transformer branch and a tiny DenseNet, for CPU demos and small
    # Jetsons (~4.9 M parameters). The CNN decoder is 16 wide (it must equal the DenseNet
    # stem width) because its heads run at full resolution and dominate CPU training time.
    'nano07': _variant(
        _swin(32, (1, 1, 2, 1), (1, 2, 4, 8), 7),
        densenet=dict(growth_rate=16, block_config=(2, 2, 2, 2), num_init_features=16),
        psp_channels=64, psp_gn_groups=32, crf_dims=(32, 64, 128, 256),
        crf_heads=(1, 2, 4, 8), cnn_decoder_channels=16),
}

PAPER_VARIANTS = ('tiny07', 'base07', 'base12', 'large07')

# keys a caller may override at the top level; 'swin'/'densenet' sub-keys by name too
_SWIN_KEYS = ('embed_dim', 'depths', 'num_heads', 'window_size', 'patch_size', 'mlp_ratio',
              'drop_path_rate')
_DENSENET_KEYS = ('growth_rate', 'block_config', 'num_init_features', 'bn_size')


def resolve_variant(name: str, **overrides: Any) -> dict[str, Any]:
    """Deep copy of ``VARIANTS[name]`` with ``overrides`` applied.

    Overrides may name top-level keys (``psp_channels=...``), Swin keys (``drop_path_rate=0``)
    or DenseNet keys (``growth_rate=...``). Raises ValueError for an unknown name or key.
    """
    if name not in VARIANTS:
        raise ValueError(f'unknown model variant {name!r}; choose one of {sorted(VARIANTS)}')
    cfg = copy.deepcopy(VARIANTS[name])
    for key, value in overrides.items():
        if key in _SWIN_KEYS:
            cfg['swin'][key] = value
        elif key in _DENSENET_KEYS:
            cfg['densenet'][key] = value
        elif key in cfg and key not in ('swin', 'densenet'):
            cfg[key] = value
        else:
            known = sorted([k for k in cfg if k not in ('swin', 'densenet')]
                           + list(_SWIN_KEYS) + list(_DENSENET_KEYS))
            raise ValueError(f'unknown override {key!r} for variant {name!r}; known: {known}')
    return cfg
