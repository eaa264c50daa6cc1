"""Calibrated uncertainty vs training steps, on ``make demo``'s calibration and test drives.

    python bench/bench_uncertainty.py [--quick] [--demo-out demo_out]

For every checkpoint ``make demo`` kept in ``DEMO_OUT/run`` (``ckpt_step*.pt``; with
``--quick`` only the last), the torch backend runs over the calibration bag, the calibration
is fitted there (``urcdc-calibrate``'s :func:`fit_on_bag`), and the test bag is scored with it
(estimator mode, the node's settings from ``config/depth.yaml``). The table shows how the
ranking margin over ``sigma = c * depth`` (AURG on |error| in m) and the calibration error move
with training. Goals on the test drive: margin >= 0.02, calibration error <= 0.15, mean
predicted within 10 % of observed. Needs a finished ``make demo``; markdown goes to stdout.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import sys
from dataclasses import replace

from urcdc_depth_ros.config import estimator_config_from_params, load_node_params
from urcdc_depth_ros.estimator import DepthEstimator
from urcdc_depth_ros.evaluation import evaluate_bag
from urcdc_depth_ros.evaluation.calibrate import fit_on_bag
from urcdc_depth_ros.inference import create_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def score(ckpt: str, demo_out: str, params: dict, max_frames: int | None) -> dict:
    """Fit on the calibration bag, score the test bag: the row of one checkpoint."""
    cal, fit = fit_on_bag(ckpt, [os.path.join(demo_out, 'bag_calibration')], params,
                          backend='torch', max_frames=max_frames)
    backend = create_backend('torch', ckpt)
    backend.meta = replace(backend.meta, uncertainty_calibration=cal.to_json())
    est = DepthEstimator(backend, estimator_config_from_params(params))
    res = evaluate_bag(os.path.join(demo_out, 'bag'), None, estimator=est, write_report=False,
                       max_frames=max_frames)
    u = res['uncertainty']
    return {'abs_rel': res['metrics']['abs_rel'], 'aurg': u['aurg_abs_m'],
            'depth': u['depth_aurg_abs_m'], 'margin': u['aurg_margin_abs_m'],
            'cal_err': u['calibration_error'],
            'ratio': u['mean_predicted_m'] / u['mean_observed_abs_err_m'],
            'pixels': fit['pixels']}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='last checkpoint, 8 frames')
    ap.add_argument('--demo-out', default=os.path.join(ROOT, 'demo_out'))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ckpts = sorted(glob.glob(os.path.join(args.demo_out, 'run', 'ckpt_step*.pt')))
    if not ckpts or not os.path.isdir(os.path.join(args.demo_out, 'bag_calibration')):
        sys.stderr.write(f'no finished make demo in {args.demo_out!r} (run/ckpt_step*.pt, '
                         'bag_calibration/, bag/); run `make demo` first\n')
        return 1
    if args.quick:
        ckpts = ckpts[-1:]
    params = load_node_params(os.path.join(ROOT, 'config', 'depth.yaml'))
    print('## Calibrated uncertainty vs training steps (`python bench/bench_uncertainty.py`)\n')
    print('Test drive of `make demo`, calibration fitted on its calibration drive, estimator '
          'mode (torch backend). AURG on |error| in m.\n')
    print('| step | AbsRel | AURG calibrated | AURG sigma = c·depth | margin (goal ≥ 0.02) | '
          'calibration error (≤ 0.15) | mean pred / obs (0.9–1.1) | fit pixels |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')
    for ckpt in ckpts:
        step = int(re.search(r'ckpt_step(\d+)', ckpt).group(1))
        r = score(ckpt, args.demo_out, params, 8 if args.quick else None)
        print(f'| {step} | {r["abs_rel"]:.3f} | {r["aurg"]:.4f} | {r["depth"]:.4f} | '
              f'{r["margin"]:+.4f} | {r["cal_err"]:.3f} | {r["ratio"]:.3f} | {r["pixels"]} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
