"""Fleet evaluation on Ray against the sequential bag evaluator, same bags, same model.

    python bench/bench_fleet.py [--quick]

Full: 8 synthetic bags x 24 frames at half KITTI resolution (621 x 188), nano07 with random
weights exported to ONNX (network input 160 x 608), ONNX Runtime on the CPU. The sequential
run is ``evaluate_bag`` over the bags one after another in one process (ONNX Runtime with all
cores, its default); the Ray run is ``urcdc-fleet-eval``'s ``run_fleet`` with 2 workers
(one CPU and one ONNX Runtime thread each) on a local cluster, one 24-frame shard per
bag. Each run is its own process, so the peak-memory figures are clean. Goal: speed-up >= 1.7x
on a 2-core machine. ``--quick``: 2 bags x 4 frames at quarter resolution. Markdown goes to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'test'))

GOAL = 1.7


def _peak_mb() -> float:
    from urcdc_depth_ros.evaluation.fleet import peak_rss_mb
    return peak_rss_mb()


def run_sequential(bags: list[str], model: str) -> dict:
    """``evaluate_bag`` over each bag in turn; frames, wall seconds, peak RSS."""
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.evaluation import evaluate_bag
    t0 = time.perf_counter()
    est = DepthEstimator.from_model(model, 'onnxruntime')
    used = 0
    for bag in bags:
        used += evaluate_bag(bag, None, estimator=est, n_panels=0)['frames']['used']
    return {'frames': used, 'wall_s': time.perf_counter() - t0, 'peak_mb': _peak_mb()}


def run_ray(bags: list[str], model: str, out: str, shard_frames: int) -> dict:
    """``run_fleet`` with 2 workers on a local cluster; wall includes the cluster start."""
    from urcdc_depth_ros.evaluation.fleet import run_fleet
    from urcdc_depth_ros.evaluation.fleet_shards import estimator_from_model
    factory = estimator_from_model(model, threads=1)
    temp = tempfile.mkdtemp(prefix='rb', dir='/tmp')
    t0 = time.perf_counter()
    fleet = run_fleet(bags, out, factory, factory.identity(), workers=2,
                      shard_frames=shard_frames, ray_temp_dir=temp, write_report=False)
    return {'frames': fleet['overall']['used'], 'wall_s': time.perf_counter() - t0,
            'startup_s': fleet['run']['startup_s'], 'shards': fleet['run']['shards_total'],
            'worker_peak_mb': fleet['run']['worker_peak_rss_mb'],
            'driver_peak_mb': fleet['run']['driver_peak_rss_mb']}


def _child(role: str, bags: list[str], model: str, out: str, shard_frames: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), '--role', role, '--model', model,
           '--out', out, '--shard-frames', str(shard_frames), *bags]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{role} run failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    """Run the benchmark; markdown on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='2 bags x 4 frames, quarter size')
    p.add_argument('--role', choices=('seq', 'ray'), help=argparse.SUPPRESS)
    p.add_argument('--model', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    p.add_argument('--shard-frames', type=int, default=12, help=argparse.SUPPRESS)
    p.add_argument('bags', nargs='*', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == 'seq':
        print(json.dumps(run_sequential(args.bags, args.model)))
        return 0
    if args.role == 'ray':
        print(json.dumps(run_ray(args.bags, args.model, args.out, args.shard_frames)))
        return 0
    from fixtures.models import make_onnx_model

    from urcdc_depth_ros.kitti.to_bag import convert_drive
    from urcdc_training.synthetic import generate_dataset
    n_bags, frames, (w, h), (mh, mw), shard = (
        (2, 4, (310, 94), (64, 192), 2) if args.quick else (8, 24, (621, 188), (160, 608), 24))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = generate_dataset(os.path.join(tmp, 'synth'), drives=n_bags, frames=frames,
                                seed=0, width=w, height=h, test_drives=0)
        bags = [convert_drive(os.path.join(info.raw_path, info.date, d),
                              os.path.join(tmp, f'bag{i}'), progress=False)['path']
                for i, d in enumerate(info.drives)]
        model, _, _ = make_onnx_model(tmp, variant='nano07', height=mh, width=mw)
        setup_s = time.perf_counter() - t0
        seq = _child('seq', bags, model, '', shard)
        ray_run = _child('ray', bags, model, os.path.join(tmp, 'fleet'), shard)
    speedup = seq['wall_s'] / ray_run['wall_s']
    steady = seq['wall_s'] / max(ray_run['wall_s'] - ray_run['startup_s'], 1e-9)
    fps = seq['frames'] / seq['wall_s'], ray_run['frames'] / ray_run['wall_s']
    verdict = 'meets' if speedup >= GOAL else 'MISSES'
    lines = [f'### Fleet evaluation: {n_bags} bags x {frames} frames ({w} x {h}), nano07 '
             f'{mh} x {mw} ONNX Runtime CPU', '',
             f'Data and model set-up {setup_s:.0f} s (not timed below). Ray wall time includes '
             f'starting the local cluster and the actors ({ray_run["startup_s"]:.1f} s).', '',
             '| run | frames | wall (s) | frames/s | peak memory (MiB) |', '|---|---|---|---|---|',
             f'| sequential `evaluate_bag`, 1 process | {seq["frames"]} | {seq["wall_s"]:.1f} | '
             f'{fps[0]:.2f} | {seq["peak_mb"]:.0f} |',
             f'| Ray, 2 workers, {ray_run["shards"]} shards | {ray_run["frames"]} | '
             f'{ray_run["wall_s"]:.1f} | {fps[1]:.2f} | workers '
             f'{", ".join(f"{m:.0f}" for m in ray_run["worker_peak_mb"])}; driver '
             f'{ray_run["driver_peak_mb"]:.0f} |', '',
             f'Speed-up {speedup:.2f}x: {verdict} the {GOAL}x goal'
             + (' (quick mode: too few frames for the start-up to pay off)' if args.quick
                else '') + f'. Without the cluster start: {steady:.2f}x.', '']
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
