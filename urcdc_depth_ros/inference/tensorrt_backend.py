"""TensorRT 10.3-11.x backend (Jetson / desktop GPU): tensorrt + pycuda + numpy, no torch.

Accepts a serialized engine (``.engine``/``.plan`` with its JSON sidecar from
``urcdc-export tensorrt``) or an ONNX file, which is built into the engine cache on first
start (:mod:`.engine_cache`; minutes on a Jetson, logged with the reason and duration).

CUDA context and threads: the constructor creates a pycuda context on ``device`` and pops it,
and :meth:`infer` pushes it for the duration of each call, so the backend may be created in
one thread (e.g. a lifecycle node's configure callback) and used from another (the inference
callback group). Calls must not overlap: one execution context, one stream, fixed page-locked
host buffers.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..config import ModelMeta
from ..errors import BackendError
from .base import INPUT_NAME, OUTPUT_NAMES, check_input, pad_batch, require_file
from .engine_cache import check_engine_compatible, ensure_engine
from .tensorrt_build import (build_engine, current_device_info, import_tensorrt,
                             plan_precision, read_onnx_meta)

logger = logging.getLogger(__name__)


class TensorRTBackend:
    """TensorRT execution of an exported URCDC-Depth model.

    Args:
        model_path: ``.engine``/``.plan`` (+ ``.json`` sidecar) or ``.onnx`` (built and cached).
        precision: engine precision when building from ONNX: ``'auto'`` (the graph's own,
            from ``urcdc-export onnx --precision``) or ``'fp32' | 'fp16' | 'int8'``, which must
            match the graph (see :func:`tensorrt_build.plan_precision`).
        device: CUDA device index.
        cache_dir: engine cache directory (default :func:`engine_cache.default_cache_dir`).
        workspace_mb, timing_cache, dla_core: build options
            (see :func:`tensorrt_build.build_engine`).
        rebuild: rebuild the cached engine even if it looks current.
        meta: override the model metadata (otherwise from the sidecar / ONNX).
    """

    name = 'tensorrt'

    def __init__(self, model_path: str | os.PathLike, precision: str = 'auto', device: int = 0,
                 cache_dir: str | None = None, workspace_mb: int = 2048,
                 timing_cache: str | None = None, dla_core: int | None = None,
                 rebuild: bool = False, meta: ModelMeta | None = None) -> None:
        trt, cuda = import_tensorrt()
        self._trt, self._cuda = trt, cuda
        path = require_file(model_path, 'TensorRT model',
                            'pass an .onnx from `urcdc-export onnx` or an engine from '
                            '`urcdc-export tensorrt`')
        self._ctx = None
        self._buffers = []
        cuda.init()
        self._ctx = cuda.Device(device).make_context()  # current (pushed) until popped below
        try:
            try:
                info = current_device_info(device)
                if path.lower().endswith('.onnx'):
                    engine_path, sidecar = self._cached_engine(
                        path, info, precision, cache_dir, rebuild, dla_core,
                        workspace_mb=workspace_mb, timing_cache=timing_cache)
                else:
                    engine_path = path
                    sidecar = check_engine_compatible(path, info)
                self.meta = meta or self._meta_from_sidecar(sidecar, engine_path)
                self._load(engine_path)
            finally:
                self._ctx.pop()
        except BaseException:
            self.close()
            raise
        self.model_path = engine_path
        self.precision = (sidecar or {}).get('precision', self.meta.precision)
        self.device = f'{info.gpu_name} (TensorRT {info.tensorrt_version})'
        logger.info('tensorrt backend: %s on %s, %s', engine_path, self.device, self.precision)

    @staticmethod
    def _cached_engine(onnx_path, info, precision, cache_dir, rebuild, dla_core, **build_opts):
        """Engine for ``onnx_path`` from the cache, built now when missing or stale."""
        onnx_meta = read_onnx_meta(onnx_path)
        major = int(info.tensorrt_version.split('.')[0])
        engine_precision, _ = plan_precision(onnx_meta.precision, precision, major)

        def _build(src: str, out_path: str):
            return build_engine(src, out_path, precision=precision, dla_core=dla_core,
                                meta=onnx_meta, **build_opts)

        return ensure_engine(onnx_path, engine_precision, info, _build, cache_dir,
                             dla_core=dla_core, force=rebuild)

    @staticmethod
    def _meta_from_sidecar(sidecar, engine_path: str) -> ModelMeta:
        if not sidecar or 'meta' not in sidecar:
            raise BackendError(f'engine {engine_path!r} sidecar has no model metadata; rebuild '
                               'it with `urcdc-export tensorrt --onnx MODEL.onnx`')
        return ModelMeta.from_dict(sidecar['meta'])

    def _load(self, engine_path: str) -> None:
        trt, cuda = self._trt, self._cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with open(engine_path, 'rb') as f:
            self._engine = self._runtime.deserialize_cuda_engine(f.read())
        if self._engine is None:
            raise BackendError(f'TensorRT cannot deserialize {engine_path!r}: the file is corrupt '
                               'or was built by another TensorRT version; rebuild it with '
                               '`urcdc-export tensorrt` on this machine')
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._host, self._device_mem, self._shapes = {}, {}, {}
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = {INPUT_NAME, *OUTPUT_NAMES}
        if not expected <= set(names):
            raise BackendError(f'engine {engine_path!r} has tensors {names}; expected '
                               f'{sorted(expected)} (build it from `urcdc-export onnx` output)')
        for name in names:
            shape = tuple(self._engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f'engine tensor {name!r} has dynamic shape {shape}; export '
                                   'the ONNX with static shapes')
            dtype = trt.nptype(self._engine.get_tensor_dtype(name))
            host = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            dev = cuda.mem_alloc(host.nbytes)
            self._buffers.append(dev)
            self._context.set_tensor_address(name, int(dev))
            self._host[name], self._device_mem[name], self._shapes[name] = host, dev, shape
        if self._engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise BackendError(f'engine tensor {INPUT_NAME!r} is not an input')
        self.input_shape = tuple(int(d) for d in self._shapes[INPUT_NAME])
        if self.input_shape[2:] != (self.meta.input_height, self.meta.input_width):
            raise BackendError(f'engine input {self.input_shape} disagrees with its metadata '
                               f'({self.meta.input_height}x{self.meta.input_width}); rebuild it')

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 normalised -> {'depth', 'uncertainty'} each (N, 1, H, W).

        Runs the fixed-batch engine once per ``input_shape[0]`` samples (the last call padded).
        """
        if self._ctx is None:
            raise BackendError('tensorrt backend used after close()')
        x = check_input(x, self.input_shape)
        cuda, step, n = self._cuda, self.input_shape[0], x.shape[0]
        x = pad_batch(x, step)  # a batch larger than the engine's runs as several calls
        results = {name: [] for name in OUTPUT_NAMES}
        self._ctx.push()
        try:
            for i in range(0, x.shape[0], step):
                host_in = self._host[INPUT_NAME]
                np.copyto(host_in, x[i:i + step].ravel().astype(host_in.dtype, copy=False))
                cuda.memcpy_htod_async(self._device_mem[INPUT_NAME], host_in, self._stream)
                if not self._context.execute_async_v3(stream_handle=self._stream.handle):
                    raise BackendError('TensorRT execute_async_v3 failed; see the TensorRT log')
                for name in OUTPUT_NAMES:
                    cuda.memcpy_dtoh_async(self._host[name], self._device_mem[name],
                                           self._stream)
                self._stream.synchronize()
                for name in OUTPUT_NAMES:
                    results[name].append(
                        self._host[name].reshape(self._shapes[name]).astype(np.float32))
        finally:
            self._ctx.pop()
        return {name: np.concatenate(parts, 0)[:n] for name, parts in results.items()}

    def close(self) -> None:
        """Free device buffers and the CUDA context; idempotent."""
        if self._ctx is None:
            return
        try:
            self._ctx.push()
            for buf in self._buffers:
                buf.free()
            self._buffers = []
            self._context = self._engine = self._runtime = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None


__all__ = ['TensorRTBackend']
