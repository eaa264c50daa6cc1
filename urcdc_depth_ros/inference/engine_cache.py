"""TensorRT engine cache: keys, JSON sidecars and "build when missing or stale".

A serialized TensorRT engine only runs on the GPU model (compute capability) and TensorRT
version that built it, and only reflects the ONNX file and precision it was built from. Every
engine therefore carries a JSON sidecar (``<engine>.json``) with those facts plus the model's
:class:`ModelMeta`; the cache key is a hash of them. This module is pure Python (no tensorrt,
no CUDA): the device facts and the build function are passed in, so it is testable anywhere.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from ..config import MODEL_PRECISIONS
from ..errors import BackendError

logger = logging.getLogger(__name__)

PRECISIONS = MODEL_PRECISIONS
SIDECAR_SUFFIX = '.json'
#: sidecar fields an engine must match to run here
DEVICE_FIELDS = ('gpu_name', 'compute_capability', 'tensorrt_version')
#: sidecar fields that must also match when the engine is to stand for a given ONNX file
MODEL_FIELDS = ('onnx_sha256', 'precision', 'dla_core', 'max_batch')


@dataclass(frozen=True)
class DeviceInfo:
    """Facts about the GPU and TensorRT that make an engine portable or not.

    Attributes:
        gpu_name: e.g. ``'Orin'``, ``'NVIDIA GeForce RTX 4090'``.
        compute_capability: ``'major.minor'``, e.g. ``'8.7'``.
        tensorrt_version: ``tensorrt.__version__``, e.g. ``'10.3.0'``.
    """

    gpu_name: str
    compute_capability: str
    tensorrt_version: str


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; :meth:`digest` names the cached file.

    ``max_batch`` is the largest batch of one engine call (its optimisation profile's max).
    """

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    onnx_sha256: str
    precision: str
    dla_core: int | None = None
    max_batch: int = 1

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BackendError(f'engine precision {self.precision!r} is not one of '
                               f'{list(PRECISIONS)}')
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise BackendError(f'engine max batch {self.max_batch!r} is not an integer >= 1')

    @classmethod
    def for_device(cls, device: DeviceInfo, onnx_sha256: str, precision: str,
                   dla_core: int | None = None, max_batch: int = 1) -> 'EngineKey':
        """Key for building ``onnx_sha256`` at ``precision`` for batches <= ``max_batch``."""
        return cls(device.gpu_name, device.compute_capability, device.tensorrt_version,
                   onnx_sha256, precision, dla_core, int(max_batch))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the sidecar's key fields)."""
        return asdict(self)

    def digest(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON of the key."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def filename(self, stem: str) -> str:
        """Cache file name, e.g. ``model.fp16.0123abcd4567ef89.engine``."""
        return f'{stem}.{self.precision}.{self.digest()}.engine'


def default_cache_dir() -> str:
    """``$URCDC_ENGINE_CACHE`` or ``$XDG_CACHE_HOME/urcdc_depth_ros/engines`` (~/.cache/...)."""
    if os.environ.get('URCDC_ENGINE_CACHE'):
        return os.environ['URCDC_ENGINE_CACHE']
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'urcdc_depth_ros', 'engines')


def sidecar_path(engine_path: str | os.PathLike) -> str:
    """``<engine>.json``."""
    return os.fspath(engine_path) + SIDECAR_SUFFIX


