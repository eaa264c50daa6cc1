"""``make demo``: the whole pipeline on generated KITTI-format data, on a CPU.

Steps (each one reuses what an earlier run left in ``--out``):

1. ``urcdc-synth``: a small synthetic KITTI raw + annotated-depth set; the last two drives
   are held out: a calibration drive and the test drive.
2. ``urcdc-train``: the small ``nano07`` variant (not a paper variant), both branches, the
   alternating SILog+uncertainty / cross-distillation losses, CutFlip. Re-running resumes.
3. ``urcdc-eval``: the held-out drives with the dataset protocol (Garg crop, flip TTA).
4. ``urcdc-export onnx``: the trained network and the same network untrained (the baseline).
5. ``urcdc-kitti2bag``: the calibration and test drives as rosbag2 (MCAP) with camera, LiDAR
   and TF.
6. ``urcdc-calibrate``: the uncertainty calibration fitted on the calibration drive's bag and
   stored in a copy of the ONNX file (``model_calibrated.onnx``).
7. ``urcdc-bag-eval --model`` on the test bag: the untrained baseline, the trained model with
   the uncalibrated head formula, and the calibrated 90 % bound (its coverage).
8. ``urcdc-bag-eval --replay``: the test bag played through the real ``depth_node`` (rclpy)
   with the calibrated model, its outputs recorded and scored against the bag's LiDAR; the
   report shows the baselines beside.

With ``--compare`` (``make demo DEMO_ARGS=--compare``), step 7 also writes the calibrated
model as an FP16 ONNX and as an INT8 QDQ ONNX (``urcdc-export onnx --precision``; INT8
calibrated on the calibration drive's frames), scores both on the test bag in ONNX Runtime,
and the report and the summary show them beside FP32 with their AbsRel change (goals: FP16
<= 0.5 %, INT8 <= 3 %, relative).

``python -m urcdc_training.demo [--out demo_out] [--profile full|fast] [--compare]
[--variant V --steps N]``. ``fast`` is the tiny version ``make test`` runs (seconds per step; it
proves the chain, not the accuracy). ``--variant``/``--steps`` train another variant (e.g.
``tiny07``, a paper variant, about 10x nano07's cost per step) for that many steps instead;
use a separate ``--out``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, replace

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
    calibration_min_pixels: int = 10_000  # the fit refuses fewer LiDAR pixels


PROFILES = {
    # half KITTI resolution; minutes of training on 2 CPU cores
    'full': DemoProfile(drives=7, frames=24, width=621, height=188, crop_height=176,
                        crop_width=608, input_height=176, input_width=560, steps=540, batch=2,
                        lr=3e-4, eval_flip_tta=True, require_improvement=True),
    # quarter resolution, a handful of steps: the chain end to end in well under a minute
    # (3 frames of 310x94 hold too few LiDAR pixels for a real fit: a chain check only;
    # 4 drives so that --compare finds the 8 INT8 calibration frames outside the test drive)
    'fast': DemoProfile(drives=4, frames=3, width=310, height=94, crop_height=88,
                        crop_width=304, input_height=80, input_width=288, steps=4, batch=2,
                        lr=3e-4, eval_flip_tta=False, require_improvement=False,
                        calibration_min_pixels=1_000),
}


STEPS = 8
#: the goals of the calibrated uncertainty on the test drive, through the node
GOALS = {'aurg_margin_abs_m': 0.02, 'calibration_error': 0.15, 'mean_ratio_off': 0.10}
#: ``--compare``: the largest AbsRel change against FP32 on the test drive (relative)
PRECISION_GOALS = {'fp16': 0.005, 'int8': 0.03}
PRECISION_LABELS = {'fp16': 'FP16 graph', 'int8': 'INT8 QDQ'}


def _step(i: int, text: str) -> float:
    logger.info('[%d/%d] %s', i, STEPS, text)
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    logger.info('      %s (%.1f s)', what, time.perf_counter() - t0)


def make_data(out: str, prof: DemoProfile, seed: int):
    """Step 1: the synthetic data set, reused when its ``synthetic_info.json`` fits the profile."""
    from .synthetic.writer import generate_dataset, read_dataset_info
    data = os.path.join(out, 'data')
    info = read_dataset_info(data)
    if info is not None and (len(info.drives), len(info.test_drives), info.frames, info.width,
                             info.height, info.seed) == (prof.drives, 2, prof.frames,
                                                         prof.width, prof.height, seed):
        return info, True
    info = generate_dataset(data, drives=prof.drives, frames=prof.frames, seed=seed,
                            width=prof.width, height=prof.height, test_drives=2, progress=True)
    return info, False


def train_overrides(info, prof: DemoProfile, run_dir: str, variant: str = 'nano07') -> list[str]:
    """``urcdc-train`` overrides of ``config/train_synthetic.yaml`` for this profile."""
    every = max(prof.steps // 3, 1)
    return [f'variant={variant}', f'data.data_path={info.raw_path}',
            f'data.gt_path={info.gt_path}',
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


def calibration_images(info) -> list[str]:
    """INT8 calibration frames of the calibration drive (never the test drive).

    Topped up from the training drives when it has fewer than the minimum (``fast`` profile).
    """
    from . import onnx_precision as op

    def images(drive: str) -> list[str]:
        return op.list_calibration_images(
            os.path.join(info.raw_path, info.date, drive, 'image_02', 'data'))
    paths = images(info.test_drives[0])
    for drive in info.train_drives:
        if len(paths) >= op.MIN_CALIBRATION_FRAMES:
            break
        paths += images(drive)
    return op.pick_frames(paths, op.DEFAULT_CALIBRATION_FRAMES)


def low_precision_models(onnx_path: str, calib_paths: list[str],
                         resize_mode: str) -> dict[str, str]:
    """``--compare``: FP16 and INT8 QDQ copies of ``onnx_path`` (reused while newer).

    INT8 ranges come from the ``calib_paths`` images, preprocessed with the node's
    ``resize_mode``.
    """
    from urcdc_depth_ros.evaluation.calibrate import read_model_meta

    from . import onnx_precision as op
    stem = os.path.splitext(onnx_path)[0]
    out = {}
    for precision in PRECISION_GOALS:
        dst = f'{stem}_{precision}.onnx'
        out[precision] = dst
        if os.path.isfile(dst) and os.path.getmtime(dst) > os.path.getmtime(onnx_path):
            continue
        frames = None
        if precision == 'int8':
            frames = op.calibration_inputs(calib_paths, read_model_meta(onnx_path), resize_mode)
        op.write_precision(onnx_path, dst, precision, frames)
    return out


def precision_figures(fp32: dict, low: dict[str, dict]) -> dict:
    """AbsRel of each low-precision run beside FP32's, its relative change and the goal."""
    ref = fp32['metrics']['abs_rel']
    out = {'fp32': {'abs_rel': ref}}
    for precision, result in low.items():
        v = result['metrics']['abs_rel']
        change = abs(v / ref - 1.0)
        out[precision] = {'abs_rel': v, 'change': change, 'target': PRECISION_GOALS[precision],
                          'met': bool(change <= PRECISION_GOALS[precision])}
    return out


