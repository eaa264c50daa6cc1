"""FP32 ONNX -> FP16 (mixed) or INT8 (QDQ) ONNX, so precision travels with the model file.

Used by ``urcdc-export onnx --precision fp16|int8``; needs ``onnx`` and ``onnxruntime`` only
(no torch). Why these libraries (and not NVIDIA ModelOpt) is in docs/architecture.md,
"Low-precision ONNX".

* ``fp16``: ``onnxruntime.transformers.float16`` casts weights and activations to float16,
  keeping float32 graph inputs/outputs and the nodes of :func:`float_nodes` (the op types of
  ``tensorrt_build.FP32_OP_TYPES``: norms, softmax, the variance ops; plus the depth and
  uncertainty heads and the final ``max_depth`` scaling), with explicit Casts at the borders.
* ``int8``: ``onnxruntime.quantization.quantize_static`` in QDQ format: per-channel symmetric
  INT8 weights and INT8 activations on Conv/MatMul/Gemm inputs, with ranges from min-max
  calibration on real camera frames preprocessed exactly like inference. The nodes of
  :func:`float_nodes` stay float. TensorRT reads the QuantizeLinear/DequantizeLinear pairs as
  explicit quantization; ONNX Runtime CPU runs them too.

Both write ``precision`` into the ``ModelMeta`` and the list of float nodes into the
``urcdc_float_nodes`` metadata entry.
"""
from __future__ import annotations

import glob
import json
import logging
import os
from typing import Iterable, Sequence

import numpy as np

from urcdc_depth_ros.config import MODEL_PRECISIONS, ModelMeta
from urcdc_depth_ros.errors import BackendError
from urcdc_depth_ros.inference.base import INPUT_NAME, META_KEY
from urcdc_depth_ros.inference.tensorrt_build import FP32_OP_TYPES

logger = logging.getLogger(__name__)

#: node-name fragments of the output heads (``URCDCDepth.disp_head1`` / ``uncer_head1``)
HEAD_NAME_PARTS = ('/disp_head', '/uncer_head')
#: metadata_props key listing the nodes kept in float32 (JSON list of node names)
FLOAT_NODES_KEY = 'urcdc_float_nodes'
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm')
MIN_CALIBRATION_FRAMES = 8
DEFAULT_CALIBRATION_FRAMES = 64
#: op types that get INT8 inputs (the rest stays float between them)
INT8_OP_TYPES = ('Conv', 'MatMul', 'Gemm')


def float_nodes(model) -> list[str]:
    """Names of the nodes that stay float32 in FP16 and INT8 graphs.

    Norm / softmax / variance ops (``FP32_OP_TYPES``), every node of the two output heads and
    the nodes that write a graph output (the ``max_depth`` scaling).
    """
    outputs = {o.name for o in model.graph.output}
    keep = []
    for node in model.graph.node:
        if node.op_type in FP32_OP_TYPES or any(p in node.name for p in HEAD_NAME_PARTS) \
                or outputs & set(node.output):
            keep.append(node.name)
    return keep


def convert_fp16(model):
    """A mixed FP16 copy of an FP32 ``onnx.ModelProto`` (float32 I/O and :func:`float_nodes`)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    keep = float_nodes(model)
    unnamed = [n for n in model.graph.node if not n.name]
    if unnamed:
        raise BackendError(f'{len(unnamed)} ONNX nodes have no name; re-export the FP32 model '
                           'with `urcdc-export onnx` (node names pick what stays FP32)')
    out = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep,
                                   disable_shape_infer=False)
    OnnxModel(out).topological_sort()  # reason: the converter appends its I/O Casts last
    _set_precision(out, 'fp16', keep)
    return out


def list_calibration_images(directory: str | os.PathLike) -> list[str]:
    """Sorted image files in ``directory``; BackendError if there are none."""
    files = sorted(f for f in glob.glob(os.path.join(os.fspath(directory), '*'))
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise BackendError(f'no calibration images ({", ".join(IMAGE_EXTENSIONS)}) in '
                           f'{os.fspath(directory)!r}; pass --calib-images with '
                           f'~{DEFAULT_CALIBRATION_FRAMES} frames from the target camera')
    return files


def split_images(data_dir: str, split_file: str) -> list[str]:
    """Image paths of a KITTI-format split file (paths relative to ``data_dir``)."""
    from .datasets.base import parse_split

    return [os.path.join(data_dir, e.image) for e in parse_split(split_file, 1.0)]


def pick_frames(paths: Sequence[str], count: int) -> list[str]:
    """``count`` paths spread evenly over ``paths`` (all when there are fewer)."""
    if count <= 0 or count >= len(paths):
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in idx]


def calibration_inputs(paths: Sequence[str], meta: ModelMeta,
                       resize_mode: str = 'kb_crop') -> list[np.ndarray]:
    """Network inputs (1, 3, h, w) float32 for ``paths``, preprocessed like inference.

    Raises BackendError for fewer than :data:`MIN_CALIBRATION_FRAMES` frames, an unreadable
    file or frames of different sizes (calibrate on one camera's frames).
    """
    import cv2

    from urcdc_depth_ros.preprocessing import preprocess

    if len(paths) < MIN_CALIBRATION_FRAMES:
        raise BackendError(f'{len(paths)} calibration frames are too few for INT8 ranges; '
                           f'give at least {MIN_CALIBRATION_FRAMES} (about '
                           f'{DEFAULT_CALIBRATION_FRAMES} from the target camera is typical)')
    out, size = [], None
    for path in paths:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise BackendError(f'calibration image {path!r} is unreadable; remove it or pass '
                               'a directory of PNG/JPEG camera frames')
        h, w = bgr.shape[:2]
        if size is None:
            size = (h, w)
        elif (h, w) != size:
            raise BackendError(f'calibration image {path!r} is {w}x{h}, the first one '
                               f'{size[1]}x{size[0]}; use frames of one camera at one size')
        K_px = np.array([[meta.focal_px, 0, w / 2], [0, meta.focal_px, h / 2], [0, 0, 1]])
        x, _ = preprocess(bgr, K_px, meta, 'bgr8', resize_mode)
        out.append(np.ascontiguousarray(x, dtype=np.float32))
    return out


def quantize_int8(fp32_path: str, out_path: str, inputs: Iterable[np.ndarray]) -> None:
    """Write a QDQ INT8 copy of ``fp32_path`` calibrated on ``inputs`` (each (1, 3, h, w))."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)

    model = onnx.load(fp32_path)
    keep = float_nodes(model)
    frames = list(inputs)
    if _unshare_float_initializers(model, set(keep)):
        fp32_path = out_path + '.float.onnx'
        onnx.save(model, fp32_path)

    class _Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(frames)

        def get_next(self):  # noqa: D102 (onnxruntime callback)
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    quantize_static(fp32_path, out_path, _Frames(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OP_TYPES),
                    nodes_to_exclude=keep, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True,
                                   'CalibMaxIntermediateOutputs': _merge_every(len(frames))})
    if fp32_path.endswith('.float.onnx'):
        os.remove(fp32_path)
    out = onnx.load(out_path)
    _set_precision(out, 'int8', keep)
    onnx.save(out, out_path)
    logger.info('INT8 QDQ model %s: %d frames, %d float nodes', out_path, len(frames), len(keep))


