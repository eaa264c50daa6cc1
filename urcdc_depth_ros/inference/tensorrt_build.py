"""TensorRT 10 engine builder: FP32/FP16/INT8 (entropy calibration), DLA, timing cache.

Lives in the runtime package (not ``urcdc_training``) because the TensorRT backend builds an
engine on first start when the cache has none for this GPU / TensorRT version / ONNX file
(:mod:`.engine_cache`); ``urcdc-export tensorrt`` calls the same code. ``tensorrt`` and
``pycuda`` are imported inside the functions that need them, so the pure parts (the ONNX op
allowlist, the ``trtexec`` command line) work anywhere.

FP16 keeps normalisation and softmax layers in FP32 (layer precision + output type set to
float32 and ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``): LayerNorm/GroupNorm variances and the
window-attention softmax overflow or lose the small uncertainty values in half precision.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import shlex
from typing import Any, Sequence

import numpy as np

from ..config import ModelMeta
from ..errors import BackendError
from .engine_cache import DeviceInfo, PRECISIONS

logger = logging.getLogger(__name__)

#: ONNX operators the TensorRT 10 ONNX parser supports (onnx-tensorrt ``docs/operators.md``,
#: release 10.x, rows marked "Y"); the export test checks every node of our graph is here.
TRT10_SUPPORTED_OPS = frozenset('''
Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
BatchNormalization BitShift BlackmanWindow Cast CastLike Ceil Celu Clip Compress Concat
Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow
HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul
Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan
Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze STFT Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Trilu Unsqueeze Upsample Where Xor
'''.split())

#: ONNX op types kept in FP32 in FP16/INT8 engines (their TensorRT layer names are the node names)
FP32_OP_TYPES = ('LayerNormalization', 'InstanceNormalization', 'GroupNormalization',
                 'Softmax', 'ReduceMean', 'Pow', 'Sqrt')

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm')


def fp32_node_names(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the ONNX nodes (= TensorRT layer names) to keep in FP32 (needs ``onnx``)."""
    import onnx

    model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in FP32_OP_TYPES and n.name]


def trtexec_command(onnx_path: str, engine_path: str, precision: str = 'fp16',
                    workspace_mb: int = 2048, timing_cache: str | None = None,
                    dla_core: int | None = None, calib_cache: str | None = None,
                    fp32_layers: Sequence[str] = ()) -> str:
    """The ``trtexec`` command line equivalent to :func:`build_engine` (for logs and docs).

    INT8 with ``trtexec`` reuses the calibration cache written by our calibrator (``--calib``);
    trtexec cannot calibrate from images itself.
    """
    if precision not in PRECISIONS:
        raise BackendError(f'precision {precision!r} is not one of {list(PRECISIONS)}')
    args = ['trtexec', f'--onnx={onnx_path}', f'--saveEngine={engine_path}',
            f'--memPoolSize=workspace:{int(workspace_mb)}M']
    if precision in ('fp16', 'int8'):
        args.append('--fp16')
    if precision == 'int8':
        args.append('--int8')
        if calib_cache:
            args.append(f'--calib={calib_cache}')
    if precision != 'fp32' and fp32_layers:
        args += ['--precisionConstraints=obey',
                 '--layerPrecisions=' + ','.join(f'{n}:fp32' for n in fp32_layers)]
    if timing_cache:
        args.append(f'--timingCacheFile={timing_cache}')
    if dla_core is not None:
        args += [f'--useDLACore={int(dla_core)}', '--allowGPUFallback']
    return ' '.join(shlex.quote(a) for a in args)


