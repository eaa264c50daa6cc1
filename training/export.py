"""``urcdc-export``: torch checkpoint -> ONNX (FP32, FP16 or INT8 QDQ) -> TensorRT engine.

``urcdc-export onnx --checkpoint C [--variant V] --height 352 --width 1216 --out model.onnx``
writes the Transformer branch (depth + uncertainty; the CNN branch is training-only) with
input ``image`` (N,3,H,W) float32 normalised and outputs ``depth`` (N,1,H,W) metres and
``uncertainty`` (N,1,H,W) in [0,1]; fixed shapes (batch optionally dynamic), opset >= 17,
``onnx.checker``-clean, simplified with onnxslim, and the :class:`ModelMeta` in metadata_props.
``--precision fp16`` / ``int8 --calib-images DIR`` converts the graph afterwards
(:mod:`.onnx_precision`).

``urcdc-export tensorrt --onnx model.onnx [--precision auto] [--dla-core N] [--max-batch N]``
builds a strongly typed TensorRT engine + JSON sidecar (``--max-batch N``: one optimisation
profile min 1 / opt N / max N, from a ``--dynamic-batch`` ONNX) with
:func:`urcdc_depth_ros.inference.tensorrt_build.build_engine` (the same code the runtime uses
to build on first start) and always prints the equivalent ``trtexec`` command. It imports no
torch (torch is imported by the ``onnx`` command only), so it runs on a Jetson.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import warnings
from typing import Sequence

from urcdc_depth_ros.config import KITTI_MAX_DEPTH_M, MODEL_PRECISIONS, ModelMeta
from urcdc_depth_ros.errors import BackendError, UrcdcDepthError
from urcdc_depth_ros.inference.base import INPUT_NAME, META_KEY, OUTPUT_NAMES, file_sha256
from urcdc_depth_ros.inference.tensorrt_build import (BUILD_PRECISIONS, TRT10_SUPPORTED_OPS,
                                                      trtexec_command)

from .onnx_precision import DEFAULT_CALIBRATION_FRAMES

logger = logging.getLogger(__name__)
MIN_OPSET = 17


def transformer_inference(net):
    """Exportable ``nn.Module``: image -> (depth, uncertainty) of the Transformer branch only.

    Built on call so that importing this module (``urcdc-export tensorrt``) needs no torch.
    """
    from torch import nn

    class TransformerInference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image):  # noqa: D102
            out = self.net(image, with_cnn=False)
            return out.depth, out.uncertainty

    return TransformerInference()


def metadata_props(meta: ModelMeta, checkpoint_sha256: str | None = None,
                   opset: int = MIN_OPSET) -> dict[str, str]:
    """The metadata_props written into the ONNX file (all strings)."""
    meta_json = json.dumps(meta.to_dict(), sort_keys=True)
    return {
        META_KEY: meta_json,
        'urcdc_meta_sha256': hashlib.sha256(meta_json.encode()).hexdigest(),
        'variant': meta.variant,
        'precision': meta.precision,
        'max_depth': repr(float(meta.max_depth)),
        'input_size': f'{meta.input_height}x{meta.input_width}',
        'mean': json.dumps(list(meta.mean)),
        'std': json.dumps(list(meta.std)),
        'focal_px': repr(float(meta.focal_px)),
        'checkpoint_sha256': checkpoint_sha256 or 'random-weights',
        'opset': str(opset),
    }


def unsupported_ops(model, allowed=TRT10_SUPPORTED_OPS) -> list[str]:
    """Sorted op types of ``model`` (onnx.ModelProto, incl. subgraphs' top level) not allowed."""
    return sorted({n.op_type for n in model.graph.node if n.domain in ('', 'ai.onnx')
                   and n.op_type not in allowed} |
                  {f'{n.domain}::{n.op_type}' for n in model.graph.node
                   if n.domain not in ('', 'ai.onnx')})


def shape_problems(model, dynamic_batch: bool = False) -> list[str]:
    """Non-static dims of the graph inputs/outputs (batch allowed symbolic when dynamic)."""
    problems = []
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if axis == 0 and dynamic_batch:
                continue
            if not d.HasField('dim_value') or d.dim_value <= 0:
                problems.append(f'{value.name}[{axis}] is {d.dim_param or "unknown"!r}')
    return problems


def export_onnx(net, meta: ModelMeta, out_path: str | os.PathLike,
                dynamic_batch: bool = False, opset: int = MIN_OPSET, simplify: bool = True,
                checkpoint_sha256: str | None = None) -> str:
    """Export the Transformer inference path of ``net`` to ONNX.

    Args:
        net: :class:`urcdc_depth_ros.model.URCDCDepth` (any module whose ``forward(x,
            with_cnn=False)`` returns ``.depth``/``.uncertainty``).
        meta: written to metadata_props; its input size fixes the graph shape.
        out_path: ``.onnx`` file to write.
        dynamic_batch: symbolic batch dimension (H, W stay fixed).
        opset: ONNX opset, >= 17 (LayerNormalization is a single op from 17).
        simplify: run onnxslim (constant folding, shape ops removed).
        checkpoint_sha256: SHA-256 of the source checkpoint, recorded for traceability.
    Returns:
        ``out_path`` as str.
    """
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise BackendError(f'opset {opset} < {MIN_OPSET}: LayerNormalization needs opset 17; '
                           f'use --opset {MIN_OPSET} or higher')
    meta.validate()
    out_path = os.fspath(out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    wrapper = transformer_inference(net).eval()
    x = torch.zeros(1, 3, meta.input_height, meta.input_width)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {INPUT_NAME: {0: 'batch'}, **{n: {0: 'batch'} for n in OUTPUT_NAMES}}
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # reason: the legacy (TorchScript) exporter warns that it is deprecated; the dynamo
        # exporter needs onnxscript, which the runtime image does not ship.
        warnings.simplefilter('ignore')
        torch.onnx.export(wrapper, (x,), out_path, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), opset_version=opset,
                          dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False)
    model = onnx.load(out_path)
    if simplify:
        import onnxslim
        model = onnxslim.slim(model)
    _pin_io_shapes(model, meta, dynamic_batch)
    del model.metadata_props[:]
    for k, v in metadata_props(meta, checkpoint_sha256, opset).items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = 'urcdc_depth_ros'
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out_path)
    bad = unsupported_ops(model)
    if bad:
        logger.warning('%s uses ops the TensorRT 10 ONNX parser lacks: %s', out_path, bad)
    logger.info('wrote %s (%d nodes, opset %d, %s)', out_path, len(model.graph.node), opset,
                'dynamic batch' if dynamic_batch else 'static shapes')
    return out_path


