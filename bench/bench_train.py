#!/usr/bin/env python3
"""Training throughput benchmark; prints a markdown report.

* CUDA: optimiser steps/s of ``large07`` at 352x1120, batch 4, FP32 vs AMP (bf16 and fp16)
  side by side, with peak GPU memory.
* CPU: steps/s of ``nano07`` (and ``tiny07`` at a small size).
* Data: samples/s of the real KITTI-format loader (on generated synthetic frames) with the
  worker count of ``config/train_synthetic.yaml``, against the samples/s the step rate needs.

Each timing runs the trainer's own ``Trainer.train_step`` (both branches, the six losses,
backward, Adam), alternating even/odd steps as training does.

Usage: ``python bench/bench_train.py [--quick] [--steps N] [--no-data]``
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import torch

from urcdc_depth_ros.config import KITTI_FOCAL_PX, KITTI_MAX_DEPTH_M

logger = logging.getLogger(__name__)


class RandomDepthSet(torch.utils.data.Dataset):
    """Random normalised images and depth maps (metres), all in memory."""

    def __init__(self, n: int, height: int, width: int,
                 max_depth: float = KITTI_MAX_DEPTH_M) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, height, width, generator=gen)
        self.depths = torch.rand(n, 1, height, width, generator=gen) * (max_depth - 2) + 1.5

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return {'image': self.images[i], 'depth': self.depths[i], 'focal': KITTI_FOCAL_PX}


def _config(variant: str, height: int, width: int, batch: int, amp: str, device: str,
            workdir: str):
    from urcdc_training.config import TrainConfig
    return TrainConfig.from_dict({
        'variant': variant, 'batch_size': batch, 'amp': amp, 'device': device,
        'checkpoint_dir': workdir, 'tensorboard_dir': '', 'resume': 'never',
        'max_steps': 1000, 'eval_every': 0, 'checkpoint_every': 0,
        'data': {'input_height': height, 'input_width': width}})


def bench_steps(variant: str, height: int, width: int, batch: int, amp: str, device: str,
                steps: int, warmup: int) -> dict:
    """Steps/s (and peak CUDA memory, GiB) of Trainer.train_step."""
    from urcdc_training.trainer import Trainer
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(variant, height, width, batch, amp, device, tmp)
        data = RandomDepthSet(batch, height, width)
        trainer = Trainer(cfg, train_dataset=data)
        batch_t = {'image': data.images, 'depth': data.depths}
        cuda = trainer.device.type == 'cuda'
        for i in range(warmup):
            trainer.train_step(batch_t, i)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(steps):
            trainer.train_step(batch_t, i)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float('nan')
        trainer.close()
    return {'steps_per_s': steps / dt, 'images_per_s': steps * batch / dt, 'peak_gib': peak}


def bench_loader(quick: bool) -> dict:
    """Samples/s of the training loader on generated frames, with the synthetic config."""
    from urcdc_training.config import TrainConfig
    from urcdc_training.datasets import build_dataset
    from urcdc_training.synthetic import generate_dataset
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.load(os.path.join(root, 'config', 'train_synthetic.yaml'),
                               [f'checkpoint_dir={tmp}/run'])
        frames = 4 if quick else 10
        info = generate_dataset(os.path.join(tmp, 'data'), drives=2, frames=frames, seed=0,
                                width=cfg.data.kb_crop_width + 16,
                                height=cfg.data.kb_crop_height + 16, test_drives=1)
        cfg = TrainConfig.from_yaml_text(cfg.to_yaml(), [
            f'data.data_path={info.raw_path}', f'data.gt_path={info.gt_path}',
            f'data.filenames_file={info.train_split}',
            f'data.filenames_file_eval={info.test_split}'])
        data = build_dataset(cfg.data, mode='train')
        workers = int(cfg.data.num_workers)
        loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True,
                                             num_workers=workers, drop_last=True)
        n, t0 = 0, time.perf_counter()
        for _ in range(2 if quick else 4):
            for b in loader:
                n += b['image'].shape[0]
        dt = time.perf_counter() - t0
    return {'samples_per_s': n / dt, 'workers': workers, 'batch': cfg.batch_size,
            'size': f'{cfg.data.input_height}x{cfg.data.input_width}'}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='few steps, small sizes')
    parser.add_argument('--steps', type=int, default=None)
    parser.add_argument('--no-data', action='store_true', help='skip the loader benchmark')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    steps = args.steps or (3 if args.quick else 10)
    warmup = 1 if args.quick else 3
    out = ['# Training throughput (`bench/bench_train.py`)', '',
           f'torch {torch.__version__}, threads {torch.get_num_threads()}, '
           f'CUDA {"yes: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no"}'
           f', {steps} timed steps after {warmup} warm-up', '']
    rates = []
    if torch.cuda.is_available():
        out += ['| model | input | batch | precision | steps/s | images/s | peak GPU GiB |',
                '|---|---|---|---|---|---|---|']
        for amp in ('off', 'bf16', 'fp16'):
            r = bench_steps('large07', 352, 1120, 4, amp, 'cuda', steps, warmup)
            out.append(f'| large07 | 352x1120 | 4 | {"fp32" if amp == "off" else amp} | '
                       f'{r["steps_per_s"]:.2f} | {r["images_per_s"]:.1f} | '
                       f'{r["peak_gib"]:.1f} |')
            rates.append(r['images_per_s'])
    else:
        out += ['| model | input | batch | precision | steps/s | images/s |',
                '|---|---|---|---|---|---|']
        cases = [('nano07', 176, 608, 4), ('nano07', 64, 64, 2), ('tiny07', 64, 128, 1)]
        if args.quick:
            cases = [('nano07', 64, 64, 2), ('tiny07', 64, 64, 1)]
        for variant, h, w, b in cases:
            r = bench_steps(variant, h, w, b, 'off', 'cpu', steps, warmup)
            out.append(f'| {variant} | {h}x{w} | {b} | fp32 | {r["steps_per_s"]:.3f} | '
                       f'{r["images_per_s"]:.2f} |')
            rates.append(r['images_per_s'])
    if not args.no_data:
        d = bench_loader(args.quick)
        out += ['', '| loader (synthetic KITTI layout) | workers | samples/s | needed by the '
                'fastest step above |', '|---|---|---|---|',
                f'| {d["size"]}, batch {d["batch"]} | {d["workers"]} | '
                f'{d["samples_per_s"]:.1f} | {max(rates):.1f} |']
    sys.stdout.write('\n'.join(out) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