def write_sidecar(engine_path: str | os.PathLike, key: EngineKey,
                  **extra: Any) -> dict[str, Any]:
    """Write the sidecar (key fields + ``extra``: meta, shapes, build time...) atomically."""
    data = {**key.to_dict(), **extra}
    path = sidecar_path(engine_path)
    _atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + '\n').encode())
    return data


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar as a dict, ``None`` if there is none; BackendError if it is malformed."""
    path = sidecar_path(engine_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise BackendError(f'engine sidecar {path!r} is unreadable ({exc}); delete the engine '
                           'and its sidecar so they are rebuilt') from exc
    if not isinstance(data, dict):
        raise BackendError(f'engine sidecar {path!r} is not a JSON object; delete it and the '
                           'engine so they are rebuilt')
    return data


def mismatches(sidecar: Mapping[str, Any], expected: Mapping[str, Any],
               fields=DEVICE_FIELDS + MODEL_FIELDS) -> list[str]:
    """Human-readable ``'field: engine has X, here Y'`` for every differing field in ``fields``.

    Fields missing from ``expected`` are not checked.
    """
    out = []
    for name in fields:
        if name not in expected:
            continue
        have, want = sidecar.get(name, '<missing>'), expected[name]
        if have != want:
            out.append(f'{name}: engine has {have!r}, here {want!r}')
    return out


def check_engine_compatible(engine_path: str | os.PathLike, device: DeviceInfo,
                            require_sidecar: bool = True) -> dict[str, Any] | None:
    """Refuse an engine built for another GPU / TensorRT version.

    Returns the sidecar (``None`` when absent and ``require_sidecar`` is False).
    Raises BackendError naming the mismatch and how to rebuild.
    """
    sidecar = read_sidecar(engine_path)
    if sidecar is None:
        if require_sidecar:
            raise BackendError(
                f'engine {os.fspath(engine_path)!r} has no sidecar {sidecar_path(engine_path)!r}; '
                'rebuild it with `urcdc-export tensorrt --onnx MODEL.onnx` or pass the .onnx '
                'file to the tensorrt backend so it is built and cached')
        return None
    bad = mismatches(sidecar, asdict(device), DEVICE_FIELDS)
    if bad:
        raise BackendError(
            f'engine {os.fspath(engine_path)!r} was built for another device ({"; ".join(bad)}); '
            'TensorRT engines are not portable: rebuild on this machine with `urcdc-export '
            'tensorrt --onnx MODEL.onnx`, or pass the .onnx file so the cache rebuilds it')
    return sidecar


BuildFn = Callable[[str, str], Mapping[str, Any]]


def ensure_engine(onnx_path: str | os.PathLike, precision: str, device: DeviceInfo,
                  build_fn: BuildFn, cache_dir: str | os.PathLike | None = None,
                  dla_core: int | None = None, onnx_sha256: str | None = None,
                  force: bool = False, max_batch: int = 1) -> tuple[str, dict[str, Any]]:
    """Return ``(engine_path, sidecar)`` for ``onnx_path``, building it first when needed.

    The engine lives in ``cache_dir`` under :meth:`EngineKey.filename`. It is (re)built when
    missing, when its sidecar is missing/disagrees with the key (stale), or when ``force``;
    the log says why and how long the build took.

    Args:
        build_fn: ``build_fn(onnx_path, engine_tmp_path) -> extra sidecar fields`` (shapes,
            meta...); it writes the serialized engine to ``engine_tmp_path``.
        max_batch: largest batch of one call; engines for other batches are cached apart.
    """
    from .base import file_sha256  # local: keep this module free of package-level cycles

    onnx_path = os.fspath(onnx_path)
    if not os.path.isfile(onnx_path):
        raise BackendError(f'ONNX model {onnx_path!r} does not exist; export one with '
                           '`urcdc-export onnx`')
    sha = onnx_sha256 or file_sha256(onnx_path)
    key = EngineKey.for_device(device, sha, precision, dla_core, max_batch)
    cache_dir = os.fspath(cache_dir or default_cache_dir())
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    engine_path = os.path.join(cache_dir, key.filename(stem))
    reason = None
    if force:
        reason = 'rebuild forced'
    elif not os.path.isfile(engine_path):
        reason = 'no cached engine'
    else:
        try:
            sidecar = read_sidecar(engine_path)
        except BackendError as exc:
            sidecar, reason = None, str(exc)
        if sidecar is None:
            reason = reason or 'cached engine has no sidecar'
        else:
            bad = mismatches(sidecar, key.to_dict())
            if not bad:
                logger.info('using cached TensorRT engine %s', engine_path)
                return engine_path, sidecar
            reason = 'stale cached engine (' + '; '.join(bad) + ')'
    logger.warning('building TensorRT engine %s from %s: %s; this takes minutes on a Jetson',
                   engine_path, onnx_path, reason)
    t0 = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix='.building-', suffix='.engine', dir=cache_dir)
    os.close(fd)
    try:
        extra = dict(build_fn(onnx_path, tmp) or {})
        if os.path.getsize(tmp) == 0:
            raise BackendError(f'TensorRT build of {onnx_path!r} wrote an empty engine')
        os.replace(tmp, engine_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    seconds = time.perf_counter() - t0
    extra.setdefault('build_seconds', round(seconds, 3))
    sidecar = write_sidecar(engine_path, key, **extra)
    logger.warning('built TensorRT engine %s in %.1f s (%s)', engine_path, seconds, reason)
    return engine_path, sidecar


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = ['PRECISIONS', 'DeviceInfo', 'EngineKey', 'default_cache_dir', 'sidecar_path',
           'write_sidecar', 'read_sidecar', 'mismatches', 'check_engine_compatible',
           'ensure_engine']