def _pin_io_shapes(model, meta: ModelMeta, dynamic_batch: bool) -> None:
    """Write the known (N,3,H,W)/(N,1,H,W) shapes on the graph inputs/outputs.

    reason: with ``dynamic_axes`` the exporter leaves the output H/W symbolic (they pass
    through a crop-back Slice), which TensorRT and downstream tools treat as dynamic.
    """
    io = [(v, 3) for v in model.graph.input if v.name == INPUT_NAME] + \
        [(v, 1) for v in model.graph.output if v.name in OUTPUT_NAMES]
    for value, channels in io:
        dims = value.type.tensor_type.shape.dim
        for axis, size in enumerate((1, channels, meta.input_height, meta.input_width)):
            if axis == 0 and dynamic_batch:
                dims[0].Clear()
                dims[0].dim_param = 'batch'
            else:
                dims[axis].Clear()
                dims[axis].dim_value = size


def load_network(checkpoint: str | None, variant: str | None, max_depth: float | None,
                 seed: int = 0):
    """(net in eval mode, meta from the checkpoint or None, checkpoint sha256 or None)."""
    import torch

    from urcdc_depth_ros.model import build_model, load_weights, read_checkpoint

    if checkpoint is None:
        if variant is None:
            raise BackendError('--random-weights needs --variant (e.g. nano07)')
        torch.manual_seed(seed)
        return build_model(variant, max_depth=max_depth or KITTI_MAX_DEPTH_M).eval(), None, None
    if not os.path.isfile(checkpoint):
        raise BackendError(f'checkpoint {checkpoint!r} does not exist')
    ckpt = read_checkpoint(checkpoint)
    ckpt_meta = _checkpoint_meta(ckpt)
    name = variant or (ckpt_meta.variant if ckpt_meta else None)
    if name is None:
        from urcdc_depth_ros.model.checkpoint import extract_state_dict, infer_variant
        name = infer_variant(extract_state_dict(ckpt))
        if name is None:
            raise BackendError(f'cannot tell the variant of {checkpoint!r}; pass --variant')
    depth_range = max_depth or (ckpt_meta.max_depth if ckpt_meta else KITTI_MAX_DEPTH_M)
    net = build_model(name, max_depth=depth_range)
    meta = load_weights(net, ckpt) or ckpt_meta
    return net.eval(), meta, file_sha256(checkpoint)


