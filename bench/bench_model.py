"""Benchmark the URCDC-Depth network: forward latency and peak memory per variant.

Usage: ``python bench/bench_model.py [--quick] [--size 352x1216] [--threads N]``.
Prints a markdown table. Each configuration runs in its own subprocess, so ``ru_maxrss`` is
that configuration's peak resident memory (model build included). Rows:

* ``transformer`` - the inference path (eval mode, Transformer branch only, official ``pred_d``
  and ``u1``), under ``torch.inference_mode``;
* ``both`` - eval with the CNN branch forced on (what the official evaluation computes).

docs/method.md §7 gives the official cost on a 2-core CPU at 1x3x352x1216 (both branches):
large07 about 10 s, tiny07 about 5 s. With CUDA, FP32 and FP16 rows are added.
``--quick`` runs nano07 and tiny07 once each.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

OFFICIAL_CPU_S = {'large07': 10.0, 'tiny07': 5.0}  # docs/method.md §7, both branches


def worker(args: argparse.Namespace) -> dict:
    """Build one variant, time ``runs`` forwards after one warm-up, return the numbers."""
    import torch

    from urcdc_depth_ros.model import build_model

    base_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = torch.float16 if args.dtype == 'fp16' else torch.float32
    net = build_model(args.variant).eval().to(device=device, dtype=dtype)
    h, w = args.height, args.width
    x = torch.randn(1, 3, h, w, device=device, dtype=dtype)
    with_cnn = args.mode == 'both'

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode():
        for i in range(args.runs + 1):
            sync()
            t0 = time.perf_counter()
            net(x, with_cnn=with_cnn)
            sync()
            if i > 0:  # the first run is warm-up
                times.append(time.perf_counter() - t0)
    out = dict(variant=args.variant, mode=args.mode, device=args.device, dtype=args.dtype,
               median_s=statistics.median(times), runs=len(times),
               rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               base_mib=base_mib)
    if device.type == 'cuda':
        out['gpu_mib'] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def run_config(variant: str, mode: str, device: str, dtype: str, runs: int,
               args: argparse.Namespace) -> dict | None:
    """Run one configuration in a fresh interpreter; None when it failed (stderr logged)."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', '--variant', variant,
           '--mode', mode, '--device', device, '--dtype', dtype, '--runs', str(runs),
           '--threads', str(args.threads), '--size', f'{args.height}x{args.width}']
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(f'{" ".join(cmd)} failed:\n{proc.stderr[-2000:]}\n')
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='nano07 and tiny07, one run each')
    ap.add_argument('--size', default='352x1216', help='input HxW (default KITTI 352x1216)')
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--variants', default='', help='comma-separated (default by --quick)')
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--variant', help=argparse.SUPPRESS)
    ap.add_argument('--mode', default='transformer', help=argparse.SUPPRESS)
    ap.add_argument('--device', default='cpu', help=argparse.SUPPRESS)
    ap.add_argument('--dtype', default='fp32', help=argparse.SUPPRESS)
    ap.add_argument('--runs', type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.height, args.width = (int(v) for v in args.size.lower().split('x'))
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    import torch
    if args.variants:
        variants = [v.strip() for v in args.variants.split(',') if v.strip()]
    else:
        variants = ['nano07', 'tiny07'] if args.quick else ['nano07', 'tiny07', 'large07']
    runs = {'nano07': 5, 'tiny07': 5, 'large07': 4}
    configs = []
    for v in variants:
        n = 1 if args.quick else runs.get(v, 2)
        configs += [(v, 'transformer', 'cpu', 'fp32', n), (v, 'both', 'cpu', 'fp32', n)]
    if torch.cuda.is_available():
        for v in variants:
            n = 3 if args.quick else 20
            configs += [(v, 'transformer', 'cuda', 'fp32', n),
                        (v, 'transformer', 'cuda', 'fp16', n), (v, 'both', 'cuda', 'fp32', n)]
    rows = []
    for cfg in configs:
        sys.stderr.write(f'== {cfg}\n')
        res = run_config(*cfg, args)
        rows.append((cfg, res))

    print(f'## Model forward ({args.height}x{args.width}, batch 1, {args.threads} CPU '
          f'threads; median after 1 warm-up)\n')
    print('| variant | branches | device | dtype | latency (ms) | peak RSS (MiB) | '
          'RSS above imports (MiB) | peak GPU (MiB) | vs official CPU eval (§7) |')
    print('|---|---|---|---|---:|---:|---:|---:|---:|')
    for (variant, mode, device, dtype, _), res in rows:
        if res is None:
            print(f'| {variant} | {mode} | {device} | {dtype} | failed | | | | |')
            continue
        ref = OFFICIAL_CPU_S.get(variant) if device == 'cpu' else None
        ratio = f'{100 * res["median_s"] / ref:.0f} %' if ref else ''
        gpu = f'{res["gpu_mib"]:.0f}' if 'gpu_mib' in res else ''
        print(f'| {variant} | {mode} | {device} | {dtype} | {1000 * res["median_s"]:.0f} '
              f'(n={res["runs"]}) | {res["rss_mib"]:.0f} | '
              f'{res["rss_mib"] - res["base_mib"]:.0f} | {gpu} | {ratio} |')
    print('\n`transformer` is the inference path; `both` adds the DenseNet branch, coupling '
          'units and CNN decoder as the official evaluation does. nano07 is a non-paper '
          'variant. Official reference: large07 ~10 s, tiny07 ~5 s per both-branch forward '
          'on a 2-core CPU. "RSS above imports" subtracts the peak RSS after importing torch.')
    return 0 if all(r is not None for _, r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
