"""Checkpoints: atomic save, safe read, strict load of project and official files.

Accepted layouts for :func:`load_weights`:

* project checkpoints ``{'model': state_dict, 'meta': ModelMeta.to_dict(), ...}``;
* official training checkpoints ``{'global_step', 'model', 'optimizer', ...}`` whose keys start
  with ``module.`` (DDP wrapper);
* bare state_dicts, with or without ``module.``.

A checkpoint that does not fit the network raises :class:`CheckpointError` naming offending
keys and the variant the file most likely holds; nothing is ever partially loaded.
"""
from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from typing import Any, Mapping

import torch
from torch import nn

from ..config import ModelMeta
from ..errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

_FAMILIES = {32: 'nano', 96: 'tiny', 128: 'base', 192: 'large'}
_SHOW = 5  # offending keys quoted in an error message


def save_checkpoint(path: str | os.PathLike, net: nn.Module, meta: ModelMeta,
                    **extra: Any) -> None:
    """Write ``{'model': state_dict, 'meta': meta.to_dict(), **extra}`` atomically.

    The file is written to a temporary name in the same folder and moved into place with
    ``os.replace``, so a crash never leaves a truncated checkpoint.
    """
    variant = getattr(net, 'variant', None)
    if variant is not None and meta.variant != variant:
        raise CheckpointError(f'meta.variant={meta.variant!r} but the network is {variant!r}; '
                              f'pass ModelMeta(variant={variant!r}, ...)')
    max_depth = getattr(net, 'max_depth', None)
    if max_depth is not None and not math.isclose(meta.max_depth, max_depth):
        raise CheckpointError(f'meta.max_depth={meta.max_depth!r} but the network has '
                              f'max_depth={max_depth!r}; make them agree')
    for key in ('model', 'meta'):
        if key in extra:
            raise CheckpointError(f'extra key {key!r} is reserved by save_checkpoint')
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = {'model': net.state_dict(), 'meta': meta.to_dict(), **extra}
    fd, tmp = tempfile.mkstemp(prefix='.tmp_ckpt_', suffix='.pth', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)`` on CPU; CheckpointError when unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file {path!r} does not exist; check the path')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: B902 - torch raises many types for corrupt files
        raise CheckpointError(
            f'cannot read checkpoint {path!r} ({type(exc).__name__}: {exc}); the file is '
            'corrupt, truncated or not a torch checkpoint (weights_only=True refuses pickled '
            'objects beyond tensors and plain containers)') from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f'checkpoint {path!r} holds a {type(obj).__name__}, expected a '
                              'dict (a state_dict or {"model": state_dict, ...})')
    return obj


def extract_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """State dict inside a checkpoint (``model``/``state_dict`` entry), ``module.`` removed."""
    sd = obj
    for key in ('model', 'state_dict'):
        if isinstance(obj.get(key), Mapping):
            sd = obj[key]
            break
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'checkpoint entries {bad[:_SHOW]!r} are not tensors; expected a '
                              'state_dict or {"model": state_dict, ...}')
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in sd.items()}


def infer_variant(sd: Mapping[str, torch.Tensor]) -> str | None:
    """Best guess of the variant a state_dict holds, from Swin width and window size."""
    embed = sd.get('backbone.patch_embed.proj.weight')
    table = sd.get('backbone.layers.0.blocks.0.attn.relative_position_bias_table')
    if embed is None or table is None or embed.ndim != 4 or table.ndim != 2:
        return None
    width = int(embed.shape[0])
    window = int(round((math.sqrt(table.shape[0]) + 1) / 2))
    family = _FAMILIES.get(width, f'swin-width-{width}')
    return f'{family}{window:02d}'


def _mismatch_report(net_sd: Mapping[str, torch.Tensor],
                     sd: Mapping[str, torch.Tensor]) -> list[str]:
    missing = [k for k in net_sd if k not in sd]
    unexpected = [k for k in sd if k not in net_sd]
    shapes = [f'{k} {tuple(sd[k].shape)} vs model {tuple(net_sd[k].shape)}'
              for k in net_sd if k in sd and sd[k].shape != net_sd[k].shape]
    parts = []
    for label, items in (('missing keys', missing), ('unexpected keys', unexpected),
                         ('shape mismatches', shapes)):
        if items:
            more = f' (+{len(items) - _SHOW} more)' if len(items) > _SHOW else ''
            parts.append(f'{len(items)} {label}: {items[:_SHOW]}{more}')
    return parts


