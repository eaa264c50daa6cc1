"""OpenVINO backend (Intel/x86 CPUs): reads our ONNX (FP32, FP16 or INT8 QDQ) directly.

Imports openvino only (no torch, no onnxruntime). Precision ``'bf16'`` sets OpenVINO's
``INFERENCE_PRECISION_HINT`` so matmuls and convolutions run in bfloat16 on CPUs with AMX or
AVX512-BF16; ``'auto'`` picks it exactly when the CPU plugin lists ``BF16`` among its
``OPTIMIZATION_CAPABILITIES``, else ``'f32'``. The depth scaling and the heads' sigmoids are
elementwise ops that OpenVINO keeps in the precision of their inputs; measured deviations are
in docs/benchmarks.md.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..config import ModelMeta
from ..errors import BackendError, ConfigError
from .base import (INPUT_NAME, OUTPUT_NAMES, check_input, meta_from_metadata, require_file,
                   run_in_batches)

logger = logging.getLogger(__name__)

PRECISIONS = ('auto', 'f32', 'bf16')
HINTS = ('latency', 'throughput')
#: oldest OpenVINO release tested with our opset-17 graphs (LayerNormalization, QDQ)
MIN_VERSION = (2024, 0)


def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise BackendError('the openvino backend needs OpenVINO: `pip install -r '
                           'requirements/openvino.txt` (x86 only)') from exc
    version = tuple(int(p) for p in openvino.__version__.split('-')[0].split('.')[:2])
    if version < MIN_VERSION:
        raise BackendError(f'OpenVINO {openvino.__version__} is too old for our ONNX files; '
                           f'{".".join(map(str, MIN_VERSION))} or newer is needed '
                           '(`pip install -r requirements/openvino.txt`)')
    return openvino


def resolve_precision(requested: str, capabilities) -> str:
    """``'f32'`` or ``'bf16'`` for ``requested`` given the CPU's OPTIMIZATION_CAPABILITIES."""
    if requested not in PRECISIONS:
        raise ConfigError(f'openvino precision {requested!r} is not one of {list(PRECISIONS)}')
    has_bf16 = 'BF16' in set(capabilities)
    if requested == 'auto':
        return 'bf16' if has_bf16 else 'f32'
    if requested == 'bf16' and not has_bf16:
        logger.warning('this CPU lists no BF16 support (%s); OpenVINO will run bf16 as f32',
                       list(capabilities))
    return requested


class OpenVINOBackend:
    """OpenVINO CPU inference of an exported URCDC-Depth model.

    Args:
        model_path: ``.onnx`` from ``urcdc-export onnx`` (any ``--precision``).
        precision: ``'auto' | 'f32' | 'bf16'`` (see :func:`resolve_precision`).
        threads: CPU inference threads; 0 = OpenVINO's default (all physical cores).
        hint: ``'latency'`` (one frame at a time, the node's case) or ``'throughput'``.
        device: OpenVINO device name (``'CPU'``; ``'GPU'`` for Intel graphics).
        meta: override the metadata stored in the file.
    """

    name = 'openvino'

    def __init__(self, model_path: str | os.PathLike, precision: str = 'auto', threads: int = 0,
                 hint: str = 'latency', device: str = 'CPU',
                 meta: ModelMeta | None = None) -> None:
        ov = _import_openvino()
        path = require_file(model_path, 'ONNX model',
                            'export one with `urcdc-export onnx --checkpoint CKPT --out FILE`')
        if hint not in HINTS:
            raise ConfigError(f'openvino hint {hint!r} is not one of {list(HINTS)}')
        core = ov.Core()
        if device not in core.available_devices:
            raise BackendError(f'OpenVINO device {device!r} is not available here (available: '
                               f'{core.available_devices})')
        caps = core.get_property(device, 'OPTIMIZATION_CAPABILITIES')
        self.precision = resolve_precision(precision, caps)
        try:
            model = core.read_model(path)
        except Exception as exc:  # reason: OpenVINO raises RuntimeError subclasses per frontend
            raise BackendError(f'OpenVINO {ov.__version__} cannot read {path!r} ({exc}); the '
                               'file is corrupt or needs a newer OpenVINO') from exc
        rt_info = model.get_rt_info()
        props = dict(rt_info['framework']) if 'framework' in rt_info else {}
        self.meta = meta if meta is not None else meta_from_metadata(
            _onnx_metadata(path, props), f'ONNX file {path!r}')
        config = {'INFERENCE_PRECISION_HINT': self.precision,
                  'PERFORMANCE_HINT': hint.upper()}
        if threads:
            config['INFERENCE_NUM_THREADS'] = int(threads)
        self._compiled = core.compile_model(model, device, config)
        # a port has several tensor names (the FP16 graph's I/O Casts add one); match any
        inputs = [i.get_names() for i in self._compiled.inputs]
        self._outputs = {name: i for i, o in enumerate(self._compiled.outputs)
                         for name in o.get_names() if name in OUTPUT_NAMES}
        if len(inputs) != 1 or INPUT_NAME not in inputs[0] \
                or set(self._outputs) != set(OUTPUT_NAMES):
            raise BackendError(f'{path!r} has inputs {inputs} / outputs '
                               f'{[o.get_names() for o in self._compiled.outputs]}; expected '
                               f'{INPUT_NAME!r} -> {list(OUTPUT_NAMES)} (use `urcdc-export onnx`)')
        shape = self._compiled.inputs[0].get_partial_shape()
        self.dynamic_batch = shape[0].is_dynamic
        batch = 1 if self.dynamic_batch else shape[0].get_length()
        self.input_shape = (batch, 3, self.meta.input_height, self.meta.input_width)
        self._request = self._compiled.create_infer_request()
        self.model_path = path
        self.device = f'{device} ({core.get_property(device, "FULL_DEVICE_NAME")})'
        logger.info('openvino backend: %s on %s, %s, %s hint, %s threads', path, self.device,
                    self.precision, hint, threads or 'default')

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 normalised -> {'depth', 'uncertainty'} each (N, 1, H, W)."""
        if self._request is None:
            raise BackendError('openvino backend used after close()')
        x = check_input(x, self.input_shape)
        step = x.shape[0] if self.dynamic_batch else self.input_shape[0]

        def run(chunk):  # copies: the request reuses its output tensors on the next call
            self._request.infer({0: chunk})
            return {name: np.array(self._request.get_output_tensor(index).data,
                                   dtype=np.float32) for name, index in self._outputs.items()}
        return run_in_batches(run, x, step)

    def close(self) -> None:
        """Drop the compiled model and its request."""
        self._request = None
        self._compiled = None


def _onnx_metadata(path: str, rt_props) -> dict[str, str]:
    """metadata_props of the ONNX file (read with ``onnx`` when OpenVINO does not keep them)."""
    if rt_props:
        return {str(k): v.astype(str) if hasattr(v, 'astype') else str(v)
                for k, v in rt_props.items()}
    try:
        import onnx
    except ImportError as exc:
        raise BackendError('reading ONNX metadata needs the onnx package: `pip install onnx`'
                           ) from exc
    model = onnx.load(path, load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


__all__ = ['OpenVINOBackend', 'resolve_precision', 'PRECISIONS', 'HINTS', 'MIN_VERSION']
