"""TensorRT engine builder for 10.3 (JetPack 6) to 11.x: strongly typed networks, DLA, cache.

Lives in the runtime package (not ``urcdc_training``) because the TensorRT backend builds an
engine on first start when the cache has none for this GPU / TensorRT version / ONNX file
(:mod:`.engine_cache`); ``urcdc-export tensorrt`` calls the same code. ``tensorrt`` and
``pycuda`` are imported inside the functions that need them, so the pure parts (the ONNX op
allowlist, the precision plan, the ``trtexec`` command line) work anywhere, without torch.

Precision lives in the ONNX graph (``urcdc-export onnx --precision fp32|fp16|int8``): FP16
weights and activations with norms, softmax and heads cast to FP32, or INT8 as
QuantizeLinear/DequantizeLinear pairs. TensorRT builds a **strongly typed** network from it
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on 10.x; the only mode on 11.x, which removed
``BuilderFlag.FP16``/``INT8``/``OBEY_PRECISION_CONSTRAINTS``, per-layer precision and the
implicit INT8 calibrators). One legacy path remains behind :func:`weak_typing_supported`: an
FP16 engine from an FP32 ONNX on TensorRT < 11, with normalisation and softmax layers pinned
to FP32 (their variances and the attention softmax overflow or lose small values in half).
``test/integration/test_tensorrt_bindings.py`` checks every TensorRT name used here against
the real 10.3, 10.16 and 11.4 Python bindings.

Batch: an ONNX with a symbolic batch axis (``urcdc-export onnx --dynamic-batch``) is built with
one optimisation profile min 1 / opt N / max N for ``max_batch`` N (:func:`profile_shapes`), so
one engine runs every batch of 1 to N camera frames; larger batches are split by the backend.
A static-batch ONNX gives an engine of that fixed batch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
from typing import Any, Sequence

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

#: oldest TensorRT major version the builder and backend support (10.3 = JetPack 6)
MIN_TENSORRT_MAJOR = 10
#: what ``precision`` may ask of the builder: ``auto`` = whatever the ONNX graph holds
BUILD_PRECISIONS = ('auto',) + PRECISIONS


def fp32_node_names(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the ONNX nodes (= TensorRT layer names) to keep in FP32 (needs ``onnx``)."""
    import onnx

    model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in FP32_OP_TYPES and n.name]


def tensorrt_major(trt) -> int:
    """Major version of an imported ``tensorrt`` module (``'10.3.0'`` -> 10)."""
    return int(str(trt.__version__).split('.')[0])


def weak_typing_supported(trt) -> bool:
    """True on TensorRT < 11, the last releases with weakly typed networks and precision flags.

    Code that uses ``BuilderFlag.FP16``, ``OBEY_PRECISION_CONSTRAINTS`` or per-layer precision
    must sit in the body of an ``if`` that calls this function (the bindings test checks it).
    """
    return tensorrt_major(trt) < 11


def plan_precision(onnx_precision: str, requested: str = 'auto',
                   trt_major: int = 10) -> tuple[str, bool]:
    """``(engine precision, strongly typed)`` for an ONNX graph of ``onnx_precision``.

    A strongly typed network runs the types in the graph, so ``requested`` must be ``'auto'``
    or the graph's own precision. The one exception is ``'fp16'`` from an FP32 graph on
    TensorRT < 11 (weakly typed, deprecated by NVIDIA). Raises BackendError saying which
    ``urcdc-export onnx --precision`` to run otherwise.
    """
    if requested not in BUILD_PRECISIONS:
        raise BackendError(f'precision {requested!r} is not one of {list(BUILD_PRECISIONS)}')
    if onnx_precision not in PRECISIONS:
        raise BackendError(f'ONNX precision {onnx_precision!r} is not one of {list(PRECISIONS)}')
    if requested in ('auto', onnx_precision):
        return onnx_precision, True
    export = (f'export a {requested.upper()} ONNX with `urcdc-export onnx --precision '
              f'{requested}' + (' --calib-images DIR`' if requested == 'int8' else '`') +
              f" and build that (or pass precision='auto' / {onnx_precision!r})")
    if onnx_precision == 'fp32' and requested == 'fp16':
        if trt_major < 11:
            return 'fp16', False
        raise BackendError(f'TensorRT {trt_major}.x builds only strongly typed networks, so an '
                           f'FP32 ONNX gives an FP32 engine; for FP16 {export}')
    if onnx_precision == 'fp32' and requested == 'int8':
        raise BackendError('INT8 engines come from a QDQ ONNX (implicit INT8 calibration is '
                           f'deprecated since TensorRT 10.1 and gone in 11); {export}')
    raise BackendError(f'the ONNX graph is {onnx_precision} and TensorRT builds the types it '
                       f'holds, not {requested}; {export}')


Shape = tuple[int, ...]


