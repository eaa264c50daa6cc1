"""Low precision on the CPU: torch bf16, OpenVINO f32/bf16, FP16 and INT8 QDQ ONNX, side by side.

    python bench/bench_precision.py [--quick] [--runs N]

One process, one machine state, runs alternating between the rows of a table:

1. **large07 at 352 x 1216, torch** (random weights, in memory): the both-branch FP32 forward
   (Transformer + CNN branch, what the official evaluation computes), the Transformer-only FP32
   forward (what the node runs) and the Transformer-only ``torch_dtype='bfloat16'`` forward;
   then the same weights exported to ONNX in OpenVINO f32 and bf16 (when it is installed).
   Goal: best CPU path <= 0.15x the both-branch FP32 forward.
2. **tiny07 and nano07 at 352 x 1216, ONNX** (random weights, exported here without
   onnxslim): ONNX Runtime FP32 / FP16 graph / INT8 QDQ graph and OpenVINO f32 / bf16 / INT8.
   Goals: tiny07 best CPU backend <= 0.40 s; INT8 and FP16 deviation rows.

Deviation = mean |d - d_fp32| / d_fp32 of the depth map against the same model's FP32 run on
the same input (torch FP32 for torch rows, ONNX Runtime FP32 for ONNX rows). These are
**random-weight** deviations, not AbsRel on a held-out drive. INT8 calibration uses 8
synthetic frames. bf16 only speeds up CPUs with AMX / AVX512-BF16; the machine line and the
``BF16 on this CPU`` line say whether this one has them. ``--quick``: nano07 and a 64 x 192
input for every table (proves the script works, no goal verdicts).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'test'))

import numpy as np  # noqa: E402

from urcdc_depth_ros.config import ModelMeta  # noqa: E402

BOTH_BRANCH_TARGET = 0.15   # best CPU path / both-branch FP32 forward, large07
TINY_TARGET_S = 0.40        # tiny07, best CPU backend, seconds
CALIB_FRAMES = 8


def median_time(fns: dict, runs: int) -> tuple[dict[str, float], dict]:
    """Median seconds per callable (runs alternate) and each callable's last result."""
    last = {name: fn() for name, fn in fns.items()}  # warm-up
    samples = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            last[name] = fn()
            samples[name].append(time.perf_counter() - t0)
    return {n: statistics.median(s) for n, s in samples.items()}, last


def rel_dev(depth: np.ndarray, ref: np.ndarray) -> float:
    """Mean relative depth deviation of ``depth`` from ``ref`` (both metres)."""
    return float(np.mean(np.abs(depth - ref) / ref))


