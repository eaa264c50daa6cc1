"""TensorRT 10.3-11.x backend (Jetson / desktop GPU): tensorrt + pycuda + numpy, no torch.

Accepts a serialized engine (``.engine``/``.plan`` with its JSON sidecar from
``urcdc-export tensorrt``) or an ONNX file, which is built into the engine cache on first
start (:mod:`.engine_cache`; minutes on a Jetson, logged with the reason and duration).

CUDA context and threads: the constructor creates a pycuda context on ``device`` and pops it,
and :meth:`infer` pushes it for the duration of each call, so the backend may be created in
one thread (e.g. a lifecycle node's configure callback) and used from another (the inference
callback group). Calls must not overlap: one execution context, one stream, fixed page-locked
host buffers.

Batch: an engine built from a dynamic-batch ONNX with ``max_batch`` N (its optimisation
profile min 1 / opt N / max N) runs any batch of 1 to N in one call; buffers are sized for N.
A larger batch (a rig with more cameras than N) is split into several calls of up to N, as
is any batch on a static-batch engine (the last call padded).
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
                             onnx_input_shape, plan_precision, profile_shapes, read_onnx_meta)

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
        max_batch: when building from ONNX, the largest batch of one call (the profile's max;
            needs ``urcdc-export onnx --dynamic-batch`` for N > 1). A given engine keeps the
            batch it was built with (read from its profile).
    """

    name = 'tensorrt'

    def __init__(self, model_path: str | os.PathLike, precision: str = 'auto', device: int = 0,
                 cache_dir: str | None = None, workspace_mb: int = 2048,
                 timing_cache: str | None = None, dla_core: int | None = None,
                 rebuild: bool = False, meta: ModelMeta | None = None,
                 max_batch: int = 1) -> None:
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
                        path, info, precision, cache_dir, rebuild, dla_core, max_batch,
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
        if not path.lower().endswith('.onnx') and max_batch not in (1, self.max_batch):
            logger.warning('engine %s was built for batches up to %d, not max_batch %d; rebuild '
                           'it with `urcdc-export tensorrt --max-batch %d` (larger batches run '
                           'as several calls)', engine_path, self.max_batch, max_batch, max_batch)
        self.model_path = engine_path
        self.precision = (sidecar or {}).get('precision', self.meta.precision)
        self.device = f'{info.gpu_name} (TensorRT {info.tensorrt_version})'
        logger.info('tensorrt backend: %s on %s, %s', engine_path, self.device, self.precision)

    @staticmethod
    def _cached_engine(onnx_path, info, precision, cache_dir, rebuild, dla_core, max_batch,
                       **build_opts):
        """Engine for ``onnx_path`` from the cache, built now when missing or stale."""
        onnx_meta = read_onnx_meta(onnx_path)
        major = int(info.tensorrt_version.split('.')[0])
        engine_precision, _ = plan_precision(onnx_meta.precision, precision, major)
        shape = onnx_input_shape(onnx_path)
        if shape is not None:
            profile_shapes(shape, max_batch)  # a static-batch ONNX fails here, before a build

        def _build(src: str, out_path: str):
            return build_engine(src, out_path, precision=precision, dla_core=dla_core,
                                meta=onnx_meta, max_batch=max_batch, **build_opts)

        return ensure_engine(onnx_path, engine_precision, info, _build, cache_dir,
                             dla_core=dla_core, force=rebuild, max_batch=max_batch)

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
        self._dynamic_batch = self._engine.get_tensor_shape(INPUT_NAME)[0] < 0
        max_input = tuple(self._engine.get_tensor_shape(INPUT_NAME))
        if self._dynamic_batch:  # profile 0 = (min, opt, max) shapes from build_engine
            max_input = tuple(self._engine.get_tensor_profile_shape(INPUT_NAME, 0)[2])
            self._context.set_input_shape(INPUT_NAME, max_input)
        for name in names:
            shape = (max_input if name == INPUT_NAME else
                     tuple(self._context.get_tensor_shape(name)))
            if any(d < 0 for d in shape):
                raise BackendError(f'engine tensor {name!r} has dynamic shape {shape}; export '
                                   'the ONNX with static H, W (only the batch may be dynamic)')
            dtype = trt.nptype(self._engine.get_tensor_dtype(name))
            host = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            dev = cuda.mem_alloc(host.nbytes)
            self._buffers.append(dev)
            self._context.set_tensor_address(name, int(dev))
            self._host[name], self._device_mem[name], self._shapes[name] = host, dev, shape
        if self._engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise BackendError(f'engine tensor {INPUT_NAME!r} is not an input')
        self.input_shape = tuple(int(d) for d in self._shapes[INPUT_NAME])
        #: largest batch of one engine call; larger batches run as several calls
        self.max_batch = self.input_shape[0]
        if self.input_shape[2:] != (self.meta.input_height, self.meta.input_width):
            raise BackendError(f'engine input {self.input_shape} disagrees with its metadata '
                               f'({self.meta.input_height}x{self.meta.input_width}); rebuild it')

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 normalised -> {'depth', 'uncertainty'} each (N, 1, H, W).

        Runs calls of up to :attr:`max_batch` samples: a dynamic-batch engine takes the last,
        smaller chunk as it is; a static-batch engine gets it padded.
        """
        if self._ctx is None:
            raise BackendError('tensorrt backend used after close()')
        x = check_input(x, self.input_shape)
        cuda, step, n = self._cuda, self.max_batch, x.shape[0]
        if not self._dynamic_batch:
            x = pad_batch(x, step)
        results = {name: [] for name in OUTPUT_NAMES}
        self._ctx.push()
        try:
            for i in range(0, x.shape[0], step):
                chunk = x[i:i + step]
                b = chunk.shape[0]
                if self._dynamic_batch:
                    self._context.set_input_shape(INPUT_NAME, (b,) + self.input_shape[1:])
                host_in = self._host[INPUT_NAME][:chunk.size]
                np.copyto(host_in, chunk.ravel().astype(host_in.dtype, copy=False))
                cuda.memcpy_htod_async(self._device_mem[INPUT_NAME], host_in, self._stream)
                if not self._context.execute_async_v3(stream_handle=self._stream.handle):
                    raise BackendError('TensorRT execute_async_v3 failed; see the TensorRT log')
                for name in OUTPUT_NAMES:
                    cuda.memcpy_dtoh_async(self._host[name], self._device_mem[name],
                                           self._stream)
                self._stream.synchronize()
                for name in OUTPUT_NAMES:
                    shape = (b,) + self._shapes[name][1:]
                    size = int(np.prod(shape))
                    results[name].append(
                        self._host[name][:size].reshape(shape).astype(np.float32))
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