def _checkpoint_meta(ckpt) -> ModelMeta | None:
    """ModelMeta from whatever read_checkpoint returned (object with .meta, dict, or tuple)."""
    for candidate in (getattr(ckpt, 'meta', None),
                      ckpt.get('meta') if isinstance(ckpt, dict) else None,
                      ckpt[1] if isinstance(ckpt, tuple) and len(ckpt) > 1 else None):
        if isinstance(candidate, ModelMeta):
            return candidate
        if isinstance(candidate, dict):
            return ModelMeta.from_dict(candidate)
    return None


def _calibration_frames(args, meta: ModelMeta):
    """INT8 calibration inputs from ``--calib-images`` or ``--calib-data``/``--calib-split``."""
    from . import onnx_precision as op

    if args.calib_images:
        paths = op.list_calibration_images(args.calib_images)
    elif args.calib_data and args.calib_split:
        paths = op.split_images(args.calib_data, args.calib_split)
    else:
        raise BackendError('--precision int8 needs calibration frames: --calib-images DIR, or '
                           '--calib-data DIR --calib-split FILE (a KITTI-format data set)')
    return op.calibration_inputs(op.pick_frames(paths, args.calib_count), meta)


def _cmd_onnx(args) -> int:
    import tempfile

    from .onnx_precision import write_precision

    net, meta, sha = load_network(None if args.random_weights else args.checkpoint,
                                  args.variant, args.max_depth, args.seed)
    # without metadata (official checkpoints), the variant is the network actually built
    base = meta or ModelMeta(variant=net.variant, max_depth=net.max_depth)
    overrides = {'variant': net.variant, 'precision': 'fp32'}
    if args.height:
        overrides['input_height'] = args.height
    if args.width:
        overrides['input_width'] = args.width
    if args.max_depth:
        overrides['max_depth'] = args.max_depth
    if args.focal_px:
        overrides['focal_px'] = args.focal_px
    meta = ModelMeta.from_dict({**base.to_dict(), **overrides})
    # calibration frames are read first, so a bad --calib-images fails before the export
    frames = _calibration_frames(args, meta) if args.precision == 'int8' else None
    if args.precision == 'fp32':
        export_onnx(net, meta, args.out, dynamic_batch=args.dynamic_batch, opset=args.opset,
                    simplify=not args.no_simplify, checkpoint_sha256=sha)
    else:
        directory = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            fp32 = os.path.join(tmp, 'fp32.onnx')
            export_onnx(net, meta, fp32, dynamic_batch=args.dynamic_batch, opset=args.opset,
                        simplify=not args.no_simplify, checkpoint_sha256=sha)
            write_precision(fp32, args.out, args.precision, frames)
    sys.stdout.write(f'{args.out}\n')
    return 0