def load_weights(net: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, Any]
                 ) -> ModelMeta | None:
    """Load a project or official checkpoint into ``net`` (strict); return its ModelMeta.

    Returns None for files without metadata (official checkpoints, bare state_dicts). When the
    metadata's ``max_depth`` differs from the network's, the network adopts the checkpoint's
    (logged). Raises CheckpointError when the file cannot be read or does not fit.
    """
    if isinstance(path_or_state_dict, Mapping):
        obj, where = dict(path_or_state_dict), 'state_dict'
    else:
        where = repr(os.fspath(path_or_state_dict))
        obj = read_checkpoint(path_or_state_dict)
    meta = None
    if isinstance(obj.get('meta'), Mapping):
        try:
            meta = ModelMeta.from_dict(obj['meta'])
        except ConfigError as exc:
            raise CheckpointError(f'checkpoint {where} has invalid metadata: {exc}') from exc
    sd = extract_state_dict(obj)
    variant = getattr(net, 'variant', None)
    guess = meta.variant if meta is not None else infer_variant(sd)
    net_sd = net.state_dict()
    problems = _mismatch_report(net_sd, sd)
    if meta is not None and variant is not None and meta.variant != variant:
        problems.insert(0, f'metadata says variant {meta.variant!r}')
    if problems:
        hint = (f'; it looks like a {guess!r} checkpoint: build_model({guess!r})'
                if guess and guess != variant else '')
        raise CheckpointError(f'checkpoint {where} does not fit variant {variant!r}: '
                              + '; '.join(problems) + hint)
    net.load_state_dict(sd, strict=True)
    if meta is not None and hasattr(net, 'max_depth') \
            and not math.isclose(meta.max_depth, net.max_depth):
        logger.warning('checkpoint %s was trained with max_depth=%.3g m; the network had '
                       '%.3g m and now uses the checkpoint value', where, meta.max_depth,
                       net.max_depth)
        net.max_depth = float(meta.max_depth)
    logger.info('loaded %d tensors from %s (variant %s)', len(sd), where, variant)
    return meta


# ---------------------------------------------------------------- ImageNet backbone weights
_OLD_DENSENET = re.compile(
    r'^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|'
    r'running_var|num_batches_tracked))$')


def _load_part(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str, path: str,
               ignore: tuple[str, ...] = ()) -> None:
    """Strictly load ``sd`` into ``module`` except keys matching ``ignore`` suffixes."""
    own = {k: v for k, v in module.state_dict().items() if not k.endswith(ignore)}
    sd = {k: v for k, v in sd.items() if k in own}
    problems = _mismatch_report(own, sd)
    if problems:
        raise CheckpointError(f'{what} weights {path!r} do not fit: ' + '; '.join(problems)
                              + f'; use {what} ImageNet weights matching the variant')
    module.load_state_dict(sd, strict=False)
    logger.info('initialised %s from %s (%d tensors)', what, path, len(sd))


def init_backbones(net: nn.Module, swin_path: str | os.PathLike | None = None,
                   densenet_path: str | os.PathLike | None = None) -> None:
    """Initialise the encoders from local ImageNet weights (before training).

    Args:
        swin_path: official Swin classification checkpoint (``{'model': ...}``; ``head``/
            ``norm``/``attn_mask`` entries ignored) of the variant's width and window size.
        densenet_path: torchvision DenseNet state_dict (``features.*``; old-style
            ``norm.1``-style names accepted; ``classifier`` ignored).
    Missing paths leave that encoder random, with a logged warning.
    """
    backbone = net.backbone
    if swin_path is None:
        logger.warning('no Swin ImageNet weights given: the Swin encoder of %s stays random; '
                       'training from scratch will be slow and worse',
                       getattr(net, 'variant', '?'))
    else:
        sd = extract_state_dict(read_checkpoint(swin_path))
        sd = {(k[len('backbone.'):] if k.startswith('backbone.') else k): v
              for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if k.startswith(('patch_embed.', 'layers.'))}
        swin_parts = nn.ModuleDict({'patch_embed': backbone.patch_embed,
                                    'layers': backbone.layers})
        _load_part(swin_parts, sd, 'Swin', os.fspath(swin_path),
                   ignore=('relative_position_index',))
    if densenet_path is None:
        logger.warning('no DenseNet ImageNet weights given: the DenseNet encoder of %s stays '
                       'random', getattr(net, 'variant', '?'))
    else:
        sd = extract_state_dict(read_checkpoint(densenet_path))
        out = {}
        for k, v in sd.items():
            k = k[len('features.'):] if k.startswith('features.') else k
            m = _OLD_DENSENET.match(k)
            out[m.group(1) + m.group(2) if m else k] = v
        # reason: pre-0.4 torchvision files have no num_batches_tracked (unused with momentum)
        _load_part(backbone.base_model, out, 'DenseNet', os.fspath(densenet_path),
                   ignore=('num_batches_tracked',))