def profile_shapes(input_shape: Sequence[int | None], max_batch: int = 1
                   ) -> tuple[Shape, Shape, Shape] | None:
    """``(min, opt, max)`` input shapes of the optimisation profile for batches up to N.

    Args:
        input_shape: the ONNX/TensorRT input shape (N, 3, H, W); a batch of ``-1``, ``0`` or
            ``None`` is symbolic (``urcdc-export onnx --dynamic-batch``). H and W must be fixed.
        max_batch: N, the largest batch one engine call takes (>= 1).
    Returns:
        ``((1, 3, H, W), (N, 3, H, W), (N, 3, H, W))`` for a symbolic batch; ``None`` for a
        static batch, which needs no profile (then ``max_batch`` must be 1 or that batch).
    Raises:
        BackendError naming the fix: ``max_batch`` < 1, dynamic H/W, or a static-batch ONNX
        asked for another ``max_batch``.
    """
    max_batch = int(max_batch)
    if max_batch < 1:
        raise BackendError(f'max batch {max_batch} < 1; pass --max-batch 1 or more (the number '
                           'of cameras of the rig)')
    dims = [None if d is None or int(d) <= 0 else int(d) for d in input_shape]
    if len(dims) != 4 or None in dims[1:]:
        raise BackendError(f'engine input shape {list(input_shape)} is not (N, 3, H, W) with '
                           'fixed H, W; re-export with `urcdc-export onnx` (static H, W)')
    rest = tuple(dims[1:])
    if dims[0] is not None:
        if max_batch not in (1, dims[0]):
            raise BackendError(f'the ONNX has a static batch of {dims[0]}, so TensorRT cannot '
                               f'build it for --max-batch {max_batch}; re-export it with '
                               '`urcdc-export onnx --dynamic-batch` (or leave --max-batch at 1)')
        return None
    return (1,) + rest, (max_batch,) + rest, (max_batch,) + rest


def onnx_input_shape(onnx_path: str | os.PathLike) -> Shape | None:
    """Shape of the ONNX input ``image`` (symbolic dims as -1); ``None`` without ``onnx``."""
    from .base import INPUT_NAME
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    except Exception as exc:  # reason: protobuf decode errors have no common public type
        raise BackendError(f'{os.fspath(onnx_path)!r} is not a readable ONNX file ({exc}); '
                           're-export it with `urcdc-export onnx`') from exc
    for value in model.graph.input:
        if value.name == INPUT_NAME:
            return tuple(d.dim_value if d.HasField('dim_value') else -1
                         for d in value.type.tensor_type.shape.dim)
    raise BackendError(f'{os.fspath(onnx_path)!r} has no input {INPUT_NAME!r}; export it with '
                       '`urcdc-export onnx`')


def auto_max_batch(model_path: str | os.PathLike, n_cameras: int) -> int:
    """Engine max batch for a rig of ``n_cameras`` when the user set none (0 = backend default).

    ``n_cameras`` for an ``.onnx`` with a symbolic batch axis, so one call serves the rig;
    0 (batch 1, or the ONNX's static batch) for a single camera, a static-batch ONNX or a
    serialized engine, which keeps the batch it was built with. The estimator splits larger
    batches into several calls either way.
    """
    if n_cameras <= 1 or not os.fspath(model_path).lower().endswith('.onnx'):
        return 0
    shape = onnx_input_shape(model_path)
    if shape is None or shape[0] > 0:
        return 0
    return int(n_cameras)