def run_demo(out: str, profile: str = 'full', seed: int = 0,
             params_file: str | None = None, compare: bool = False,
             variant: str = 'nano07', steps: int | None = None) -> dict:
    """Run the whole pipeline into ``out``; returns the summary (also ``out/summary.json``).

    ``compare``: also score FP16 and INT8 QDQ copies of the model (see the module docstring).
    ``variant``, ``steps``: what to train and for how many steps (default: the profile's).
    """
    from urcdc_depth_ros.config import estimator_config_from_params, load_node_params
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.evaluation import evaluate_bag
    from urcdc_depth_ros.kitti.to_bag import convert_drive
    from urcdc_depth_ros.evaluation.replay import replay_and_evaluate

    from .cli import eval_main, train_main
    prof = PROFILES[profile]
    if steps is not None:
        prof = replace(prof, steps=int(steps))
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    params_file = params_file or os.path.join(REPO_ROOT, 'config', 'depth.yaml')
    config = os.path.join(REPO_ROOT, 'config', 'train_synthetic.yaml')
    t_all = time.perf_counter()

    t0 = _step(1, f'synthetic KITTI-format data: {prof.drives} drives x {prof.frames} frames '
                  f'at {prof.width}x{prof.height}')
    info, reused = make_data(out, prof, seed)
    _done(t0, f'{"reused" if reused else "wrote"} {info.out_dir}')

    t0 = _step(2, f'training {variant} (both branches, cross-distillation) for {prof.steps} '
                  f'steps on the CPU')
    run_dir = os.path.join(out, 'run')
    overrides = train_overrides(info, prof, run_dir, variant)
    if train_main(['--config', config] + overrides) != 0:
        raise RuntimeError('training failed; see the log above')
    ckpt = os.path.join(run_dir, f'ckpt_step{prof.steps:08d}.pt')
    if not os.path.isfile(ckpt):
        raise RuntimeError(f'training ended without {ckpt}')
    _done(t0, f'checkpoint {ckpt}')

    t0 = _step(3, 'urcdc-eval on the held-out drive (dataset protocol)')
    eval_dir = os.path.join(out, 'eval')
    args = ['--checkpoint', ckpt, '--out', eval_dir, 'data.num_workers=0']
    if eval_main(args + ([] if prof.eval_flip_tta else ['--no-flip-tta'])) != 0:
        raise RuntimeError('evaluation failed; see the log above')
    _done(t0, f'{eval_dir}/metrics.json')

    t0 = _step(4, 'export to ONNX (trained, and the untrained baseline)')
    onnx_path, untrained_onnx = export_pair(ckpt, out, seed)
    _done(t0, onnx_path)

    t0 = _step(5, 'calibration and test drives -> rosbag2 (MCAP)')
    bags = {}
    for name, drive in (('bag_calibration', info.test_drives[0]), ('bag', info.test_drives[-1])):
        bags[name] = os.path.join(out, name)
        if not os.path.isfile(os.path.join(bags[name], 'metadata.yaml')):
            convert_drive(os.path.join(info.raw_path, info.date, drive), bags[name],
                          overwrite=True, progress=True)
    bag = bags['bag']
    _done(t0, f'{bags["bag_calibration"]} (calibration), {bag} (test)')

    t0 = _step(6, 'urcdc-calibrate on the calibration drive (stored in the ONNX metadata)')
    params = load_node_params(params_file)
    calibrated_onnx, calibration_fit = calibrate_model(
        onnx_path, bags['bag_calibration'], params, prof.calibration_min_pixels,
        os.path.join(out, 'calibration'))
    _done(t0, f'{calibrated_onnx} ({calibration_fit["pixels"]} LiDAR pixels)')

    t0 = _step(7, 'test bag: untrained baseline, uncalibrated head, calibrated 90 % bound')
    est_cfg = estimator_config_from_params(params)
    baseline = evaluate_bag(bag, os.path.join(out, 'untrained_report'),
                            estimator=DepthEstimator.from_model(untrained_onnx, config=est_cfg))
    uncalibrated = evaluate_bag(bag, os.path.join(out, 'uncalibrated_report'),
                                estimator=DepthEstimator.from_model(onnx_path, config=est_cfg))
    bound = evaluate_bag(bag, None, write_report=False, estimator=DepthEstimator.from_model(
        calibrated_onnx, config=replace(est_cfg, uncertainty='bound90')))
    _done(t0, f'untrained AbsRel {baseline["metrics"]["abs_rel"]:.3f}')
    low = {}
    if compare:
        t0 = time.perf_counter()
        for precision, path in low_precision_models(calibrated_onnx, calibration_images(info),
                                                    params['resize_mode']).items():
            low[precision] = evaluate_bag(bag, None, write_report=False,
                                          estimator=DepthEstimator.from_model(path,
                                                                              config=est_cfg))
        _done(t0, '--compare: FP16 and INT8 QDQ models scored on the test bag')

    t0 = _step(8, 'replay through the real depth_node (rclpy), calibrated model, bag evaluation')
    report_dir = os.path.join(out, 'report')
    result = replay_and_evaluate(bag, report_dir, params_file=params_file,
                                 model_path=calibrated_onnx,
                                 baselines={'untrained': baseline,
                                            'uncalibrated head': uncalibrated,
                                            **{PRECISION_LABELS[k]: v
                                               for k, v in low.items()}})
    overview = overview_figure(bag, calibrated_onnx, params_file,
                               os.path.join(out, 'overview.png'))
    _done(t0, os.path.join(report_dir, 'report.html'))

    m, u, b = result['metrics'], result['uncertainty'], baseline['metrics']
    summary = {
        'profile': profile, 'variant': variant, 'steps': prof.steps,
        'report': os.path.join(report_dir, 'report.html'),
        'checkpoint': ckpt, 'onnx': onnx_path, 'onnx_calibrated': calibrated_onnx,
        'bag': bag, 'calibration_bag': bags['bag_calibration'], 'overview': overview,
        'abs_rel': m['abs_rel'], 'rms': m['rms'], 'ause': u.get('ause'),
        'untrained_abs_rel': b['abs_rel'], 'untrained_rms': b['rms'],
        'uncertainty': {'calibrated (node)': uncertainty_figures(u),
                        'uncalibrated head': uncertainty_figures(uncalibrated['uncertainty']),
                        'bound90_coverage': bound['uncertainty'].get('coverage'),
                        'calibration_fit': calibration_fit},
        'frames': result['frames']['used'], 'replay': result['replay'],
        'wall_s': time.perf_counter() - t_all,
    }
    summary['goals'] = uncertainty_goals(summary['uncertainty']['calibrated (node)'])
    if low:
        summary['precision'] = precision_figures(uncalibrated, low)
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2, default=str)
    return summary


