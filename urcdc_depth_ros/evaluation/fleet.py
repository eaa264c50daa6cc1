"""``urcdc-fleet-eval``: evaluate many bags in parallel on Ray, resumable, with temporal stability.

The command expands bag folders, globs and text files listing bags, splits every bag into
shards (:mod:`.fleet_shards`: bag, frame range) and hands them to Ray actors. Each actor
builds the estimator once and evaluates shards with the sequential evaluator's own code, so
per-frame metrics are identical to ``urcdc-bag-eval``'s. Bags are read where they lie (every
node must see the same paths); the driver holds only shard summaries, never frames.

* Each finished shard is ``--out/shards/<id>.parquet`` at once; a rerun with the same
  ``--out`` skips them and merges to the same result. Ray retries a shard whose worker died
  (the actor restarts and loads the model again); Ctrl-C keeps every finished shard.
* A corrupt bag, or one without LiDAR, TF or camera_info, is listed with its reason; the
  others go on. A cut-off MCAP is evaluated up to the cut (:mod:`.mcap_recover`).
* Outputs: ``frames.parquet`` (every frame of every bag), ``fleet.json`` (overall, per bag,
  per camera, per range, TAE/flicker, failures) and ``report.html`` (:mod:`.fleet_report`).

By default a local Ray cluster with all cores is started and stopped by the command;
``--ray-address auto|HOST:PORT`` joins a running one.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, DataError, UrcdcDepthError
from ..metrics import DEPTH_RANGES_M, METRIC_NAMES
from .fleet_shards import (EVAL_KEYS, Shard, estimator_from_model, evaluate_shard,
                           expand_bags, pixels_path, plan_shards, shard_done, shard_paths)

logger = logging.getLogger(__name__)

SHARD_FRAMES = 32  # default frames per shard
RETRIES = 3  # restarts of a dead worker, retries of its shard
POOL_MAX_PIXELS = 5_000_000  # pooled pixels of the overall uncertainty (seeded subset beyond)


class _Worker:
    """Ray actor body: one estimator, many shards."""

    def __init__(self, factory: Callable[[], Any], settings: dict, out_dir: str,
                 n_panels: int) -> None:
        self.estimator = factory()
        self.settings, self.out_dir, self.n_panels = settings, out_dir, n_panels

    def pid(self) -> int:
        """Process id of this worker."""
        return os.getpid()

    def evaluate(self, shard: Shard) -> dict:
        """See :func:`.fleet_shards.evaluate_shard`."""
        return evaluate_shard(shard, self.estimator, self.settings, self.out_dir,
                              self.n_panels)

    def peak_rss_mb(self) -> float:
        """Peak resident memory of this worker process, MiB."""
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB (``VmHWM``; ``ru_maxrss`` elsewhere).

    ``ru_maxrss`` survives ``exec`` on Linux (a child starts with its parent's peak), so the
    kernel's per-address-space high-water mark is read first.
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_fleet(bags: Sequence[str], out_dir: str, factory: Callable[[], Any], key: str,
              workers: int | None = None, ray_address: str | None = None,
              shard_frames: int = SHARD_FRAMES, settings: dict | None = None,
              n_panels: int = 4, ray_temp_dir: str | None = None,
              on_shard_done: Callable[[dict], None] | None = None,
              write_report: bool = True, runtime_env: dict | None = None) -> dict:
    """Evaluate ``bags`` on Ray; returns the fleet summary also written to ``fleet.json``.

    Args:
        bags: bag folders/files, globs or list files (:func:`.fleet_shards.expand_bags`).
        out_dir: output folder; finished shards in it are reused.
        factory: builds the estimator in each worker (picklable; see
            :func:`.fleet_shards.estimator_from_model`). key: its identity (model file and
            settings): shards of another key are not reused.
        workers: actors (default: the cluster's CPUs). ray_address: None starts a local
            cluster (stopped at the end); 'auto' or 'HOST:PORT' joins one.
        shard_frames: frames per shard. settings: evaluator settings (``EVAL_KEYS``,
            ``image_topic``, ``lidar_topic``). n_panels: worst frames kept per shard.
        ray_temp_dir: Ray's session folder for a local cluster (keep it short: unix socket
            paths are limited to about 100 characters).
        on_shard_done: called with each finished shard's summary (progress, tests).
        runtime_env: Ray runtime_env of this job (e.g. ``{'pip': [...]}`` or
            ``{'env_vars': {...}}``) so that every node can import the estimator.
    """
    import ray
    settings = dict(settings or {})
    paths = expand_bags(bags)
    if not paths:
        raise ConfigError('no bag given; pass bag folders, globs or a text file listing bags')
    os.makedirs(os.path.join(out_dir, 'shards'), exist_ok=True)
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    key = f'{key}|{json.dumps({k: settings.get(k) for k in sorted(settings)}, sort_keys=True)}'
    shards, bad_bags = plan_shards(paths, shard_frames, key, settings.get('image_topic'))
    todo = [s for s in shards if not shard_done(out_dir, s)]
    phases['plan_s'] = time.perf_counter() - t0
    logger.info('%d bags, %d shards (%d already done), %d unreadable bags', len(paths),
                len(shards), len(shards) - len(todo), len(bad_bags))
    started = False
    summaries: list[dict] = []
    interrupted = False
    worker_mem: list[float] = []
    startup_s = 0.0
    if todo:
        t_init = time.perf_counter()
        if ray_address is None:
            env = dict(runtime_env or {})
            env.setdefault('env_vars', {}).setdefault('OMP_NUM_THREADS', '1')
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     _temp_dir=ray_temp_dir, log_to_driver=False, runtime_env=env)
            started = True
        elif not ray.is_initialized():
            ray.init(address=ray_address, log_to_driver=False, runtime_env=runtime_env)
        phases['cluster_s'] = time.perf_counter() - t_init
        prev = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM = Ctrl-C
        try:
            n_workers = max(1, min(int(workers or ray.cluster_resources().get('CPU', 1)),
                                   len(todo)))
            actor_cls = ray.remote(num_cpus=1, max_restarts=RETRIES,
                                   max_task_retries=RETRIES)(_Worker)
            actors = [actor_cls.remote(factory, settings, os.path.abspath(out_dir), n_panels)
                      for _ in range(n_workers)]
            ray.get([a.pid.remote() for a in actors])   # every model loaded
            startup_s = time.perf_counter() - t_init
            phases['actors_s'] = startup_s - phases['cluster_s']
            t_run = time.perf_counter()
            summaries = _dispatch(ray, actors, todo, on_shard_done, out_dir)
            phases['shards_s'] = time.perf_counter() - t_run
            worker_mem = [float(m) for m in ray.get([a.peak_rss_mb.remote() for a in actors])]
        except KeyboardInterrupt:
            interrupted = True
            logger.warning('interrupted: finished shards are kept in %s; rerun the same '
                           'command to resume', os.path.join(out_dir, 'shards'))
        finally:
            signal.signal(signal.SIGTERM, prev)
            if started:
                t_stop = time.perf_counter()
                ray.shutdown()
                phases['shutdown_s'] = time.perf_counter() - t_stop
    if interrupted:
        raise KeyboardInterrupt
    t_merge = time.perf_counter()
    fleet = merge_shards(out_dir, shards, bad_bags)
    phases['merge_s'] = time.perf_counter() - t_merge
    fleet['run'] = {'workers': len(worker_mem), 'shards_total': len(shards),
                    'shards_run': len(summaries), 'shards_reused': len(shards) - len(todo),
                    'wall_s': time.perf_counter() - t0, 'startup_s': startup_s,
                    'phases_s': phases,
                    'worker_peak_rss_mb': worker_mem, 'driver_peak_rss_mb': peak_rss_mb(),
                    'warnings': sorted({w for s in summaries for w in s.get('warnings', [])})}
    with open(os.path.join(out_dir, 'fleet.json'), 'w') as f:
        json.dump(_json_clean(fleet), f, indent=1, allow_nan=False)
    if write_report:
        from .fleet_report import write_fleet_report
        write_fleet_report(out_dir, fleet)
    if not fleet['overall'].get('used'):
        raise DataError(f'no frame of {len(paths)} bag(s) could be evaluated; failures: '
                        f'{fleet["failed_bags"]!r} (report in {out_dir!r})')
    return fleet


def _dispatch(ray, actors: list, todo: list[Shard], on_shard_done, out_dir: str) -> list[dict]:
    """Keep every actor busy with one shard; collect the summaries as they finish.

    A shard whose task fails for good (an exception outside the evaluator's own errors, or a
    worker that died more than ``RETRIES`` times) is recorded as failed with the reason; a
    dead actor gets no more shards, and when none is left the rest fail with that reason.
    """
    from ray.exceptions import RayActorError, RayError
    queue = list(todo)
    running: dict[Any, tuple[Any, Shard]] = {}
    out: list[dict] = []
    for actor in actors:
        if queue:
            shard = queue.pop(0)
            running[actor.evaluate.remote(shard)] = (actor, shard)
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        ref = done[0]
        actor, shard = running.pop(ref)
        try:
            summary = ray.get(ref)
        except RayError as exc:
            summary = _task_failed(out_dir, shard, exc)
            if isinstance(exc, RayActorError):
                actor = None
                if not running:
                    out += [_task_failed(out_dir, s, exc) for s in queue]
                    queue = []
        out.append(summary)
        if summary['status'] != 'ok':
            logger.warning('shard %s failed: %s', summary['shard'], summary['reason'])
        if on_shard_done is not None:
            on_shard_done(summary)
        if queue and actor is not None:
            shard = queue.pop(0)
            running[actor.evaluate.remote(shard)] = (actor, shard)
    return out


def _task_failed(out_dir: str, shard: Shard, exc: Exception) -> dict:
    """Summary (and ``.failed.json``) of a shard whose Ray task failed for good."""
    last = (str(exc).strip().splitlines() or [''])[-1]
    reason = f'worker failed: {type(exc).__name__}: {last}'
    summary = {'shard': shard.shard_id, 'bag': shard.bag, 'lo': shard.lo, 'hi': shard.hi,
               'status': 'failed', 'reason': reason, 'frames': 0, 'warnings': []}
    with open(shard_paths(out_dir, shard)[1], 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


def read_frames(out_dir: str, shards: Sequence[Shard]):
    """The per-frame rows of every finished shard, sorted by (bag, index), as a pyarrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    tables = [pq.read_table(p) for p in (shard_paths(out_dir, s)[0] for s in shards)
              if os.path.exists(p)]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pa.table({'bag': pa.array([], pa.string()), 'index': pa.array([], pa.int64())})
    table = pa.concat_tables(tables, promote_options='permissive')
    return table.sort_by([('bag', 'ascending'), ('index', 'ascending')])


