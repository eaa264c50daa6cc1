"""Data pipeline benchmark: synthetic generator and loader throughput (markdown table).

    python bench/bench_data.py [--quick] [--out DIR]

Generator: frames/s at full KITTI size (1242 x 375) on one core, as frames per CPU-second of
this process (and per wall-second). Loader: samples/s of ``build_dataset(..., 'train')`` with the
full augmentation at 352 x 1120 through a torch DataLoader (batch 1) for 0, 1 and 2 workers.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from urcdc_training.datasets import DataConfig, build_dataset  # noqa: E402
from urcdc_training.synthetic import generate_dataset  # noqa: E402

logger = logging.getLogger(__name__)


def bench_generator(out: str, frames: int) -> tuple[float, float, object]:
    """(frames per CPU-second, frames per wall-second, DatasetInfo) for one drive."""
    c0, w0 = time.process_time(), time.perf_counter()
    info = generate_dataset(out, drives=1, frames=frames, seed=0, test_drives=0)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return frames / cpu, frames / wall, info


def bench_loader(info, workers: int, samples: int) -> float:
    """Samples per wall-second of the augmented training loader."""
    cfg = DataConfig(data_path=info.raw_path, gt_path=info.gt_path,
                     filenames_file=info.train_split, num_workers=workers)
    ds = build_dataset(cfg, 'train')
    loader = DataLoader(ds, batch_size=1, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    n, start = 0, time.perf_counter()
    while n < samples:
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            continue
        n += 1
    return n / (time.perf_counter() - start)


def main(argv=None) -> int:
    """Run the benchmark and log a markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='few frames / samples')
    p.add_argument('--out', default=None, help='where to generate (default: a temp folder)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    torch.set_num_threads(1)
    frames, samples = (6, 12) if args.quick else (30, 60)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or os.path.join(tmp, 'synth')
        fps_cpu, fps_wall, info = bench_generator(out, frames)
        rows = [('generator, 1242x375, 1 process', f'{fps_cpu:.2f} frames/CPU-s',
                 f'{fps_wall:.2f} frames/s wall')]
        for workers in (0, 1, 2):
            rate = bench_loader(info, workers, samples)
            rows.append((f'loader train 352x1120, workers={workers}', f'{rate:.1f} samples/s',
                         f'{samples} samples'))
    lines = ['| what | rate | note |', '|---|---|---|']
    lines += [f'| {a} | {b} | {c} |' for a, b, c in rows]
    sys.stdout.write('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