def calibrate_model(onnx_path: str, bag: str, params: dict, min_pixels: int,
                    out_dir: str) -> tuple[str, dict]:
    """Step 6: fit on ``bag``, store in ``model_calibrated.onnx`` beside ``onnx_path``."""
    from urcdc_depth_ros.evaluation.calibrate import (fit_on_bag, read_model_meta,
                                                      write_model_meta)
    dst = os.path.join(os.path.dirname(onnx_path), 'model_calibrated.onnx')
    fit_json = os.path.join(out_dir, 'calibration.json')
    if os.path.isfile(dst) and os.path.isfile(fit_json) \
            and os.path.getmtime(dst) > os.path.getmtime(onnx_path):
        with open(fit_json) as f:
            return dst, json.load(f)['fit']
    cal, fit = fit_on_bag(onnx_path, [bag], params, min_pixels=min_pixels)
    meta = read_model_meta(onnx_path)
    write_model_meta(onnx_path, replace(meta, uncertainty_calibration=cal.to_json()), dst)
    os.makedirs(out_dir, exist_ok=True)
    with open(fit_json, 'w') as f:
        json.dump({**cal.to_dict(), 'fit': fit}, f, indent=2)
    return dst, fit


UNCERTAINTY_KEYS = ('aurg_abs_m', 'depth_aurg_abs_m', 'aurg_margin_abs_m', 'ause_abs_m',
                    'depth_ause_abs_m', 'oracle_aurg_abs_m', 'calibration_error',
                    'mean_predicted_m', 'mean_observed_abs_err_m')


