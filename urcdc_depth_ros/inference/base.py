"""The backend contract: :class:`InferenceBackend` and helpers shared by every backend.

A backend turns a normalised image batch into the two maps of the Transformer branch. It owns
the heavy runtime (torch, ONNX Runtime or TensorRT); nothing here imports any of them.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Protocol, runtime_checkable

import numpy as np

from ..config import ModelMeta
from ..errors import BackendError

#: ONNX graph / engine tensor names (the export contract)
INPUT_NAME = 'image'
OUTPUT_NAMES = ('depth', 'uncertainty')
#: metadata_props key holding ``ModelMeta.to_dict()`` as JSON
META_KEY = 'urcdc_meta'


@runtime_checkable
class InferenceBackend(Protocol):
    """What :class:`~urcdc_depth_ros.estimator.DepthEstimator` needs from a backend.

    Attributes:
        name: backend name (a key of ``BACKENDS``).
        meta: the model's :class:`ModelMeta` (input size, normalisation, depth range, focal).
        input_shape: (N, 3, H, W) input shape the model was built for.
    """

    name: str
    meta: ModelMeta
    input_shape: tuple[int, int, int, int]

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network.

        Args:
            x: (N, 3, H, W) float32, RGB in [0, 1] normalised with ``meta.mean/std``.
        Returns:
            ``{'depth': (N, 1, H, W) float32 metres, 'uncertainty': (N, 1, H, W) float32 raw
            head in [0, 1], high = reliable}``.
        """
        ...

    def close(self) -> None:
        """Release the runtime's memory (sessions, engines, CUDA buffers); idempotent."""
        ...


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def require_file(path: str | os.PathLike, what: str, hint: str) -> str:
    """Return ``str(path)`` if it is a readable file, else BackendError with ``hint``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BackendError(f'{what} {path!r} does not exist or is not a file; {hint}')
    return path


def check_input(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Validate a backend input's (3, H, W) against the model; returns contiguous float32.

    The batch size is free: fixed-batch models run it in calls of their batch
    (:func:`pad_batch`).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape[1:]) or x.shape[0] < 1:
        raise BackendError(f'backend input has shape {x.shape!r}, the model expects '
                           f'(N, {", ".join(str(d) for d in input_shape[1:])}); '
                           'use DepthEstimator (it crops/resizes) or re-export at this size')
    return x


def pad_batch(x: np.ndarray, step: int) -> np.ndarray:
    """``x`` (N, ...) padded with copies of its last sample to a multiple of ``step``.

    Fixed-batch models (an ONNX file or engine built for batch ``step``) run a larger batch
    as several calls of ``step``; the padded results are dropped by the caller.
    """
    extra = -x.shape[0] % step
    if not extra:
        return x
    return np.concatenate([x, np.repeat(x[-1:], extra, 0)], 0)


def run_in_batches(run, x: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """``run`` on consecutive chunks of at most ``step`` samples of ``x``, outputs concatenated.

    ``run(chunk)`` returns ``{name: (b, ...) array}``; one call when ``x`` fits in ``step``.
    """
    if x.shape[0] <= step:
        return run(x)
    parts = [run(x[i:i + step]) for i in range(0, x.shape[0], step)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], 0) for k in parts[0]}


def meta_from_metadata(props: dict[str, str], source: str) -> ModelMeta:
    """:class:`ModelMeta` from ONNX metadata_props / an engine sidecar's ``meta`` entry."""
    if META_KEY not in props:
        raise BackendError(f'{source} carries no {META_KEY!r} metadata; export it with '
                           '`urcdc-export onnx` so the variant, input size and normalisation '
                           'travel with it')
    try:
        return ModelMeta.from_dict(json.loads(props[META_KEY]))
    except (ValueError, TypeError) as exc:
        raise BackendError(f'{source} has malformed {META_KEY!r} metadata: {exc}') from exc


__all__ = ['InferenceBackend', 'INPUT_NAME', 'OUTPUT_NAMES', 'META_KEY', 'file_sha256',
           'require_file', 'check_input', 'pad_batch', 'run_in_batches', 'meta_from_metadata']
