"""Fleet evaluation on Ray against the sequential bag evaluator, same bags, same model.

    python bench/bench_fleet.py [--quick]

Full: 8 synthetic bags x 24 frames at half KITTI resolution (621 x 188), nano07 with random
weights exported to ONNX (network input 160 x 608), ONNX Runtime on the CPU. The sequential
run is ``evaluate_bag`` over the bags one after another in one process (ONNX Runtime with all
cores, its default); the Ray run is ``urcdc-fleet-eval``'s ``run_fleet`` with 2 workers
(one CPU and one ONNX Runtime thread each) on a local cluster, one 24-frame shard per
bag. Each run is its own process, so the peak-memory figures are clean. Goal: speed-up >= 1.7x
on a 2-core machine. ``--quick``: 2 bags x 4 frames at quarter resolution. Markdown goes to stdout.

The Ray run does more per frame than ``evaluate_bag``: TAE/flicker against the previous
frame, uncertainty/range columns, worst-frame panels and the Parquet files. A third run,
``evaluate_shard`` over the same shards in one process with ONNX Runtime's default threads,
does exactly the Ray workers' work, so it is the like-for-like baseline; both speed-ups are
printed, each with and without Ray's fixed costs (cluster and actor start, shutdown).
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


def run_shards_sequential(bags: list[str], model: str, out: str, shard_frames: int) -> dict:
    """The Ray workers' work (``evaluate_shard``, same shards) in this one process."""
    from urcdc_depth_ros.evaluation.fleet_shards import evaluate_shard, plan_shards
    t0 = time.perf_counter()
    est = estimator_from_default_threads(model)
    shards, _ = plan_shards(bags, shard_frames, 'bench')
    used = sum(evaluate_shard(s, est, {}, out)['frames'] for s in shards)
    return {'frames': used, 'wall_s': time.perf_counter() - t0, 'peak_mb': _peak_mb()}


def estimator_from_default_threads(model: str):
    """The estimator as ``run_sequential`` builds it (ONNX Runtime's default threads)."""
    from urcdc_depth_ros.estimator import DepthEstimator
    return DepthEstimator.from_model(model, 'onnxruntime')


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
            'phases_s': fleet['run']['phases_s'],
            'worker_peak_mb': fleet['run']['worker_peak_rss_mb'],
            'driver_peak_mb': fleet['run']['driver_peak_rss_mb']}


def _busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat)."""
    with open('/proc/stat') as f:
        t = [int(x) for x in f.readline().split()[1:]]
    return (sum(t) - t[3] - t[4]) / os.sysconf('SC_CLK_TCK')


def _session_cpu_s(sid: int, seen: dict[int, float]) -> None:
    """Update ``seen`` {pid: CPU s} for every process of session ``sid`` (Ray's included)."""
    tick = os.sysconf('SC_CLK_TCK')
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat') as f:
                st = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(st[3]) == sid:
            seen[int(name)] = (int(st[11]) + int(st[12])) / tick


def _child(role: str, bags: list[str], model: str, out: str, shard_frames: int) -> dict:
    """One run in a fresh process; adds ``other_cores``: the CPU other processes took.

    The run gets its own session; every process in it (the Ray cluster's too, which outlive
    their parents' bookkeeping) is sampled every 0.2 s, and the machine's busy time beyond
    that is the other processes' load.
    """
    import threading
    cmd = [sys.executable, os.path.abspath(__file__), '--role', role, '--model', model,
           '--out', out, '--shard-frames', str(shard_frames), *bags]
    busy0, t0 = _busy_s(), time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            _session_cpu_s(proc.pid, seen)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    sampler.join()
    busy1, t1 = _busy_s(), time.time()
    if proc.returncode != 0:
        raise RuntimeError(f'{role} run failed:\n{stderr[-3000:]}')
    out = json.loads(stdout.strip().splitlines()[-1])
    out['other_cores'] = max(0.0, (busy1 - busy0 - sum(seen.values())) / max(t1 - t0, 1e-9))
    return out


def main(argv=None) -> int:
    """Run the benchmark; markdown on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='2 bags x 4 frames, quarter size')
    p.add_argument('--role', choices=('seq', 'shards', 'ray'), help=argparse.SUPPRESS)
    p.add_argument('--model', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    p.add_argument('--shard-frames', type=int, default=12, help=argparse.SUPPRESS)
    p.add_argument('bags', nargs='*', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == 'seq':
        print(json.dumps(run_sequential(args.bags, args.model)))
        return 0
    if args.role == 'shards':
        print(json.dumps(run_shards_sequential(args.bags, args.model, args.out,
                                               args.shard_frames)))
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
        like = _child('shards', bags, model, os.path.join(tmp, 'seq_shards'), shard)
        ray_run = _child('ray', bags, model, os.path.join(tmp, 'fleet'), shard)
    ph = ray_run['phases_s']
    fixed = ph.get('cluster_s', 0) + ph.get('actors_s', 0) + ph.get('shutdown_s', 0)
    steady_wall = max(ray_run['wall_s'] - fixed, 1e-9)
    speedup = seq['wall_s'] / ray_run['wall_s']
    verdict = 'meets' if speedup >= GOAL else 'MISSES'

    def row(name, r):
        return (f'| {name} | {r["frames"]} | {r["wall_s"]:.1f} | '
                f'{r["frames"] / r["wall_s"]:.2f} | {r["peak_mb"]:.0f} | '
                f'{r["other_cores"]:.2f} |')
    mem = (f'workers {", ".join(f"{m:.0f}" for m in ray_run["worker_peak_mb"])}; driver '
           f'{ray_run["driver_peak_mb"]:.0f}')
    lines = [f'### Fleet evaluation: {n_bags} bags x {frames} frames ({w} x {h}), nano07 '
             f'{mh} x {mw} ONNX Runtime CPU', '',
             f'Data and model set-up {setup_s:.0f} s (not timed below). Ray wall time includes '
             f'starting the local cluster and the actors and stopping the cluster.', '',
             'Last column: cores other processes kept busy during the run (a shared machine '
             'skews the figures when it is above ~0.1).', '',
             '| run | frames | wall (s) | frames/s | peak memory (MiB) | other load (cores) |',
             '|---|---|---|---|---|---|',
             row('sequential `evaluate_bag`, 1 process (no TAE, no Parquet)', seq),
             row('sequential `evaluate_shard`, 1 process (the workers\' work)', like),
             f'| Ray, 2 workers, {ray_run["shards"]} shards | {ray_run["frames"]} | '
             f'{ray_run["wall_s"]:.1f} | {ray_run["frames"] / ray_run["wall_s"]:.2f} | '
             f'{mem} | {ray_run["other_cores"]:.2f} |', '',
             'Ray run phases (s): ' + ', '.join(
                 f'{k[:-2].replace("_", " ")} {v:.2f}' for k, v in ph.items())
             + f'; fixed (cluster + actors + shutdown) {fixed:.1f} s.', '',
             '| speed-up of the Ray run over | with Ray\'s fixed costs | without them |',
             '|---|---|---|',
             f'| `evaluate_bag` (the goal\'s baseline; does less per frame) | {speedup:.2f}x | '
             f'{seq["wall_s"] / steady_wall:.2f}x |',
             f'| `evaluate_shard` in one process (like for like) | '
             f'{like["wall_s"] / ray_run["wall_s"]:.2f}x | {like["wall_s"] / steady_wall:.2f}x |',
             '', f'Speed-up {speedup:.2f}x over `evaluate_bag`: {verdict} the {GOAL}x goal'
             + (' (quick mode: too few frames for the start-up to pay off)' if args.quick
                else '') + '.', '']
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
