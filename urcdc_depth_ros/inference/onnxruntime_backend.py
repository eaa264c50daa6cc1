"""ONNX Runtime backend: runs an ``urcdc-export onnx`` file on TensorRT / CUDA / CPU providers.

Imports onnxruntime only (no torch), so the ONNX path works on a minimal install. The model's
:class:`ModelMeta` is read from the ONNX file's metadata_props.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from ..config import ModelMeta
from ..errors import BackendError, ConfigError
from .base import (INPUT_NAME, OUTPUT_NAMES, check_input, meta_from_metadata, pad_batch,
                   require_file, run_in_batches)

logger = logging.getLogger(__name__)

#: preferred provider order when ``providers='auto'``
PROVIDER_PREFERENCE = ('TensorrtExecutionProvider', 'CUDAExecutionProvider',
                       'CPUExecutionProvider')
_SHORT = {'tensorrt': 'TensorrtExecutionProvider', 'cuda': 'CUDAExecutionProvider',
          'cpu': 'CPUExecutionProvider'}
_OPT_LEVELS = ('disable', 'basic', 'extended', 'all')


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError('the onnxruntime backend needs onnxruntime: `pip install onnxruntime` '
                           '(or onnxruntime-gpu)') from exc
    return onnxruntime


def resolve_providers(requested: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Provider list for a session.

    Args:
        requested: ``'auto'`` (TensorRT, CUDA, CPU as available), or names / short names
            (``'cpu'``, ``'cuda'``, ``'tensorrt'``) to force, in order of preference.
        available: ``onnxruntime.get_available_providers()``.
    """
    if requested == 'auto':
        return [p for p in PROVIDER_PREFERENCE if p in available] or list(available)
    if isinstance(requested, str):
        requested = [requested]
    names = [_SHORT.get(str(p).lower(), p) for p in requested]
    missing = [p for p in names if p not in available]
    if missing:
        raise ConfigError(f'onnxruntime providers {missing!r} are not available here '
                          f'(available: {list(available)}); use providers=\'auto\' or install '
                          'onnxruntime-gpu')
    return names


class OnnxRuntimeBackend:
    """ONNX Runtime session over an exported URCDC-Depth model.

    Args:
        model_path: ``.onnx`` written by ``urcdc-export onnx``.
        providers: ``'auto'`` or a forced list (see :func:`resolve_providers`).
        intra_op_threads: CPU threads per operator; 0 = all cores (os.cpu_count()).
        graph_optimization: ``'disable' | 'basic' | 'extended' | 'all'``.
        meta: override the metadata stored in the file (for foreign ONNX files).
    """

    name = 'onnxruntime'

    def __init__(self, model_path: str | os.PathLike, providers='auto', intra_op_threads: int = 0,
                 graph_optimization: str = 'all', meta: ModelMeta | None = None) -> None:
        ort = _import_ort()
        path = require_file(model_path, 'ONNX model',
                            'export one with `urcdc-export onnx --checkpoint CKPT --out FILE`')
        if graph_optimization not in _OPT_LEVELS:
            raise ConfigError(f'graph_optimization={graph_optimization!r} is not one of '
                              f'{list(_OPT_LEVELS)}')
        opts = ort.SessionOptions()
        level = {'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                 'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                 'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                 'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[graph_optimization]
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = int(intra_op_threads) if intra_op_threads else (
            os.cpu_count() or 1)
        opts.log_severity_level = 3
        # subnormal floats slow x86 GEMMs 10-30x and carry no depth information
        opts.add_session_config_entry('session.set_denormal_as_zero', '1')
        # no pre-planned block for all intermediates: the arena reuses freed chunks instead.
        # nano07 at 352 x 1216 (CPU, 2026-12-01): peak RSS 209 -> 168 MiB at batch 1 and
        # 522 -> 357 MiB at batch 4, same speed (170.7 vs 170.9 ms)
        opts.enable_mem_pattern = False
        self.providers = resolve_providers(providers, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(path, sess_options=opts,
                                                 providers=self.providers)
        except Exception as exc:  # reason: ORT raises its own non-exported exception types
            raise BackendError(f'onnxruntime cannot load {path!r} ({exc}); the file is corrupt '
                               'or not an ONNX model: re-export it with `urcdc-export onnx`'
                               ) from exc
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        self.meta = meta if meta is not None else meta_from_metadata(props, f'ONNX file {path!r}')
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        if INPUT_NAME not in inputs or not set(OUTPUT_NAMES) <= set(outputs):
            raise BackendError(f'{path!r} has inputs {list(inputs)} / outputs {outputs}; expected '
                               f'{INPUT_NAME!r} -> {list(OUTPUT_NAMES)} (use `urcdc-export onnx`)')
        shape = inputs[INPUT_NAME].shape
        self.dynamic_batch = not isinstance(shape[0], int)
        batch = 1 if self.dynamic_batch else int(shape[0])
        self.input_shape = (batch, 3, self.meta.input_height, self.meta.input_width)
        if [d for d in shape[1:]] != list(self.input_shape[1:]):
            raise BackendError(f'{path!r} input shape {shape!r} disagrees with its metadata '
                               f'{self.input_shape!r}; re-export it')
        self.model_path = path
        self.precision = self.meta.precision
        self.device = self.providers[0]
        logger.info('onnxruntime backend: %s on %s (%s, %d threads)', path, self.providers,
                    graph_optimization, opts.intra_op_num_threads)

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 normalised -> {'depth', 'uncertainty'} each (N, 1, H, W)."""
        if self._session is None:
            raise BackendError('onnxruntime backend used after close()')
        x = check_input(x, self.input_shape)
        n = x.shape[0]
        step = n if self.dynamic_batch else self.input_shape[0]

        def run(chunk):
            return dict(zip(OUTPUT_NAMES, self._session.run(list(OUTPUT_NAMES),
                                                            {INPUT_NAME: chunk})))
        out = run_in_batches(run, pad_batch(x, step), step)
        return {name: out[name][:n].astype(np.float32, copy=False) for name in OUTPUT_NAMES}

    def close(self) -> None:
        """Drop the session."""
        self._session = None


__all__ = ['OnnxRuntimeBackend', 'resolve_providers', 'PROVIDER_PREFERENCE']
