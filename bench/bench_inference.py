"""Estimator latency per backend at 352 x 1216: torch vs ONNX Runtime, and pre/post cost.

    python bench/bench_inference.py [--quick] [--variants nano07,tiny07] [--runs N]

For each variant a random-weight checkpoint and its ONNX export (``test/fixtures/models.py``,
the files the tests use) run the same 1242 x 375 camera image through
:class:`DepthEstimator` (KB crop to 352 x 1216, depth and uncertainty back at camera size),
once per backend, in this one process, alternating backends run by run so both see the same
machine state. Reported: the backend's median time, preprocessing and postprocessing, and
(pre + post) / backend. Targets: ONNX Runtime <= 1.0x torch; pre + post <= 5 % of the
backend. With CUDA, torch FP32 and FP16 rows are added. Markdown goes to stdout.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'test'))

import numpy as np  # noqa: E402

from urcdc_depth_ros.config import EstimatorConfig  # noqa: E402
from urcdc_depth_ros.estimator import DepthEstimator  # noqa: E402
from urcdc_depth_ros.kitti.calib import KittiCalib  # noqa: E402

H, W = 352, 1216          # network input (KITTI benchmark crop)
CAM_H, CAM_W = 375, 1242  # camera image
ORT_TARGET, PREPOST_TARGET = 1.0, 0.05


def camera_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A KITTI-sized RGB image with structure, and KITTI's intrinsics (px)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:CAM_H, 0:CAM_W].astype(np.float32)
    img = np.stack([xx / CAM_W, yy / CAM_H, 0.5 + 0.5 * np.sin(xx / 13 + yy / 9)], -1) * 200
    img = (img + rng.uniform(0, 55, img.shape)).clip(0, 255).astype(np.uint8)
    return img, KittiCalib.default().K


def time_estimators(estimators: dict[str, DepthEstimator], runs: int) -> dict[str, dict]:
    """Median timings (ms) per estimator; runs alternate between estimators."""
    img, K = camera_image()
    for est in estimators.values():
        est.estimate(img, K)  # warm-up: allocations, ORT/torch first-run work
    samples: dict[str, list[dict]] = {name: [] for name in estimators}
    for _ in range(runs):
        for name, est in estimators.items():
            samples[name].append(est.estimate(img, K).timings_ms)
    out = {}
    for name, rows in samples.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        med['prepost_frac'] = (med['preprocess'] + med['postprocess']) / med['backend']
        out[name] = med
    return out


def main(argv=None) -> int:
    """Run the benchmark; markdown on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='nano07 only, 2 runs')
    p.add_argument('--variants', default='', help='comma-separated (default nano07,tiny07)')
    p.add_argument('--runs', type=int, default=0, help='timed runs per backend (default 5)')
    args = p.parse_args(argv)
    import torch

    from fixtures.models import make_onnx_model
    variants = [v for v in args.variants.split(',') if v] or (
        ['nano07'] if args.quick else ['nano07', 'tiny07'])
    runs = args.runs or (2 if args.quick else 5)
    cfg = EstimatorConfig()  # kb_crop, output at camera size, metres uncertainty
    lines = [f'### Estimator latency at {H} x {W} (camera {CAM_W} x {CAM_H}, KB crop), '
             f'median of {runs}, {torch.get_num_threads()} threads', '',
             '| variant | backend | backend (ms) | preprocess (ms) | postprocess (ms) | '
             '(pre+post)/backend | vs torch CPU |', '|---|---|---|---|---|---|---|']
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            onnx_path, ckpt, _ = make_onnx_model(tmp, variant=variant, height=H, width=W)
            ests = {'torch CPU FP32': DepthEstimator.from_model(ckpt, 'torch', cfg,
                                                                device='cpu'),
                    'onnxruntime CPU': DepthEstimator.from_model(onnx_path, 'onnxruntime', cfg)}
            if torch.cuda.is_available():
                ests['torch CUDA FP32'] = DepthEstimator.from_model(ckpt, 'torch', cfg,
                                                                    device='cuda', fp16=False)
                ests['torch CUDA FP16'] = DepthEstimator.from_model(ckpt, 'torch', cfg,
                                                                    device='cuda', fp16=True)
            res = time_estimators(ests, runs)
            ref = res['torch CPU FP32']['backend']
            for name, r in res.items():
                lines.append(f'| {variant} | {name} | {r["backend"]:.1f} | '
                             f'{r["preprocess"]:.2f} | {r["postprocess"]:.2f} | '
                             f'{100 * r["prepost_frac"]:.1f} % | {r["backend"] / ref:.2f}x |')
            ort = res['onnxruntime CPU']
            verdicts.append(
                f'{variant}: ONNX Runtime {ort["backend"] / ref:.2f}x torch (target <= '
                f'{ORT_TARGET:g}x: **{"met" if ort["backend"] <= ORT_TARGET * ref else "missed"}'
                f'**); pre+post {100 * ort["prepost_frac"]:.1f} % of the ONNX Runtime backend '
                f'(target <= {100 * PREPOST_TARGET:g} %: '
                f'**{"met" if ort["prepost_frac"] <= PREPOST_TARGET else "missed"}**)')
            for est in ests.values():
                est.close()
    lines += [''] + [f'- {v}' for v in verdicts] + ['']
    sys.stdout.write('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