def _merge_every(count: int) -> int:
    """How many frames' activations the calibrator holds before merging their ranges.

    Bounds memory at 352x1216 (a frame's intermediate tensors are hundreds of MB). reason:
    onnxruntime 1.32's MinMaxCalibrater raises "No data is collected" when the frame count
    is a multiple of this number (the last merge leaves its buffer empty), so pick one that
    does not divide ``count``.
    """
    return next(k for k in (4, 3, 5, 7, 11, 13) if count % k)


def _unshare_float_initializers(model, keep: set[str]) -> int:
    """Give float nodes their own copy of initializers they share with other nodes.

    reason: onnxslim merges identical constants (e.g. all-ones LayerNorm scales and a weight),
    and the quantizer would then feed the norm a DequantizeLinear output. Returns the count.
    """
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                users.setdefault(name, set()).add(node.name)
    copies = 0
    for node in model.graph.node:
        if node.name not in keep:
            continue
        for k, name in enumerate(node.input):
            if name in inits and users[name] - keep:
                copy = model.graph.initializer.add()
                copy.CopyFrom(inits[name])
                copy.name = f'{name}__float_{copies}'
                node.input[k] = copy.name
                copies += 1
    return copies


def write_precision(fp32_path: str, out_path: str, precision: str,
                    frames: Sequence[np.ndarray] | None = None) -> str:
    """Write ``fp32_path`` at ``precision`` to ``out_path`` (``frames``: INT8 calibration)."""
    import onnx

    if precision not in MODEL_PRECISIONS:
        raise BackendError(f'precision {precision!r} is not one of {list(MODEL_PRECISIONS)}')
    if precision == 'fp32':
        if os.path.abspath(fp32_path) != os.path.abspath(out_path):
            onnx.save(onnx.load(fp32_path), out_path)
        return out_path
    if precision == 'fp16':
        model = convert_fp16(onnx.load(fp32_path))
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, out_path)
    else:
        if frames is None:
            raise BackendError('INT8 needs calibration frames: pass --calib-images DIR or '
                               '--calib-data DIR --calib-split FILE')
        quantize_int8(fp32_path, out_path, frames)
    logger.info('wrote %s ONNX %s', precision, out_path)
    return out_path


def _set_precision(model, precision: str, keep: Sequence[str]) -> None:
    """Rewrite the ModelMeta's ``precision`` and the float-node list in metadata_props."""
    from .export import metadata_props

    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise BackendError('the FP32 ONNX carries no model metadata; export it with '
                           '`urcdc-export onnx`')
    meta = ModelMeta.from_dict({**json.loads(props[META_KEY]), 'precision': precision})
    props.update(metadata_props(meta, props.get('checkpoint_sha256'),
                                int(props.get('opset', '17'))))
    props[FLOAT_NODES_KEY] = json.dumps(list(keep))
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


__all__ = ['float_nodes', 'convert_fp16', 'quantize_int8', 'write_precision', 'calibration_inputs',
           'list_calibration_images', 'split_images', 'pick_frames', 'FLOAT_NODES_KEY',
           'MIN_CALIBRATION_FRAMES', 'DEFAULT_CALIBRATION_FRAMES', 'HEAD_NAME_PARTS']