def uncertainty_figures(u: dict) -> dict:
    """The uncertainty figures the summary prints (None where absent)."""
    return {k: u.get(k) for k in UNCERTAINTY_KEYS}


def uncertainty_goals(u: dict) -> dict:
    """Each goal of the calibrated metres on the test drive: value, target and whether met."""
    off = None
    if u.get('mean_predicted_m') is not None and u.get('mean_observed_abs_err_m'):
        off = abs(u['mean_predicted_m'] / u['mean_observed_abs_err_m'] - 1.0)
    values = {'aurg_margin_abs_m': u.get('aurg_margin_abs_m'),
              'calibration_error': u.get('calibration_error'), 'mean_ratio_off': off}
    out = {}
    for k, target in GOALS.items():
        v = values[k]
        met = v is not None and (v >= target if k == 'aurg_margin_abs_m' else v <= target)
        out[k] = {'value': v, 'target': target, 'met': bool(met)}
    return out


def _f(v, nd: int = 3) -> str:
    return 'n/a' if v is None else f'{v:.{nd}f}'


def print_summary(s: dict) -> None:
    """The lines a person reads at the end of ``make demo``."""
    print('\n' + '=' * 72)
    print(f'URCDC-Depth demo ({s["profile"]}, {s["variant"]}, {s["steps"]} steps) finished in '
          f'{s["wall_s"] / 60:.1f} min')
    print(f'  report      {s["report"]}')
    print(f'  checkpoint  {s["checkpoint"]}')
    print(f'  ONNX        {s["onnx"]} (calibrated: {s["onnx_calibrated"]})')
    print(f'  rosbag2     {s["bag"]} (calibration drive: {s["calibration_bag"]})')
    print(f'  overview    {s["overview"]}')
    print(f'  test drive through the ROS 2 node, {s["frames"]} frames vs LiDAR:')
    print(f'    AbsRel {s["abs_rel"]:.3f}   (untrained {s["untrained_abs_rel"]:.3f})')
    print(f'    RMSE   {s["rms"]:.2f} m  (untrained {s["untrained_rms"]:.2f} m)')
    unc = s['uncertainty']
    print('  uncertainty (m) on the test drive; AURG ranks |error| in m:')
    print('    map                 AURG  sigma=c*depth  margin  calib.err  mean pred / obs (m)')
    for label in ('calibrated (node)', 'uncalibrated head'):
        u = unc[label]
        print(f'    {label:<18}  {_f(u["aurg_abs_m"])}  {_f(u["depth_aurg_abs_m"]):>13}  '
              f'{_f(u["aurg_margin_abs_m"]):>6}  {_f(u["calibration_error"]):>9}  '
              f'{_f(u["mean_predicted_m"], 2)} / {_f(u["mean_observed_abs_err_m"], 2)}')
    print(f'    the calibrated 90 % bound covers {_f(unc["bound90_coverage"])} of the pixels')
    for k, g in s['goals'].items():
        sign = '>=' if k.startswith('aurg') else '<='
        print(f'    goal {k}: {_f(g["value"])} (target {sign} {g["target"]}) '
              f'{"met" if g["met"] else "MISSED"}')
    if s.get('precision'):
        p = s['precision']
        print(f'  --compare, in-process ONNX Runtime on the test drive: AbsRel FP32 '
              f'{p["fp32"]["abs_rel"]:.4f}')
        for k in PRECISION_GOALS:
            g = p[k]
            print(f'    {PRECISION_LABELS[k]:<10} AbsRel {g["abs_rel"]:.4f}  change '
                  f'{100 * g["change"]:.2f} % (target <= {100 * g["target"]:.1f} %) '
                  f'{"met" if g["met"] else "MISSED"}')
    print('=' * 72)


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 1 when the trained model does not beat the untrained one."""
    p = argparse.ArgumentParser(prog='urcdc-demo', description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='demo_out', help='output folder (reused on rerun)')
    p.add_argument('--profile', choices=sorted(PROFILES), default='full')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--params-file', default=None, help='node params (default config/depth.yaml)')
    p.add_argument('--compare', action='store_true',
                   help='also score FP16 and INT8 QDQ copies of the model beside FP32')
    p.add_argument('--variant', default='nano07',
                   help='variant to train (default nano07; e.g. tiny07, with a separate --out)')
    p.add_argument('--steps', type=int, default=None, help="training steps (default: the "
                   "profile's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: '
                        '%(message)s', datefmt='%H:%M:%S')
    try:
        summary = run_demo(args.out, args.profile, args.seed, args.params_file, args.compare,
                           args.variant, args.steps)
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
