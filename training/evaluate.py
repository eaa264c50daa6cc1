"""Evaluation of a trained network with the official protocol (docs/method.md §5).

KB-cropped input -> Transformer depth (+ uncertainty), optionally flip-TTA fused -> placed back
in the full frame (zeros elsewhere, as the official script) -> predictions clamped to
[1e-3, max_depth], GT valid in (1e-3, max_depth) inside the Garg (KITTI) / NYU crop -> the nine
metrics of :mod:`urcdc_depth_ros.metrics`, averaged per image. Also per-depth-range rows (pooled
over pixels) and uncertainty quality: sparsification curves of the absolute relative error by
``1 - u`` vs the oracle, AUSE and AURG.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from urcdc_depth_ros.errors import CheckpointError, ConfigError, DataError
from urcdc_depth_ros.metrics import (DEPTH_RANGES_M, METRIC_NAMES, MetricAccumulator,
                                     ause_aurg, evaluate_depth, metrics_by_range,
                                     sparsification_curve, valid_mask)
from urcdc_depth_ros.tta import fuse_flip

logger = logging.getLogger(__name__)

SPARSIFICATION_STEPS = 20


def _gt_and_offsets(sample: dict, pred_hw: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """Full-frame GT (H, W) metres and where the network input sat in it (top, left)."""
    gt = sample.get('depth_full', sample.get('depth'))
    if gt is None:
        raise DataError(f'eval sample {sample.get("path")!r} has no depth ground truth')
    gt = np.asarray(gt.cpu() if torch.is_tensor(gt) else gt, np.float32).reshape(
        np.shape(gt)[-2:])
    top = int(_scalar(sample.get('crop_top', 0)))
    left = int(_scalar(sample.get('crop_left', 0)))
    if top + pred_hw[0] > gt.shape[0] or left + pred_hw[1] > gt.shape[1]:
        raise DataError(f'prediction {pred_hw} at ({top}, {left}) does not fit in the '
                        f'ground truth {gt.shape}; check the eval crop settings')
    return gt, top, left


def _scalar(value) -> float:
    if torch.is_tensor(value):
        return float(value.reshape(-1)[0])
    if isinstance(value, (list, tuple, np.ndarray)):
        return float(np.asarray(value).reshape(-1)[0])
    return float(value)


@torch.no_grad()
def predict(model: torch.nn.Module, image: torch.Tensor, flip_tta: bool = False,
            amp: str = 'off') -> tuple[torch.Tensor, torch.Tensor]:
    """Transformer-branch depth and confidence of a batch, optionally flip-TTA fused.

    Args:
        model: network in eval mode (its forward returns ``.depth`` and ``.uncertainty``).
        image: (B, 3, H, W) normalised, on the model's device.
    Returns:
        depth (B, 1, H, W) metres and confidence (B, 1, H, W) in [0, 1], float32.
    """
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(amp)
    with torch.autocast(image.device.type, dtype=dtype or torch.float32,
                        enabled=dtype is not None):
        out = model(image)
        depth, unc = out.depth.float(), out.uncertainty.float()
        if flip_tta:
            out_f = model(torch.flip(image, dims=[-1]))
            depth = fuse_flip(depth, torch.flip(out_f.depth.float(), dims=[-1]))
            unc = fuse_flip(unc, torch.flip(out_f.uncertainty.float(), dims=[-1]))
    return depth, unc


def evaluate_model(model: torch.nn.Module, dataset, *, max_depth: float,
                   min_depth: float = 1e-3, crop: str | None = 'garg', flip_tta: bool = False,
                   device: torch.device | str = 'cpu', amp: str = 'off',
                   max_images: int | None = None, uncertainty: bool = True,
                   progress: bool = True, num_workers: int = 0) -> dict[str, Any]:
    """Evaluate ``model`` (Transformer branch) on an eval-mode data set.

    Args:
        model: the network; it is put in eval mode (callers restore train mode).
        dataset: items as ``build_dataset(cfg, mode='eval')`` gives them: 'image' (3, h, w)
            normalised network input, full-frame GT 'depth_full' (or 'depth') (1, H, W) metres,
            'crop_top'/'crop_left' where the input sits in the frame, 'has_valid_depth'.
        max_depth, min_depth: evaluation range, metres.
        crop: 'garg', 'eigen', 'nyu' or None.
        max_images: evaluate only the first N images (None = all).
        uncertainty: also collect per-depth-range rows and sparsification/AUSE/AURG.
    Returns:
        {'metrics': the nine metrics (per-image mean), 'n_images', 'n_skipped', and with
        ``uncertainty``: 'ranges' {'0-10': {...}, ...}, 'uncertainty' {'ause', 'aurg',
        'fractions', 'model_curve', 'oracle_curve'}}.
    """
    from urcdc_depth_ros.progress import progress_bar
    device = torch.device(device)
    model.eval()
    n = len(dataset) if not max_images else min(max_images, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(n))
    loader = DataLoader(subset, batch_size=1, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))  # reason: no global RNG
    acc = MetricAccumulator()
    skipped = 0
    pooled: dict[str, list[np.ndarray]] = {'pred': [], 'gt': [], 'err': [], 'unc': []}
    for batch in progress_bar(loader, total=n, disable=not progress, unit='img',
                              desc='eval'):
        if 'has_valid_depth' in batch and not bool(_scalar(batch['has_valid_depth'])):
            skipped += 1
            continue
        image = batch['image'].to(device)
        depth, conf = predict(model, image, flip_tta, amp)
        d = depth[0, 0].cpu().numpy()
        c = conf[0, 0].cpu().numpy()
        sample = {k: (v[0] if torch.is_tensor(v) else v) for k, v in batch.items()}
        gt, top, left = _gt_and_offsets(sample, d.shape)
        pred_full = np.zeros_like(gt)
        conf_full = np.zeros_like(gt)
        pred_full[top:top + d.shape[0], left:left + d.shape[1]] = d
        conf_full[top:top + d.shape[0], left:left + d.shape[1]] = c
        metrics = evaluate_depth(pred_full, gt, min_depth, max_depth, crop)
        if metrics['n'] == 0:
            skipped += 1
            continue
        acc.add(metrics)
        if uncertainty:
            mask = valid_mask(gt, min_depth, max_depth, crop)
            p = np.clip(pred_full[mask], min_depth, max_depth)
            g = gt[mask]
            pooled['pred'].append(p.astype(np.float32))
            pooled['gt'].append(g.astype(np.float32))
            pooled['err'].append((np.abs(p - g) / g).astype(np.float32))
            pooled['unc'].append((1.0 - conf_full[mask]).astype(np.float32))
    result: dict[str, Any] = {'metrics': acc.mean(), 'n_images': acc.count,
                              'n_skipped': skipped}
    if uncertainty:
        cat = {k: (np.concatenate(v) if v else np.zeros(0, np.float32))
               for k, v in pooled.items()}
        result['ranges'] = metrics_by_range(cat['pred'], cat['gt'], DEPTH_RANGES_M)
        fractions, model_curve, oracle_curve = sparsification_curve(
            cat['err'], cat['unc'], SPARSIFICATION_STEPS)
        result['uncertainty'] = {
            **ause_aurg(cat['err'], cat['unc'], SPARSIFICATION_STEPS),
            'error': 'abs_rel', 'uncertainty': '1 - u',
            'fractions': fractions.tolist(), 'model_curve': model_curve.tolist(),
            'oracle_curve': oracle_curve.tolist()}
    return result


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of the metrics, per-range rows and AUSE/AURG."""
    head = '| rows | ' + ' | '.join(METRIC_NAMES) + ' | n |'
    lines = [head, '|' + '---|' * (len(METRIC_NAMES) + 2)]
    m = result['metrics']
    lines.append('| all (per image) | ' + ' | '.join(f'{m[k]:.4f}' for k in METRIC_NAMES)
                 + f' | {result["n_images"]} img |')
    for name, row in result.get('ranges', {}).items():
        lines.append(f'| {name} m | ' + ' | '.join(f'{row[k]:.4f}' for k in METRIC_NAMES)
                     + f' | {row["n"]} px |')
    if 'uncertainty' in result:
        u = result['uncertainty']
        lines.append('')
        lines.append(f'uncertainty (abs_rel by 1-u): AUSE {u["ause"]:.4f}, '
                     f'AURG {u["aurg"]:.4f}')
    return '\n'.join(lines)