def _cmd_tensorrt(args) -> int:
    from urcdc_depth_ros.inference import engine_cache, tensorrt_build

    meta = tensorrt_build.read_onnx_meta(args.onnx, required=False)
    onnx_precision = meta.precision if meta is not None else 'fp32'
    trt_major, missing = args.trt_major, None
    if not args.print_only:
        try:
            trt, _ = tensorrt_build.import_tensorrt()
            trt_major = tensorrt_build.tensorrt_major(trt)
        except BackendError as exc:  # the command line is printed first, then this error
            missing = exc
    precision, strongly_typed = tensorrt_build.plan_precision(
        onnx_precision, args.precision, trt_major)
    shape = tensorrt_build.onnx_input_shape(args.onnx)
    profile = tensorrt_build.profile_shapes(shape, args.max_batch) if shape else None
    engine = args.out or os.path.splitext(args.onnx)[0] + f'.{precision}.engine'
    fp32_layers = [] if strongly_typed else tensorrt_build.fp32_node_names(args.onnx)
    cmd = trtexec_command(args.onnx, engine, precision, strongly_typed, args.workspace_mb,
                          args.timing_cache, args.dla_core, fp32_layers, trt_major, profile)
    sys.stdout.write(f'equivalent trtexec command (TensorRT {trt_major}.x):\n{cmd}\n')
    sys.stdout.flush()
    if missing is not None:
        raise missing
    if args.print_only:
        return 0
    with tensorrt_build.cuda_context(args.device):
        device = tensorrt_build.current_device_info(args.device)
        info = tensorrt_build.build_engine(
            args.onnx, engine, precision=args.precision, workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache, dla_core=args.dla_core, meta=meta,
            max_batch=args.max_batch)
    key = engine_cache.EngineKey.for_device(device, file_sha256(args.onnx), precision,
                                            args.dla_core, args.max_batch)
    engine_cache.write_sidecar(engine, key, **info)
    sys.stdout.write(f'{engine}\n')
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer >= 1')
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``urcdc-export`` argument parser."""
    ap = argparse.ArgumentParser(prog='urcdc-export', description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest='command', required=True)
    o = sub.add_parser('onnx', help='torch checkpoint -> ONNX (inference path)')
    src = o.add_mutually_exclusive_group(required=True)
    src.add_argument('--checkpoint', help='our checkpoint (.pt) or an official one')
    src.add_argument('--random-weights', action='store_true',
                     help='random weights (demos/tests; needs --variant)')
    o.add_argument('--variant', help='tiny07 base07 base12 large07 nano07 (default: from the '
                   'checkpoint)')
    o.add_argument('--height', type=int, default=0, help='input height, px (default: meta)')
    o.add_argument('--width', type=int, default=0, help='input width, px (default: meta)')
    o.add_argument('--max-depth', type=float, default=0.0, help='metres (default: meta)')
    o.add_argument('--focal-px', type=float, default=0.0,
                   help='training camera fx at input scale, px (default: meta)')
    o.add_argument('--out', required=True, help='output .onnx')
    o.add_argument('--dynamic-batch', action='store_true')
    o.add_argument('--opset', type=int, default=MIN_OPSET)
    o.add_argument('--no-simplify', action='store_true', help='skip onnxslim')
    o.add_argument('--seed', type=int, default=0, help='seed for --random-weights')
    o.add_argument('--precision', choices=MODEL_PRECISIONS, default='fp32',
                   help='fp32; fp16 (mixed: norms, softmax, heads and I/O stay FP32); int8 '
                   '(QDQ, per-channel weights, calibrated on --calib-images frames)')
    o.add_argument('--calib-images', help='INT8: directory of frames from the target camera')
    o.add_argument('--calib-data', help='INT8: KITTI-format data directory (with --calib-split)')
    o.add_argument('--calib-split', help='INT8: split file listing images under --calib-data')
    o.add_argument('--calib-count', type=int, default=DEFAULT_CALIBRATION_FRAMES,
                   help='INT8: frames used, spread evenly over the source '
                   f'(default {DEFAULT_CALIBRATION_FRAMES}, at least 8)')
    o.set_defaults(func=_cmd_onnx)
    t = sub.add_parser('tensorrt', help='ONNX -> strongly typed TensorRT engine + sidecar '
                       '(no torch needed)')
    t.add_argument('--onnx', required=True)
    t.add_argument('--out', help='engine path (default: <onnx>.<precision>.engine)')
    p = t.add_mutually_exclusive_group()
    p.add_argument('--precision', choices=BUILD_PRECISIONS, default='auto',
                   help="auto (default): the ONNX graph's own precision; fp16 from an FP32 "
                   'ONNX works on TensorRT < 11 only (weakly typed)')
    for name in ('fp32', 'fp16', 'int8'):  # the flags of earlier releases, same meaning
        p.add_argument(f'--{name}', dest='precision', action='store_const', const=name,
                       help=f'same as --precision {name}')
    t.add_argument('--trt-major', type=int, default=10,
                   help='TensorRT major version for --print-only (default 10)')
    t.add_argument('--dla-core', type=int, default=None, help='DLA core, with GPU fallback')
    t.add_argument('--workspace-mb', type=int, default=2048)
    t.add_argument('--max-batch', type=_positive_int, default=1,
                   help='largest batch of one call (e.g. the number of cameras of a rig): '
                   'optimisation profile min 1 / opt N / max N; N > 1 needs an ONNX from '
                   '`urcdc-export onnx --dynamic-batch` (default 1)')
    t.add_argument('--timing-cache', help='timing cache file (read and updated)')
    t.add_argument('--device', type=int, default=0, help='CUDA device index')
    t.add_argument('--print-only', action='store_true',
                   help='only print the trtexec command')
    t.set_defaults(func=_cmd_tensorrt)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 = error with a message)."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UrcdcDepthError as exc:
        logger.error('%s', exc)
        return 2


if __name__ == '__main__':
    sys.exit(main())