def inputs(meta: ModelMeta, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` normalised network inputs (1, 3, h, w) from structured synthetic images."""
    rng = np.random.default_rng(seed)
    h, w = meta.input_height, meta.input_width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(count):
        img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / (9 + i) + yy / 7)], -1)
        img = (img * 0.8 + rng.uniform(0, 0.2, img.shape)).astype(np.float32)
        x = (img - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    return out


def torch_table(variant: str, h: int, w: int, runs: int, tmp: str
                ) -> tuple[list[str], float, float]:
    """Rows of table 1; returns (lines, best / both-branch, deviation of the best path)."""
    import torch

    from urcdc_depth_ros.inference.torch_backend import TorchBackend
    from urcdc_depth_ros.model import build_model

    torch.manual_seed(0)
    net = build_model(variant).eval()
    meta = ModelMeta(variant=variant, input_height=h, input_width=w)
    x = inputs(meta, 1)[0]
    t = torch.from_numpy(x)
    fp32 = TorchBackend.from_module(net, meta, 'cpu')

    def both():
        with torch.inference_mode():
            return net(t, with_cnn=True).depth.numpy()

    fns = {'torch FP32, both branches': both,
           'torch FP32, Transformer only': lambda: fp32.infer(x)['depth']}
    bf16 = TorchBackend.from_module(net, meta, 'cpu', torch_dtype='bfloat16')
    fns['torch bf16 autocast, Transformer only'] = lambda: bf16.infer(x)['depth']
    fns.update(openvino_rows(net, meta, x, tmp))
    secs, out = median_time(fns, runs)
    ref_s = secs['torch FP32, both branches']
    ref_d = out['torch FP32, Transformer only']
    lines = [f'### torch, {variant} at {h} x {w}, median of {runs}, '
             f'{torch.get_num_threads()} threads', '',
             '| path | time (s) | vs both-branch FP32 | depth deviation vs FP32 |',
             '|---|---|---|---|']
    for name, s in secs.items():
        dev = '—' if 'both' in name else f'{100 * rel_dev(out[name], ref_d):.3f} %'
        lines.append(f'| {name} | {s:.3f} | {s / ref_s:.3f}x | {dev} |')
    best = min((k for k in secs if 'both' not in k), key=secs.get)
    lines.append(f'Best path: {best}.')
    return lines + [''], secs[best] / ref_s, rel_dev(out[best], ref_d)


def openvino_rows(net, meta: ModelMeta, x: np.ndarray, tmp: str) -> dict:
    """OpenVINO f32 / bf16 callables running ``net``, exported to ONNX, on ``x``.

    Empty without OpenVINO.
    """
    try:
        import openvino  # noqa: F401
    except ImportError:
        return {}
    from urcdc_depth_ros.inference import create_backend
    from urcdc_training.export import export_onnx

    path = os.path.join(tmp, f'{meta.variant}_torch_table.onnx')
    export_onnx(net, replace(meta, dataset='random-weights'), path, simplify=False)
    rows = {}
    for precision in ('f32', 'bf16'):
        b = create_backend('openvino', path, precision=precision)
        rows[f'openvino {precision} (ONNX), Transformer only'] = \
            lambda b=b: b.infer(x)['depth']
    return rows


def onnx_table(variant: str, h: int, w: int, runs: int, tmp: str) -> tuple[list[str], dict]:
    """Rows of table 2 for ``variant``; returns (lines, {row: (seconds, deviation)})."""
    import torch

    from urcdc_depth_ros.inference import create_backend
    from urcdc_depth_ros.model import build_model
    from urcdc_training.export import export_onnx
    from urcdc_training.onnx_precision import write_precision

    torch.manual_seed(0)
    meta = ModelMeta(variant=variant, input_height=h, input_width=w, dataset='random-weights')
    fp32 = os.path.join(tmp, f'{variant}_fp32.onnx')
    export_onnx(build_model(variant).eval(), meta, fp32, simplify=False)
    t0 = time.perf_counter()
    fp16 = write_precision(fp32, os.path.join(tmp, f'{variant}_fp16.onnx'), 'fp16')
    t_fp16 = time.perf_counter() - t0
    t0 = time.perf_counter()
    int8 = write_precision(fp32, os.path.join(tmp, f'{variant}_int8.onnx'), 'int8',
                           inputs(meta, CALIB_FRAMES, seed=1))
    t_int8 = time.perf_counter() - t0
    threads = os.cpu_count() or 1
    backends = {'onnxruntime FP32': ('onnxruntime', fp32, {}),
                'onnxruntime FP16 graph': ('onnxruntime', fp16, {}),
                'onnxruntime INT8 QDQ': ('onnxruntime', int8, {})}
    try:
        import openvino  # noqa: F401
        backends.update({'openvino f32': ('openvino', fp32, {'precision': 'f32'}),
                         'openvino bf16 hint': ('openvino', fp32, {'precision': 'bf16'}),
                         'openvino INT8 QDQ': ('openvino', int8, {'precision': 'f32'})})
    except ImportError:
        pass
    made = {name: create_backend(b, path, **opts) for name, (b, path, opts) in backends.items()}
    x = inputs(meta, 1, seed=2)[0]
    secs, out = median_time({n: (lambda b=b: b.infer(x)['depth']) for n, b in made.items()},
                            runs)
    ref_s, ref_d = secs['onnxruntime FP32'], out['onnxruntime FP32']
    lines = [f'### ONNX, {variant} at {h} x {w}, median of {runs}, {threads} threads '
             f'(FP16 conversion {t_fp16:.1f} s, INT8 calibration + QDQ {t_int8:.1f} s)', '',
             '| backend | time (s) | vs onnxruntime FP32 | depth deviation vs FP32 |',
             '|---|---|---|---|']
    result = {}
    for name, s in secs.items():
        dev = rel_dev(out[name], ref_d)
        result[name] = (s, dev)
        lines.append(f'| {name} | {s:.3f} | {s / ref_s:.2f}x | {100 * dev:.3f} % |')
    for b in made.values():
        b.close()
    return lines + [''], result


def _met(value: float, goal: float) -> str:
    return 'met' if value <= goal else 'missed'


def main(argv=None) -> int:
    """Run the benchmark; markdown on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='nano07 at 64 x 192, 1 run')
    p.add_argument('--runs', type=int, default=0, help='timed runs per row (default 2)')
    args = p.parse_args(argv)
    import logging
    logging.disable(logging.WARNING)  # reason: onnxruntime.quantization warns per call
    runs = args.runs or (1 if args.quick else 2)
    h, w = (64, 192) if args.quick else (352, 1216)
    try:
        import openvino
        caps = openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
        bf16_line = f'BF16 on this CPU (OpenVINO capabilities {list(caps)}): {"BF16" in caps}'
    except ImportError:
        bf16_line = 'OpenVINO not installed (requirements/openvino.txt): no OpenVINO rows'
    lines = ['## Low precision on the CPU (`python bench/bench_precision.py`)', '',
             f'- {bf16_line}', '- deviations are of random-weight models against their own '
             'FP32 run, not AbsRel on a drive', '']
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        t_lines, ratio, best_dev = torch_table('nano07' if args.quick else 'large07', h, w,
                                               runs, tmp)
        lines += t_lines
        for variant in (['nano07'] if args.quick else ['tiny07', 'nano07']):
            o_lines, res = onnx_table(variant, h, w, runs, tmp)
            lines += o_lines
            if variant == 'tiny07':
                best = min(res, key=lambda k: res[k][0])
                best_s = res[best][0]
                verdicts.append(f'tiny07 best CPU backend: {best} {best_s:.3f} s (goal '
                                f'<= {TINY_TARGET_S:g} s: **{_met(best_s, TINY_TARGET_S)}**)')
            if not args.quick:
                s8, d8 = res['onnxruntime INT8 QDQ']
                s32 = res['onnxruntime FP32'][0]
                verdicts.append(f'{variant} INT8 QDQ in onnxruntime: {s8 / s32:.2f}x FP32 time, '
                                f'{100 * d8:.2f} % deviation' + (
                                    ' (slower than FP32 here: keep it as a TensorRT input only)'
                                    if s8 > s32 else ''))
    if not args.quick:
        verdicts.insert(0, f'large07 best CPU path / both-branch FP32: {ratio:.3f}x '
                        f'(goal <= {BOTH_BRANCH_TARGET:g}x: **{_met(ratio, BOTH_BRANCH_TARGET)}'
                        f'**); its deviation {100 * best_dev:.3f} % (goal <= 0.5 %)')
    lines += [f'- {v}' for v in verdicts] + ['']
    sys.stdout.write('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
