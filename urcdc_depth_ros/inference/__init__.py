"""Inference backends behind one Protocol, chosen by name from :data:`BACKENDS`.

Heavy runtimes are imported lazily: ``import urcdc_depth_ros.inference`` needs only numpy;
``create_backend('onnxruntime', ...)`` imports onnxruntime, ``'torch'`` imports torch, and
``'tensorrt'`` imports tensorrt + pycuda (the Jetson path runs without torch), ``'openvino'``
imports openvino. ``'auto'`` picks one from the model file and what is installed
(:func:`.selection.choose_backend`) and logs why.
"""
from __future__ import annotations

import importlib
import logging
import os

from ..errors import ConfigError
from .base import InferenceBackend
from .selection import backend_options, choose_backend

logger = logging.getLogger(__name__)

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
        raise ConfigError(f'unknown inference backend {name!r}; choose one of '
                          f'{list(BACKENDS) + ["auto"]}')
    module, cls = BACKENDS[name].split(':')
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, model_path: str | os.PathLike, **options) -> InferenceBackend:
    """Create a backend by name.

    Args:
        name: ``'torch'`` (checkpoint ``.pt``), ``'onnxruntime'`` / ``'openvino'`` (``.onnx``),
            ``'tensorrt'`` (``.engine``/``.plan`` with its JSON sidecar, or ``.onnx`` built
            through the cache) or ``'auto'`` (:func:`resolve_backend`).
        model_path: model file.
        options: backend-specific keyword options (see each backend's constructor).
    Raises:
        ConfigError: unknown backend name.
        BackendError: missing or corrupt model file, runtime not installed.
    """
    return backend_class(resolve_backend(name, model_path))(model_path, **options)


def resolve_backend(name: str, model_path: str | os.PathLike) -> str:
    """``name``, or for ``'auto'`` the backend :func:`choose_backend` picks (logged, with why)."""
    if name != 'auto':
        backend_class(name)  # unknown names fail here, before any model is read
        return name
    chosen, why = choose_backend(model_path)
    logger.info('backend auto -> %s: %s', chosen, why)
    return chosen


__all__ = ['BACKENDS', 'InferenceBackend', 'backend_class', 'backend_options',
           'create_backend', 'resolve_backend']