def _mean(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float('nan')


def _block(rows: dict[str, np.ndarray], sel: np.ndarray) -> dict[str, Any]:
    """Per-image mean metrics, uncertainty and stability of the ok frames in ``sel``."""
    ok = sel & (rows['status'] == 'ok')
    out: dict[str, Any] = {'frames': int(np.count_nonzero(sel)), 'used': int(np.count_nonzero(ok))}
    for k in METRIC_NAMES + ('coverage', 'unc_mean_m', 'abs_err_mean_m', 'ause', 'aurg',
                             'tae', 'flicker', 'model_ms'):
        out[k] = _mean(rows[k][ok]) if k in rows else float('nan')
    out['tae_pairs'] = int(np.count_nonzero(np.isfinite(rows['tae'][ok]))) \
        if 'tae' in rows else 0
    return out


def merge_shards(out_dir: str, shards: Sequence[Shard], bad_bags: dict[str, str]) -> dict:
    """Merge the shard Parquet files into ``frames.parquet`` and the fleet summary dict."""
    import pyarrow.parquet as pq
    table = read_frames(out_dir, shards)
    pq.write_table(table, os.path.join(out_dir, 'frames.parquet'))
    cols = {name: np.asarray(table.column(name).to_numpy(zero_copy_only=False))
            for name in table.column_names}
    n = table.num_rows
    everything = np.ones(n, bool)
    fleet: dict[str, Any] = {'overall': _block(cols, everything) if n else {}}
    failures: dict[str, str] = dict(bad_bags)
    for s in shards:
        failed = shard_paths(out_dir, s)[1]
        if os.path.exists(failed):
            with open(failed) as f:
                failures.setdefault(s.bag, json.load(f)['reason'])
    per_bag = {}
    for bag in sorted({s.bag for s in shards}):
        sel = cols['bag'] == bag if n else np.zeros(0, bool)
        if sel.any():
            per_bag[bag] = _block(cols, sel)
    fleet['per_bag'] = per_bag
    overall_u, per_bag_u = pooled_uncertainty(out_dir, shards)
    if fleet['overall']:
        fleet['overall'].update(_headline_uncertainty(overall_u), uncertainty=overall_u)
    for bag, block in per_bag_u.items():
        if bag in per_bag:
            per_bag[bag].update(_headline_uncertainty(block), uncertainty=block)
    fleet['per_camera'] = ({str(c): _block(cols, cols['camera'] == c)
                            for c in sorted(set(cols['camera'].tolist()))} if n else {})
    by_range = {}
    for lo, hi in DEPTH_RANGES_M:
        name = f'{lo:g}-{hi:g}'
        if n and f'range_{name}_n' in cols:
            cnt = np.nansum(cols[f'range_{name}_n'].astype(np.float64))
            by_range[name] = {
                'n': int(cnt),
                'abs_rel': float(np.nansum(cols[f'range_{name}_abs_rel_sum']) / cnt)
                if cnt else float('nan'),
                'rms': float(np.sqrt(np.nansum(cols[f'range_{name}_sq_err_sum']) / cnt))
                if cnt else float('nan')}
    fleet['by_range'] = by_range
    fleet['failed_bags'] = failures
    skip = {}
    if n:
        for r in cols['reason'][cols['status'] != 'ok'].tolist():
            skip[r] = skip.get(r, 0) + 1
    fleet['skip_reasons'] = skip
    fleet['bags'] = sorted({s.bag for s in shards} | set(bad_bags))
    return fleet


def _headline_uncertainty(block: dict) -> dict[str, float]:
    """The pooled figures shown as table columns (NaN when there is no uncertainty)."""
    keys = ('ause_abs_rel', 'aurg_abs_rel', 'aurg_margin_abs_m', 'calibration_error')
    return {k: block.get(k, float('nan')) for k in keys}


def pooled_uncertainty(out_dir: str, shards: Sequence[Shard], seed: int = 0
                       ) -> tuple[dict, dict[str, dict]]:
    """The sequential evaluator's uncertainty block, overall and per bag, from shard pixels.

    A bag's block is :func:`.bag_eval._uncertainty_block` (AUSE/AURG beside the oracle,
    random order and sigma = c * depth, margin, calibration error, mean predicted vs
    observed) on the bag's pooled pixels in frame order, which are the ones the sequential
    evaluator pools: its result equals ``urcdc-bag-eval``'s ``uncertainty`` for the same
    frames. The overall block pools every bag in path order; beyond ``POOL_MAX_PIXELS`` it
    takes a seeded subset of each bag (same fraction), so the driver's memory stays bounded.
    Returns ``(overall, {bag: block})``.
    """
    import pyarrow.parquet as pq
    from .bag_eval import _uncertainty_block
    files: dict[str, list[str]] = {}
    for s in sorted(shards, key=lambda s: (s.bag, s.lo)):
        path = pixels_path(shard_paths(out_dir, s)[0])
        if os.path.exists(path):
            files.setdefault(s.bag, []).append(path)
    total = sum(pq.read_metadata(p).num_rows for ps in files.values() for p in ps)
    keep = min(1.0, POOL_MAX_PIXELS / total) if total else 1.0
    per_bag: dict[str, dict] = {}
    parts: dict[str, list[np.ndarray]] = {'pred': [], 'gt': [], 'unc': []}
    kinds: set[str] = set()
    for i, (bag, paths) in enumerate(sorted(files.items())):
        tables = [pq.read_table(p) for p in paths]
        kinds |= {(t.schema.metadata or {}).get(b'uncertainty_kind', b'metres').decode()
                  for t in tables}
        arr = {k: np.concatenate([t.column(c).to_numpy() for t in tables])
               for k, c in (('pred', 'pred_m'), ('gt', 'gt_m'), ('unc', 'unc'))}
        per_bag[bag] = _uncertainty_block(_with_unc(arr), _one_kind(kinds, bag))[0]
        n = arr['pred'].size
        idx = np.sort(np.random.default_rng([seed, i]).choice(n, round(n * keep), replace=False)
                      ) if keep < 1.0 else slice(None)
        for k in parts:
            parts[k].append(arr[k][idx])
    if not per_bag:
        return {'available': False}, {}
    arr = {k: np.concatenate(v) for k, v in parts.items()}
    overall = _uncertainty_block(_with_unc(arr), _one_kind(kinds, 'the fleet'))[0]
    overall['pooled_fraction'] = keep
    return overall, per_bag


def _with_unc(arr: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The evaluator's pooled dict: ``unc_*`` only where the frame had uncertainty."""
    has = np.isfinite(arr['unc'])
    return {'pred': arr['pred'], 'gt': arr['gt'], 'unc': arr['unc'][has],
            'unc_pred': arr['pred'][has], 'unc_gt': arr['gt'][has]}


def _one_kind(kinds: set[str], where: str) -> str:
    if len(kinds) > 1:
        raise DataError(f'the shards of {where} hold different uncertainty kinds '
                        f'{sorted(kinds)}: evaluate one model per --out')
    return next(iter(kinds), 'metres')


def _json_clean(obj):
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``urcdc-fleet-eval``."""
    p = argparse.ArgumentParser(prog='urcdc-fleet-eval', description=__doc__.split('\n')[0])
    p.add_argument('bags', nargs='+', help='bag folders, globs, or text files listing bags '
                                           '(one path a line; @FILE also works)')
    p.add_argument('--out', required=True, help='output folder; reruns resume in it')
    p.add_argument('--model', required=True, help='ONNX/checkpoint/engine to evaluate')
    p.add_argument('--backend', default='onnxruntime', help='inference backend')
    p.add_argument('--params-file', help='node parameters file (crop, focal rescale, ...)')
    p.add_argument('--flip-tta', action='store_true', help='flip test-time augmentation')
    p.add_argument('--workers', type=int, help='parallel workers (default: all cores)')
    p.add_argument('--ray-address', help="join a running cluster: 'auto' or HOST:PORT "
                                         '(default: start a local one)')
    p.add_argument('--runtime-env', type=json.loads, default=None, metavar='JSON',
                   help='Ray runtime_env for the workers, e.g. \'{"env_vars": {"A": "1"}}\' '
                        'or \'{"pip": ["urcdc_depth_ros"]}\' on a cluster without the venv')
    p.add_argument('--shard-frames', type=int, default=SHARD_FRAMES,
                   help='frames per shard (one long bag spreads over workers)')
    p.add_argument('--image-topic', help='camera image topic (auto when unique)')
    p.add_argument('--lidar-topic', help='PointCloud2 topic (auto when unique)')
    p.add_argument('--tolerance-ms', type=float, help='max |camera - LiDAR| stamp gap, ms')
    p.add_argument('--min-depth', type=float, help='evaluation minimum, m')
    p.add_argument('--max-depth', type=float, help='evaluation maximum, m')
    p.add_argument('--crop', choices=('garg', 'eigen', 'none'))
    p.add_argument('--tx-mode', help='stereo P Tx rule (see urcdc-bag-eval)')
    p.add_argument('--panels', type=int, default=4, help='worst frames shown in the report')
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 2 on a config/data error, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    settings = {k: getattr(args, k) for k in EVAL_KEYS + ('image_topic', 'lidar_topic')
                if getattr(args, k) is not None}
    try:
        if args.workers is not None and args.workers < 1:
            raise ConfigError(f'--workers {args.workers}: give at least 1')
        if args.shard_frames < 1:
            raise ConfigError(f'--shard-frames {args.shard_frames}: give at least 1')
        factory = estimator_from_model(args.model, args.backend, args.params_file,
                                       args.flip_tta)
        fleet = run_fleet(args.bags, args.out, factory, factory.identity(),
                          workers=args.workers, ray_address=args.ray_address,
                          shard_frames=args.shard_frames, settings=settings,
                          n_panels=args.panels, runtime_env=args.runtime_env)
    except UrcdcDepthError as exc:
        logger.error('%s', exc)
        return 2
    except KeyboardInterrupt:
        return 130
    o = fleet['overall']
    logger.info('%d bags (%d failed), %d/%d frames: AbsRel %.4f, TAE %.4f, flicker %.4f; '
                'report in %s', len(fleet['bags']), len(fleet['failed_bags']), o.get('used', 0),
                o.get('frames', 0), o.get('abs_rel', float('nan')), o.get('tae', float('nan')),
                o.get('flicker', float('nan')), os.path.join(args.out, 'report.html'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