def plot_sparsification(result: dict[str, Any], path: str) -> None:
    """PNG of the model and oracle sparsification curves (normalised abs_rel)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    u = result['uncertainty']
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(u['fractions'], u['model_curve'], label=f'model (AUSE {u["ause"]:.3f})')
    ax.plot(u['fractions'], u['oracle_curve'], '--', label='oracle')
    ax.axhline(1.0, color='grey', lw=0.8, label=f'random (AURG {u["aurg"]:.3f})')
    ax.set_xlabel('fraction of pixels removed (most uncertain first)')
    ax.set_ylabel('abs_rel (normalised)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _resolve_device(device: str) -> torch.device:
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'device={device!r} but CUDA is not available; use device=cpu')
    return torch.device(device)


def evaluate_checkpoint(checkpoint: str, config=None, split: str = 'eval',
                        flip_tta: bool = False, out_dir: str | None = None,
                        device: str = 'auto', max_images: int | None = None,
                        overrides: Sequence[str] = (), progress: bool = True,
                        num_workers: int | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint; optionally write ``metrics.json`` and ``sparsification.png``.

    Args:
        checkpoint: a checkpoint written by the trainer (or ``save_checkpoint``).
        config: TrainConfig, a YAML path, or None (use the config embedded in the checkpoint).
        split: ``'eval'`` (``data.filenames_file_eval``) or a path to a filenames file.
        flip_tta: fuse predictions of the image and its mirror (official protocol).
        out_dir: where to write the JSON and PNG (None: nothing written).
        overrides: ``key=value`` overrides applied to the config.
    Returns:
        the dict of :func:`evaluate_model` plus 'checkpoint', 'flip_tta', 'meta', 'crop'.
    """
    from urcdc_depth_ros.model import build_model, load_weights, read_checkpoint

    from .config import TrainConfig
    from .datasets import build_dataset
    ckpt = read_checkpoint(checkpoint)
    if config is None:
        text = ckpt.get('train_config') if isinstance(ckpt, dict) else None
        if not text:
            raise ConfigError(f'{checkpoint!r} embeds no training config; pass --config')
        cfg = TrainConfig.from_yaml_text(text, list(overrides) + ['resume=never'])
    elif isinstance(config, TrainConfig):
        cfg = TrainConfig.from_yaml_text(config.to_yaml(), list(overrides) + ['resume=never'])
    else:
        cfg = TrainConfig.load(str(config), list(overrides) + ['resume=never'])
    if split != 'eval':
        if not os.path.isfile(split):
            raise ConfigError(f"split={split!r}: use 'eval' or the path of a filenames file")
        cfg = TrainConfig.from_yaml_text(cfg.to_yaml(), [f'data.filenames_file_eval={split}'])
    if not getattr(cfg.data, 'filenames_file_eval', None):
        raise ConfigError('the config names no eval split (data.filenames_file_eval); set it '
                          'or pass --split FILE')
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    from urcdc_depth_ros.config import ModelMeta
    if meta is not None and not isinstance(meta, ModelMeta):
        meta = ModelMeta.from_dict(meta)
    variant = meta.variant if meta is not None else cfg.variant
    max_depth = meta.max_depth if meta is not None else cfg.max_depth
    dev = _resolve_device(device)
    arch_kwargs = {k: v for k, v in cfg.model_kwargs.items()
                   if k not in ('drop_path_rate', 'coupling_skip_prob')}
    try:
        net = build_model(variant, max_depth=max_depth, **arch_kwargs)
    except ValueError as exc:
        raise CheckpointError(f'{checkpoint!r}: cannot build variant {variant!r}: {exc}') \
            from exc
    load_weights(net, ckpt)
    net.to(dev).eval()
    dataset = build_dataset(cfg.data, mode='eval')
    workers = int(getattr(cfg.data, 'num_workers', 0)) if num_workers is None else num_workers
    result = evaluate_model(net, dataset, max_depth=max_depth, crop=cfg.eval_crop_name(),
                            flip_tta=flip_tta, device=dev, max_images=max_images,
                            uncertainty=True, progress=progress, num_workers=workers)
    result.update(checkpoint=os.path.abspath(checkpoint), flip_tta=flip_tta,
                  crop=cfg.eval_crop_name(), max_depth=max_depth,
                  meta=meta.to_dict() if meta is not None else None)
    logger.info('%s\n%s', checkpoint, format_table(result))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, 'metrics.json'), 'w', encoding='utf-8') as f:
            json.dump(result, f, indent=2, default=float)
        plot_sparsification(result, os.path.join(out_dir, 'sparsification.png'))
        logger.info('wrote %s and sparsification.png', os.path.join(out_dir, 'metrics.json'))
    return result


__all__ = ['evaluate_model', 'evaluate_checkpoint', 'predict', 'format_table',
           'plot_sparsification']
