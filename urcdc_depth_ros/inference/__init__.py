"""Inference backends behind one Protocol, chosen by name from :data:`BACKENDS`.

Heavy runtimes are imported lazily: ``import urcdc_depth_ros.inference`` needs only numpy;
``create_backend('onnxruntime', ...)`` imports onnxruntime, ``'torch'`` imports torch, and
``'tensorrt'`` imports tensorrt + pycuda (the Jetson path runs without torch).
"""
from __future__ import annotations

import importlib
import os

from ..errors import ConfigError
from .base import InferenceBackend

#: backend name -> 'module:Class' (imported on first use)
BACKENDS: dict[str, str] = {
    'torch': 'urcdc_depth_ros.inference.torch_backend:TorchBackend',
    'onnxruntime': 'urcdc_depth_ros.inference.onnxruntime_backend:OnnxRuntimeBackend',
    'tensorrt': 'urcdc_depth_ros.inference.tensorrt_backend:TensorRTBackend',
    'openvino': 'urcdc_depth_ros.inference.openvino_backend:OpenVINOBackend',
}


def backend_class(name: str):
    """The backend class registered under ``name`` (imports its module)."""
    if name not in BACKENDS:
        raise ConfigError(f'unknown inference backend {name!r}; choose one of {list(BACKENDS)}')
    module, cls = BACKENDS[name].split(':')
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, model_path: str | os.PathLike, **options) -> InferenceBackend:
    """Create a backend by name.

    Args:
        name: ``'torch'`` (checkpoint ``.pt``), ``'onnxruntime'`` (``.onnx``) or ``'tensorrt'``
            (``.engine``/``.plan`` with its JSON sidecar, or ``.onnx`` built through the cache).
        model_path: model file.
        options: backend-specific keyword options (see each backend's constructor).
    Raises:
        ConfigError: unknown backend name.
        BackendError: missing or corrupt model file, runtime not installed.
    """
    return backend_class(name)(model_path, **options)


__all__ = ['BACKENDS', 'InferenceBackend', 'backend_class', 'create_backend']
