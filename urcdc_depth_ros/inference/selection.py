"""Which backend runs a model (``backend: auto``) and how the node's generic options map to it.

Decided by the model file and what is installed, never by timing or guessing:

1. a checkpoint (``.pt``, ``.pth``, ``.ckpt``) runs only in ``torch``;
2. a serialized engine (``.engine``, ``.plan``) runs only in ``tensorrt``;
3. an ``.onnx`` file: ``tensorrt`` where the TensorRT Python API, pycuda and a CUDA device
   are present (a Jetson, a CUDA desktop); else ``openvino`` on an x86 CPU with OpenVINO
   installed; else ``onnxruntime``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import platform
from typing import Any, Callable

from ..errors import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = ('.pt', '.pth', '.ckpt')
ENGINE_SUFFIXES = ('.engine', '.plan')
X86_MACHINES = ('x86_64', 'amd64', 'i686', 'i386')
#: generic option -> the keyword each backend's constructor takes for it
OPTION_NAMES: dict[str, dict[str, str]] = {
    'onnxruntime': {'threads': 'intra_op_threads'},
    'openvino': {'threads': 'threads', 'precision': 'precision'},
    'tensorrt': {'precision': 'precision', 'max_batch': 'max_batch'},
    'torch': {'threads': 'threads', 'precision': 'torch_dtype'},
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_device_count() -> int:
    """CUDA devices pycuda sees (0 when the driver is missing or fails)."""
    try:
        import pycuda.driver as cuda
        cuda.init()
        return cuda.Device.count()
    except Exception:  # reason: pycuda raises its own LogicError/RuntimeError without a GPU
        return 0


def choose_backend(model_path: str | os.PathLike, installed: Callable[[str], bool] = _installed,
                   cuda_devices: Callable[[], int] = _cuda_device_count,
                   machine: str | None = None) -> tuple[str, str]:
    """``(backend name, reason)`` for ``model_path`` under the rules in the module docstring."""
    suffix = os.path.splitext(os.fspath(model_path))[1].lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return 'torch', f'{suffix} is a torch checkpoint'
    if suffix in ENGINE_SUFFIXES:
        return 'tensorrt', f'{suffix} is a serialized TensorRT engine'
    if suffix != '.onnx':
        raise ConfigError(f'backend auto cannot tell how to run {os.fspath(model_path)!r}: '
                          f'expected .onnx, {", ".join(ENGINE_SUFFIXES + CHECKPOINT_SUFFIXES)}; '
                          'or set backend explicitly')
    if installed('tensorrt') and installed('pycuda'):
        count = cuda_devices()
        if count:
            return 'tensorrt', f'TensorRT, pycuda and {count} CUDA device(s) are present'
    arch = (machine or platform.machine()).lower()
    if arch in X86_MACHINES and installed('openvino'):
        return 'openvino', f'OpenVINO is installed on this {arch} CPU (no TensorRT GPU)'
    return 'onnxruntime', 'no TensorRT GPU and no OpenVINO on x86: ONNX Runtime'


def backend_options(name: str, threads: int = 0, precision: str = '',
                    max_batch: int = 0) -> dict[str, Any]:
    """Constructor keywords of backend ``name`` for the generic ``threads``/``precision``/...

    0, ``''`` and ``'auto'`` mean "the backend's default" and are left out. A setting the
    backend has no use for (threads on TensorRT, precision on ONNX Runtime, an engine max
    batch on anything but TensorRT) raises ConfigError.
    """
    names = OPTION_NAMES.get(name, {})
    out: dict[str, Any] = {}
    for option, value in (('threads', int(threads)), ('precision', str(precision)),
                          ('max_batch', int(max_batch))):
        if not value or value == 'auto':
            continue
        if option not in names:
            default = '' if option == 'precision' else '0'
            raise ConfigError(f'backend {name!r} takes no {option} setting (got {value!r}); '
                              f'leave it at its default ({default!r})')
        out[names[option]] = value
    return out


__all__ = ['choose_backend', 'backend_options', 'OPTION_NAMES', 'CHECKPOINT_SUFFIXES',
           'ENGINE_SUFFIXES']