def import_tensorrt():
    """``(tensorrt, pycuda.driver)``; BackendError saying how to install them."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f'the tensorrt backend needs the TensorRT Python API and pycuda '
                           f'({exc}); on a Jetson they come with JetPack (`sudo apt install '
                           'python3-libnvinfer`, `pip install pycuda`); elsewhere '
                           '`pip install tensorrt pycuda`') from exc
    return trt, cuda


def current_device_info(device: int = 0) -> DeviceInfo:
    """GPU name, compute capability and TensorRT version of this machine."""
    trt, cuda = import_tensorrt()
    cuda.init()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return DeviceInfo(gpu_name=dev.name(), compute_capability=f'{major}.{minor}',
                      tensorrt_version=trt.__version__)


def read_onnx_meta(onnx_path: str, required: bool = True) -> ModelMeta | None:
    """:class:`ModelMeta` from an ONNX file's metadata_props (needs ``onnx``).

    With ``required=False`` a missing ``onnx`` package or metadata gives ``None``.
    """
    from .base import meta_from_metadata
    try:
        import onnx
    except ImportError as exc:
        if not required:
            return None
        raise BackendError('reading ONNX metadata needs the onnx package: `pip install onnx`'
                           ) from exc
    try:
        model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    except Exception as exc:  # reason: protobuf decode errors have no common public type
        raise BackendError(f'{os.fspath(onnx_path)!r} is not a readable ONNX file ({exc}); '
                           're-export it with `urcdc-export onnx`') from exc
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return meta_from_metadata(props, f'ONNX file {os.fspath(onnx_path)!r}')
    except BackendError:
        if required:
            raise
        return None


@contextlib.contextmanager
def cuda_context(device: int = 0):
    """Make a pycuda context current in this thread for the ``with`` block (CLI builds)."""
    _, cuda = import_tensorrt()
    cuda.init()
    ctx = cuda.Device(device).make_context()
    try:
        yield ctx
    finally:
        ctx.pop()
        ctx.detach()


def list_calibration_images(directory: str | os.PathLike, limit: int = 0) -> list[str]:
    """Sorted image files in ``directory`` (first ``limit`` if > 0); BackendError if none."""
    files = sorted(f for f in glob.glob(os.path.join(os.fspath(directory), '*'))
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise BackendError(f'no calibration images ({", ".join(IMAGE_EXTENSIONS)}) in '
                           f'{os.fspath(directory)!r}; pass --calib-images with ~100 frames '
                           'from the target camera')
    return files[:limit] if limit > 0 else files


def calibration_batch(path: str, meta: ModelMeta, resize_mode: str = 'kb_crop') -> np.ndarray:
    """One calibration input (1, 3, h, w) float32, preprocessed exactly like inference."""
    import cv2

    from ..preprocessing import preprocess

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise BackendError(f'calibration image {path!r} is unreadable')
    h, w = bgr.shape[:2]
    K_px = np.array([[meta.focal_px, 0, w / 2], [0, meta.focal_px, h / 2], [0, 0, 1]])
    x, _ = preprocess(bgr, K_px, meta, 'bgr8', resize_mode)
    return x


def make_entropy_calibrator(images: Sequence[str], meta: ModelMeta, cache_file: str,
                            resize_mode: str = 'kb_crop'):
    """An ``IInt8EntropyCalibrator2`` feeding ``images`` one at a time; caches to ``cache_file``.

    With an existing cache file TensorRT skips the images entirely (reproducible builds).
    """
    trt, cuda = import_tensorrt()

    class ImageEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Entropy calibration over camera frames (batch 1)."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._images = list(images)
            self._next = 0
            nbytes = 3 * meta.input_height * meta.input_width * 4
            self._device = cuda.mem_alloc(nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):  # noqa: D102 (TensorRT callback)
            if self._next >= len(self._images):
                return None
            x = calibration_batch(self._images[self._next], meta, resize_mode)
            self._next += 1
            cuda.memcpy_htod(self._device, np.ascontiguousarray(x))
            return [int(self._device)]

        def read_calibration_cache(self):  # noqa: D102
            if os.path.isfile(cache_file):
                with open(cache_file, 'rb') as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache) -> None:  # noqa: D102
            with open(cache_file, 'wb') as f:
                f.write(bytes(cache))

    return ImageEntropyCalibrator()


def _keep_fp32(trt, network) -> int:
    """Pin normalisation/softmax layers (and their outputs) to FP32; returns how many."""
    kinds = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX}
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kinds:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            count += 1
    return count


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                 precision: str = 'fp16', workspace_mb: int = 2048,
                 timing_cache: str | None = None, dla_core: int | None = None,
                 calib_images: str | None = None, calib_cache: str | None = None,
                 calib_limit: int = 200, meta: ModelMeta | None = None,
                 keep_fp32_norms: bool = True) -> dict[str, Any]:
    """Build and serialize a TensorRT 10 engine from an ``urcdc-export onnx`` file.

    Args:
        precision: ``'fp32' | 'fp16' | 'int8'`` (int8 also enables fp16 for uncalibrated layers).
        workspace_mb: builder workspace memory pool limit, MiB.
        timing_cache: file read (if present) and written back, so rebuilds are fast.
        dla_core: run on this DLA core (Jetson Xavier/Orin) with GPU fallback.
        calib_images: directory of frames for INT8 entropy calibration.
        calib_cache: calibration cache file (default ``<engine>.calib``).
        meta: model metadata (needed for INT8 preprocessing; read from the ONNX if None).
    Returns:
        Sidecar fields: shapes, precision, meta, tensorrt version, fp32 layer count.
    """
    trt, cuda = import_tensorrt()
    if precision not in PRECISIONS:
        raise BackendError(f'precision {precision!r} is not one of {list(PRECISIONS)}')
    onnx_path, engine_path = os.fspath(onnx_path), os.fspath(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, 'rb') as f:
        ok = parser.parse(f.read())
    if not ok:
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT cannot parse {onnx_path!r}: {errors}; re-export with '
                           '`urcdc-export onnx` (opset 17, static shapes)')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    cache = None
    if timing_cache:
        data = b''
        if os.path.isfile(timing_cache):
            with open(timing_cache, 'rb') as f:
                data = f.read()
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
    n_fp32 = 0
    if precision in ('fp16', 'int8'):
        if not builder.platform_has_fast_fp16:
            logger.warning('this GPU has no fast FP16; the engine may be slower than FP32')
        config.set_flag(trt.BuilderFlag.FP16)
        if keep_fp32_norms:
            n_fp32 = _keep_fp32(trt, network)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if meta is None:
        meta = read_onnx_meta(onnx_path, required=(precision == 'int8'))
    if precision == 'int8':
        cache_file = calib_cache or engine_path + '.calib'
        if calib_images is None and not os.path.isfile(cache_file):
            raise BackendError('INT8 needs --calib-images DIR (or an existing calibration '
                               f'cache {cache_file!r})')
        images = list_calibration_images(calib_images, calib_limit) if calib_images else []
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_entropy_calibrator(images, meta, cache_file)
    if dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise BackendError(f'--dla-core {dla_core} requested but this device has no DLA')
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    logger.info('building %s engine from %s (%d layers, %d pinned to FP32)', precision, onnx_path,
                network.num_layers, n_fp32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f'TensorRT failed to build {onnx_path!r} at {precision}; see the '
                           'TensorRT log above (try a larger --workspace-mb or fp32)')
    with open(engine_path, 'wb') as f:
        f.write(serialized)
    if cache is not None:
        with open(timing_cache, 'wb') as f:
            f.write(cache.serialize())
    shapes = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shapes[t.name] = list(t.shape)
    for i in range(network.num_outputs):
        t = network.get_output(i)
        shapes[t.name] = list(t.shape)
    info: dict[str, Any] = {'precision': precision, 'shapes': shapes,
                            'tensorrt_version': trt.__version__, 'fp32_layers': n_fp32,
                            'workspace_mb': int(workspace_mb)}
    if meta is not None:
        info['meta'] = meta.to_dict()
    return info


__all__ = ['TRT10_SUPPORTED_OPS', 'FP32_OP_TYPES', 'fp32_node_names', 'trtexec_command',
           'import_tensorrt', 'current_device_info', 'read_onnx_meta',
           'cuda_context', 'list_calibration_images',
           'calibration_batch', 'make_entropy_calibrator', 'build_engine']