def trtexec_command(onnx_path: str, engine_path: str, precision: str = 'fp32',
                    strongly_typed: bool = True, workspace_mb: int = 2048,
                    timing_cache: str | None = None, dla_core: int | None = None,
                    fp32_layers: Sequence[str] = (), trt_major: int = 10,
                    profile: tuple[Shape, Shape, Shape] | None = None) -> str:
    """The ``trtexec`` command line equivalent to :func:`build_engine` (for logs and docs).

    Strongly typed: ``--stronglyTyped`` on 10.x (11.x builds nothing else and needs no flag).
    Weakly typed (FP16 from an FP32 graph, TensorRT < 11): ``--fp16`` plus
    ``--layerPrecisions`` for ``fp32_layers``. ``profile`` (from :func:`profile_shapes`) adds
    ``--minShapes/--optShapes/--maxShapes`` for the input ``image``.
    """
    if precision not in PRECISIONS:
        raise BackendError(f'precision {precision!r} is not one of {list(PRECISIONS)}')
    args = ['trtexec', f'--onnx={onnx_path}', f'--saveEngine={engine_path}',
            f'--memPoolSize=workspace:{int(workspace_mb)}M']
    if strongly_typed:
        if trt_major < 11:
            args.append('--stronglyTyped')
    else:
        args.append('--fp16')
        if fp32_layers:
            args += ['--precisionConstraints=obey',
                     '--layerPrecisions=' + ','.join(f'{n}:fp32' for n in fp32_layers)]
    if timing_cache:
        args.append(f'--timingCacheFile={timing_cache}')
    if dla_core is not None:
        args += [f'--useDLACore={int(dla_core)}', '--allowGPUFallback']
    if profile is not None:
        from .base import INPUT_NAME
        for flag, shape in zip(('--minShapes', '--optShapes', '--maxShapes'), profile):
            args.append(f'{flag}={INPUT_NAME}:' + 'x'.join(str(int(d)) for d in shape))
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
    if tensorrt_major(trt) < MIN_TENSORRT_MAJOR:
        raise BackendError(f'TensorRT {trt.__version__} is too old: our engines need TensorRT '
                           f'{MIN_TENSORRT_MAJOR}.3 (JetPack 6) or newer, up to 11.x')
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


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                 precision: str = 'auto', workspace_mb: int = 2048,
                 timing_cache: str | None = None, dla_core: int | None = None,
                 meta: ModelMeta | None = None, max_batch: int = 1) -> dict[str, Any]:
    """Build and serialize a TensorRT engine from an ``urcdc-export onnx`` file.

    Args:
        precision: ``'auto'`` (the graph's own, from its metadata) or one of ``PRECISIONS``;
            see :func:`plan_precision` for what each ONNX precision allows.
        workspace_mb: builder workspace memory pool limit, MiB.
        timing_cache: file read (if present) and written back, so rebuilds are fast.
        dla_core: run on this DLA core (Jetson Xavier/Orin) with GPU fallback.
        meta: model metadata (read from the ONNX if None; an ONNX without it counts as FP32).
        max_batch: largest batch of one call; a dynamic-batch ONNX gets the profile
            :func:`profile_shapes` gives, a static one must have this batch (or 1).
    Returns:
        Sidecar fields: shapes, precision, ONNX precision, strongly typed, meta, TensorRT
        version, FP32-pinned layer count (weakly typed only), ``profile`` (min/opt/max input
        shapes, ``None`` for a static batch); the cache key holds ``max_batch``.
    """
    trt, cuda = import_tensorrt()
    onnx_path, engine_path = os.fspath(onnx_path), os.fspath(engine_path)
    if meta is None:
        meta = read_onnx_meta(onnx_path, required=False)
    onnx_precision = meta.precision if meta is not None else 'fp32'
    major = tensorrt_major(trt)
    engine_precision, strongly_typed = plan_precision(onnx_precision, precision, major)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if strongly_typed and major < 11:  # 11.x: always strongly typed, the flag is ignored
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    with open(onnx_path, 'rb') as f:
        ok = parser.parse(f.read())
    if not ok:
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT {trt.__version__} cannot parse {onnx_path!r}: {errors}; '
                           're-export with `urcdc-export onnx` (opset 17, static shapes)')
    config = builder.create_builder_config()
    image = network.get_input(0)
    profile = profile_shapes(tuple(image.shape), max_batch)
    if profile is not None:
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(image.name, profile[0], profile[1], profile[2])
        config.add_optimization_profile(opt_profile)
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
    if not strongly_typed and weak_typing_supported(trt):
        logger.warning('building a weakly typed FP16 engine from an FP32 ONNX (TensorRT %s); '
                       'TensorRT 11 cannot: export an FP16 ONNX with `urcdc-export onnx '
                       '--precision fp16` instead', trt.__version__)
        if not builder.platform_has_fast_fp16:
            logger.warning('this GPU has no fast FP16; the engine may be slower than FP32')
        config.set_flag(trt.BuilderFlag.FP16)
        kinds = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in kinds:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
                n_fp32 += 1
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise BackendError(f'--dla-core {dla_core} requested but this device has no DLA')
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    logger.info('building %s %s engine from %s (%s ONNX, %d layers, %d pinned to FP32)',
                'strongly typed' if strongly_typed else 'weakly typed', engine_precision,
                onnx_path, onnx_precision, network.num_layers, n_fp32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f'TensorRT failed to build {onnx_path!r} at {engine_precision}; see '
                           'the TensorRT log above (try a larger --workspace-mb)')
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
    info: dict[str, Any] = {'precision': engine_precision, 'onnx_precision': onnx_precision,
                            'strongly_typed': strongly_typed, 'shapes': shapes,
                            'tensorrt_version': trt.__version__, 'fp32_layers': n_fp32,
                            'workspace_mb': int(workspace_mb),
                            'profile': [list(p) for p in profile] if profile else None}
    if meta is not None:
        info['meta'] = meta.to_dict()
    return info


__all__ = ['TRT10_SUPPORTED_OPS', 'FP32_OP_TYPES', 'BUILD_PRECISIONS', 'fp32_node_names',
           'tensorrt_major', 'weak_typing_supported', 'plan_precision', 'profile_shapes',
           'onnx_input_shape', 'auto_max_batch', 'trtexec_command',
           'import_tensorrt', 'current_device_info', 'read_onnx_meta', 'cuda_context',
           'build_engine']
