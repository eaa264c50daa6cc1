"""``make demo``: the whole pipeline on generated KITTI-format data, on a CPU.

Steps (each one reuses what an earlier run left in ``--out``):

1. ``urcdc-synth``: a small synthetic KITTI raw + annotated-depth set; the last drive is
   held out for evaluation.
2. ``urcdc-train``: the small ``nano07`` variant (not a paper variant), both branches, the
   alternating SILog+uncertainty / cross-distillation losses, CutFlip. Re-running resumes.
3. ``urcdc-eval``: the held-out drive with the dataset protocol (Garg crop, flip TTA).
4. ``urcdc-export onnx``: the trained network and the same network untrained (the baseline).
5. ``urcdc-kitti2bag``: the held-out drive as a rosbag2 (MCAP) with camera, LiDAR and TF.
6. ``urcdc-bag-eval --model``: the untrained baseline over that bag.
7. ``urcdc-bag-eval --replay``: the bag played through the real ``depth_node`` (rclpy), its
   outputs recorded and scored against the bag's LiDAR; the report shows the baseline beside.

``python -m urcdc_training.demo [--out demo_out] [--profile full|fast]``. ``fast`` is the tiny
version ``make test`` runs (seconds per step; it proves the chain, not the accuracy).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass

from urcdc_depth_ros.errors import UrcdcDepthError

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class DemoProfile:
    """Sizes of one demo run. Pixels for sizes; ``steps`` optimiser steps of ``batch`` images."""

    drives: int
    frames: int
    width: int
    height: int
    crop_height: int
    crop_width: int
    input_height: int
    input_width: int
    steps: int
    batch: int
    lr: float
    eval_flip_tta: bool
    require_improvement: bool  # fail unless the trained model beats the untrained one


PROFILES = {
    # half KITTI resolution; minutes of training on 2 CPU cores
    'full': DemoProfile(drives=6, frames=24, width=621, height=188, crop_height=176,
                        crop_width=608, input_height=176, input_width=560, steps=540, batch=2,
                        lr=3e-4, eval_flip_tta=True, require_improvement=True),
    # quarter resolution, a handful of steps: the chain end to end in well under a minute
    'fast': DemoProfile(drives=2, frames=3, width=310, height=94, crop_height=88,
                        crop_width=304, input_height=80, input_width=288, steps=4, batch=2,
                        lr=3e-4, eval_flip_tta=False, require_improvement=False),
}


def _step(i: int, text: str) -> float:
    logger.info('[%d/7] %s', i, text)
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    logger.info('      %s (%.1f s)', what, time.perf_counter() - t0)


def make_data(out: str, prof: DemoProfile, seed: int):
    """Step 1: the synthetic data set, reused when its ``synthetic_info.json`` fits the profile."""
    from .synthetic.writer import generate_dataset, read_dataset_info
    data = os.path.join(out, 'data')
    info = read_dataset_info(data)
    if info is not None and (len(info.drives), len(info.test_drives), info.frames, info.width,
                             info.height, info.seed) == (prof.drives, 1, prof.frames,
                                                         prof.width, prof.height, seed):
        return info, True
    info = generate_dataset(data, drives=prof.drives, frames=prof.frames, seed=seed,
                            width=prof.width, height=prof.height, test_drives=1, progress=True)
    return info, False


def train_overrides(info, prof: DemoProfile, run_dir: str) -> list[str]:
    """``urcdc-train`` overrides of ``config/train_synthetic.yaml`` for this profile."""
    every = max(prof.steps // 3, 1)
    return [f'data.data_path={info.raw_path}', f'data.gt_path={info.gt_path}',
            f'data.filenames_file={info.train_split}',
            f'data.filenames_file_eval={info.test_split}',
            f'data.kb_crop_height={prof.crop_height}', f'data.kb_crop_width={prof.crop_width}',
            f'data.input_height={prof.input_height}', f'data.input_width={prof.input_width}',
            f'checkpoint_dir={run_dir}', f'max_steps={prof.steps}',
            f'batch_size={prof.batch}', f'lr={prof.lr}', 'device=cpu',
            f'eval_every={every}', f'checkpoint_every={every}', 'eval_max_images=8',
            f'image_every={every}', f'log_every={max(prof.steps // 30, 1)}',
            f'tensorboard_dir={os.path.join(run_dir, "tensorboard")}']


def export_pair(ckpt: str, out: str, seed: int) -> tuple[str, str]:
    """Step 4: ONNX of the trained checkpoint and of the same network untrained (seeded)."""
    import torch

    from urcdc_depth_ros.model import build_model

    from .export import export_onnx, load_network
    trained, untrained = os.path.join(out, 'model.onnx'), os.path.join(out, 'untrained.onnx')
    net, meta, sha = load_network(ckpt, None, None)
    if not (os.path.isfile(trained) and os.path.getmtime(trained) > os.path.getmtime(ckpt)):
        export_onnx(net, meta, trained, checkpoint_sha256=sha)
    if not os.path.isfile(untrained):
        torch.manual_seed(seed)
        export_onnx(build_model(meta.variant, max_depth=meta.max_depth).eval(), meta, untrained)
    return trained, untrained


def overview_figure(bag: str, onnx_path: str, params_file: str, path: str) -> str:
    """image / depth / uncertainty / point cloud (bird's eye) of one bag frame, as one PNG."""
    import numpy as np

    from urcdc_depth_ros.config import estimator_config_from_params, load_node_params
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.evaluation import bag_io
    from urcdc_depth_ros.evaluation.bag_topics import open_bag
    from urcdc_depth_ros.evaluation.report import _plt
    from urcdc_depth_ros.pointcloud import depth_to_points

    reader = open_bag([bag])
    try:
        store = bag_io.get_ros2_typestore()
        conns = {c.topic: c for c in reader.connections}
        image_conn = next(c for t, c in conns.items() if t.endswith('image_raw'))
        info_conn = next(c for t, c in conns.items() if t.endswith('camera_info'))
        msgs = {}
        for conn, _, raw in reader.messages(connections=[image_conn, info_conn]):
            msgs.setdefault(conn.topic, store.deserialize_cdr(raw, conn.msgtype))
            if len(msgs) == 2:
                break
    finally:
        reader.close()
    rgb = bag_io.image_to_numpy(msgs[image_conn.topic])
    K = bag_io.camera_info_to_numpy(msgs[info_conn.topic])[0]
    est = DepthEstimator.from_model(onnx_path, config=estimator_config_from_params(
        load_node_params(params_file)))
    res = est.estimate(rgb, K)
    cloud = depth_to_points(res.depth_m, res.K, stride=1)
    xyz = cloud.points[..., :3].reshape(-1, 3)
    ok = np.isfinite(xyz).all(axis=1)
    xyz = xyz[ok]
    hue = res.depth_m.reshape(-1)[ok]
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 5.6),
                             gridspec_kw={'height_ratios': [1, 1.25]})
    ax = axes[0, 0]
    ax.imshow(rgb)
    ax.set_title('camera image (held-out drive)')
    im = axes[0, 1].imshow(res.depth_m, cmap='magma_r', vmin=0, vmax=np.nanpercentile(
        res.depth_m, 99))
    axes[0, 1].set_title('depth (m), NaN outside the network crop')
    fig.colorbar(im, ax=axes[0, 1], fraction=0.025)
    im = axes[1, 0].imshow(res.uncertainty, cmap='viridis', vmin=0, vmax=np.nanpercentile(
        res.uncertainty, 98))
    axes[1, 0].set_title('uncertainty (expected |error|, m)')
    fig.colorbar(im, ax=axes[1, 0], fraction=0.025)
    sel = slice(None, None, max(len(xyz) // 40000, 1))
    axes[1, 1].scatter(xyz[sel, 0], xyz[sel, 2], c=hue[sel], s=0.3, cmap='magma_r',
                       vmin=0, vmax=np.nanpercentile(hue, 99), rasterized=True)
    axes[1, 1].set_xlabel('x (m, right)')
    axes[1, 1].set_ylabel('z (m, forward)')
    axes[1, 1].set_aspect('equal', adjustable='datalim')
    axes[1, 1].set_title('point cloud, top view (optical frame)')
    for a in (axes[0, 0], axes[0, 1], axes[1, 0]):
        a.axis('off')
    fig.tight_layout()
    fig.savefig(path, bbox_inches='tight', dpi=90)
    plt.close(fig)
    return path


def run_demo(out: str, profile: str = 'full', seed: int = 0,
             params_file: str | None = None) -> dict:
    """Run the whole pipeline into ``out``; returns the summary (also ``out/summary.json``)."""
    from urcdc_depth_ros.config import estimator_config_from_params, load_node_params
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.evaluation import evaluate_bag
    from urcdc_depth_ros.kitti.to_bag import convert_drive
    from urcdc_depth_ros.evaluation.replay import replay_and_evaluate

    from .cli import eval_main, train_main
    prof = PROFILES[profile]
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    params_file = params_file or os.path.join(REPO_ROOT, 'config', 'depth.yaml')
    config = os.path.join(REPO_ROOT, 'config', 'train_synthetic.yaml')
    t_all = time.perf_counter()

    t0 = _step(1, f'synthetic KITTI-format data: {prof.drives} drives x {prof.frames} frames '
                  f'at {prof.width}x{prof.height}')
    info, reused = make_data(out, prof, seed)
    _done(t0, f'{"reused" if reused else "wrote"} {info.out_dir}')

    t0 = _step(2, f'training nano07 (both branches, cross-distillation) for {prof.steps} '
                  f'steps on the CPU')
    run_dir = os.path.join(out, 'run')
    overrides = train_overrides(info, prof, run_dir)
    if train_main(['--config', config] + overrides) != 0:
        raise RuntimeError('training failed; see the log above')
    ckpt = os.path.join(run_dir, f'ckpt_step{prof.steps:08d}.pt')
    if not os.path.isfile(ckpt):
        raise RuntimeError(f'training ended without {ckpt}')
    _done(t0, f'checkpoint {ckpt}')

    t0 = _step(3, 'urcdc-eval on the held-out drive (dataset protocol)')
    eval_dir = os.path.join(out, 'eval')
    args = ['--checkpoint', ckpt, '--out', eval_dir, 'data.num_workers=0']
    if eval_main(args + (['--flip-tta'] if prof.eval_flip_tta else [])) != 0:
        raise RuntimeError('evaluation failed; see the log above')
    _done(t0, f'{eval_dir}/metrics.json')

    t0 = _step(4, 'export to ONNX (trained, and the untrained baseline)')
    onnx_path, untrained_onnx = export_pair(ckpt, out, seed)
    _done(t0, onnx_path)

    t0 = _step(5, 'held-out drive -> rosbag2 (MCAP)')
    bag = os.path.join(out, 'bag')
    drive_dir = os.path.join(info.raw_path, info.date, info.test_drives[0])
    if not os.path.isfile(os.path.join(bag, 'metadata.yaml')):
        convert_drive(drive_dir, bag, overwrite=True, progress=True)
    _done(t0, bag)

    t0 = _step(6, 'bag evaluation of the untrained baseline (estimator, ONNX Runtime)')
    est_cfg = estimator_config_from_params(load_node_params(params_file))
    baseline = evaluate_bag(bag, os.path.join(out, 'untrained_report'),
                            estimator=DepthEstimator.from_model(untrained_onnx, config=est_cfg))
    _done(t0, f'AbsRel {baseline["metrics"]["abs_rel"]:.3f}')

    t0 = _step(7, 'replay through the real depth_node (rclpy) and bag evaluation')
    report_dir = os.path.join(out, 'report')
    result = replay_and_evaluate(bag, report_dir, params_file=params_file,
                                 model_path=onnx_path, baselines={'untrained': baseline})
    overview = overview_figure(bag, onnx_path, params_file, os.path.join(out, 'overview.png'))
    _done(t0, os.path.join(report_dir, 'report.html'))

    m, u, b = result['metrics'], result['uncertainty'], baseline['metrics']
    summary = {
        'profile': profile, 'report': os.path.join(report_dir, 'report.html'),
        'checkpoint': ckpt, 'onnx': onnx_path, 'bag': bag, 'overview': overview,
        'abs_rel': m['abs_rel'], 'rms': m['rms'], 'ause': u.get('ause'),
        'untrained_abs_rel': b['abs_rel'], 'untrained_rms': b['rms'],
        'frames': result['frames']['used'], 'replay': result['replay'],
        'wall_s': time.perf_counter() - t_all,
    }
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2, default=str)
    return summary


def print_summary(s: dict) -> None:
    """The lines a person reads at the end of ``make demo``."""
    print('\n' + '=' * 72)
    print(f'URCDC-Depth demo ({s["profile"]}) finished in {s["wall_s"] / 60:.1f} min')
    print(f'  report      {s["report"]}')
    print(f'  checkpoint  {s["checkpoint"]}')
    print(f'  ONNX        {s["onnx"]}')
    print(f'  rosbag2     {s["bag"]}')
    print(f'  overview    {s["overview"]}')
    print(f'  held-out drive through the ROS 2 node, {s["frames"]} frames vs LiDAR:')
    print(f'    AbsRel {s["abs_rel"]:.3f}   (untrained {s["untrained_abs_rel"]:.3f})')
    print(f'    RMSE   {s["rms"]:.2f} m  (untrained {s["untrained_rms"]:.2f} m)')
    ause = s['ause']
    print(f'    AUSE   {ause:.4f}' if ause is not None else '    AUSE   n/a')
    print('=' * 72)


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 1 when the trained model does not beat the untrained one."""
    p = argparse.ArgumentParser(prog='urcdc-demo', description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='demo_out', help='output folder (reused on rerun)')
    p.add_argument('--profile', choices=sorted(PROFILES), default='full')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--params-file', default=None, help='node params (default config/depth.yaml)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: '
                        '%(message)s', datefmt='%H:%M:%S')
    try:
        summary = run_demo(args.out, args.profile, args.seed, args.params_file)
    except (UrcdcDepthError, RuntimeError) as exc:
        logger.error('demo failed: %s', exc)
        return 2
    print_summary(summary)
    if PROFILES[args.profile].require_improvement \
            and not summary['abs_rel'] < 0.7 * summary['untrained_abs_rel']:
        logger.error('the trained model does not clearly beat the untrained one (AbsRel %.3f vs '
                     '%.3f); training is broken', summary['abs_rel'], summary['untrained_abs_rel'])
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
