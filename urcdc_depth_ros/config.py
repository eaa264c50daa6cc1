"""Configuration dataclasses: the single source of default values.

``ModelMeta`` travels with every checkpoint, ONNX file and TensorRT engine, so inference never
guesses the variant, input size, normalisation or depth range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

from .errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KITTI_FOCAL_PX = 721.5377  # fx of KITTI's 2011_09_26 colour camera (image_02), pixels
NYU_FOCAL_PX = 518.8579
#: numeric precision of an exported graph: ``fp32``; ``fp16`` (mixed, FP32 I/O, norms, softmax
#: and heads); ``int8`` (QuantizeLinear/DequantizeLinear pairs around the convs and matmuls)
MODEL_PRECISIONS = ('fp32', 'fp16', 'int8')
KITTI_MAX_DEPTH_M = 80.0  # KITTI's depth range (training head, evaluation cap), metres


def setting(default: Any, doc: str, limits: Optional[tuple[float, float]] = None):
    """A dataclass field that carries its node-parameter description and (min, max) range.

    ``depth_node`` declares one parameter per field and reads both from ``field.metadata``
    (see :func:`param_docs`), so a setting's default, meaning and range sit in one place.
    """
    return field(default=default, metadata={'doc': doc, 'limits': limits})


def param_docs(*classes) -> dict[str, tuple[str, Optional[tuple[float, float]]]]:
    """``{field name: (description, (min, max) or None)}`` of the dataclasses' fields."""
    return {f.name: (f.metadata['doc'], f.metadata['limits'])
            for cls in classes for f in fields(cls)}


@dataclass(frozen=True)
class ModelMeta:
    """What a trained network needs at inference time.

    Attributes:
        variant: name in ``urcdc_depth_ros.model.VARIANTS`` (e.g. ``'large07'``).
        max_depth: depth range of the sigmoid head, metres.
        input_height, input_width: network input size, pixels (KITTI eval: 352 x 1216).
        mean, std: RGB normalisation applied to images in [0, 1].
        focal_px: horizontal focal length of the training camera at ``input`` scale, pixels;
            the estimator rescales depth by ``fx_camera / focal_px`` for other cameras.
        min_depth: smallest depth reported as valid, metres.
        dataset: what the weights were trained on (free text, e.g. ``'kitti_eigen'``).
        precision: numeric precision of the exported graph, one of :data:`MODEL_PRECISIONS`
            (``'fp32'`` for checkpoints; ``urcdc-export onnx --precision`` sets it).
        uncertainty_calibration: JSON of a fitted
            :class:`~urcdc_depth_ros.calibration.UncertaintyCalibration` (``urcdc-calibrate``);
            ``''`` = none: ``uncertainty: metres`` is then the uncalibrated formula.
    """

    variant: str = 'tiny07'
    max_depth: float = KITTI_MAX_DEPTH_M
    input_height: int = 352
    input_width: int = 1216
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    focal_px: float = KITTI_FOCAL_PX
    min_depth: float = 1e-3
    dataset: str = 'unknown'
    precision: str = 'fp32'
    uncertainty_calibration: str = ''

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON/YAML/ONNX-metadata friendly)."""
        d = asdict(self)
        d['mean'] = list(self.mean)
        d['std'] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'ModelMeta':
        """Build from a dict, ignoring unknown keys, coercing types; raises ConfigError."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        try:
            for k in ('mean', 'std'):
                if k in kw:
                    kw[k] = tuple(float(x) for x in kw[k])
            for k in ('max_depth', 'focal_px', 'min_depth'):
                if k in kw:
                    kw[k] = float(kw[k])
            for k in ('input_height', 'input_width'):
                if k in kw:
                    kw[k] = int(kw[k])
            if isinstance(kw.get('uncertainty_calibration'), dict):
                import json
                kw['uncertainty_calibration'] = json.dumps(kw['uncertainty_calibration'],
                                                           sort_keys=True)
            elif kw.get('uncertainty_calibration') is None:
                kw.pop('uncertainty_calibration', None)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'model metadata {dict(d)!r} has a malformed value: {exc}') from exc
        meta = cls(**kw)
        meta.validate()
        return meta

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if not (self.max_depth > 0):
            raise ConfigError(f'max_depth must be > 0 m, got {self.max_depth!r}')
        if self.input_height < 32 or self.input_width < 32:
            raise ConfigError(
                f'input size must be at least 32x32, got {self.input_height}x{self.input_width}')
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f'mean/std must be 3 values with std > 0, got '
                              f'{self.mean!r}/{self.std!r}')
        if not (self.focal_px > 0):
            raise ConfigError(f'focal_px must be > 0, got {self.focal_px!r}')
        if self.precision not in MODEL_PRECISIONS:
            raise ConfigError(f'precision {self.precision!r} is not one of '
                              f'{list(MODEL_PRECISIONS)}; re-export with `urcdc-export onnx '
                              '--precision fp32|fp16|int8`')
        calibration = self.calibration()
        if calibration is not None:
            calibration.check_model(self.variant, self.max_depth, 'the uncertainty calibration')

    def calibration(self):
        """The fitted :class:`~urcdc_depth_ros.calibration.UncertaintyCalibration`, or None.

        Raises ConfigError when the stored table is corrupt.
        """
        if not self.uncertainty_calibration:
            return None
        from .calibration import UncertaintyCalibration
        return UncertaintyCalibration.from_json(self.uncertainty_calibration,
                                                'the uncertainty calibration')


@dataclass(frozen=True)
class EstimatorConfig:
    """How the :class:`DepthEstimator` maps camera images to the network and back.

    Attributes:
        resize_mode: ``'auto'`` (resize so that fx equals the model's training focal, then
            KB-crop where larger than the model input, pad where smaller: right metric scale
            and the widest view without tuning), ``'kb_crop'`` (KITTI-style: bottom rows,
            horizontally centred crop of the model input size; the image is first resized only
            if smaller) or ``'resize'`` (whole image resized to the model input).
        output_resolution: ``'input'`` (depth at the camera image size; pixels outside the
            model's view are NaN) or ``'model'`` (depth at the network size, with matching K).
        rescale_focal: scale depth by ``fx / meta.focal_px`` (metric depth for cameras whose
            focal length differs from the training camera).
        flip_tta: predict on the image and its mirror and fuse as the official evaluation does.
        uncertainty: what the ``uncertainty`` output holds: ``'metres'`` (expected absolute
            depth error, m; calibrated when the model carries a calibration), ``'bound90'``
            (calibrated 90 % bound of the absolute error, m; needs a calibration),
            ``'relative'`` (expected |gt-d|/(gt+d)) or ``'confidence'`` (the network's raw map
            in [0, 1], high = reliable).
        min_depth, max_depth: valid range in metres; outside it the depth is NaN. ``None``
            takes the model's.
        max_batch: largest batch of one backend call; a larger batch (a rig's cameras) runs
            as several calls. 0 = the whole batch in one call.
    """

    resize_mode: str = setting(
        'auto', "'auto' (scale to the model's training focal, then KB-crop or pad), "
        "'kb_crop' (KITTI-style crop of the model input size) or 'resize'")
    output_resolution: str = setting(
        'input', "'input' (depth at camera size) or 'model' (network size)")
    rescale_focal: bool = setting(True, "scale depth by fx / the training camera's focal length")
    flip_tta: bool = setting(False, 'average the prediction with that of the mirrored image')
    uncertainty: str = setting(
        'metres', "what `uncertainty` holds: 'metres' (expected |error|, m; calibrated when the "
        "model carries a calibration), 'bound90' (calibrated 90 % bound of |error|, m), "
        "'relative' (expected |gt-d|/(gt+d)) or 'confidence' ([0, 1], high = reliable)")
    min_depth: float | None = setting(None, "smallest valid depth (m); 0 = the model's",
                                      (0.0, 1e4))
    max_depth: float | None = setting(None, "largest valid depth (m); 0 = the model's",
                                      (0.0, 1e4))
    max_batch: int = setting(
        0, 'largest batch of one backend call (a rig runs larger batches as several calls); '
        "0 = all of a rig's cameras in one call. On a CPU 1 keeps a rig's memory near one "
        "camera's at the same frames/s (bench/bench_rig.py)", (0, 64))

    RESIZE_MODES = ('auto', 'kb_crop', 'resize')
    OUTPUT_RESOLUTIONS = ('input', 'model')
    UNCERTAINTY_KINDS = ('metres', 'bound90', 'relative', 'confidence')

    def __post_init__(self) -> None:
        for name, allowed in (('resize_mode', self.RESIZE_MODES),
                              ('output_resolution', self.OUTPUT_RESOLUTIONS),
                              ('uncertainty', self.UNCERTAINTY_KINDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f'{name}={value!r} is not one of {list(allowed)}')
        if self.min_depth is not None and self.max_depth is not None \
                and not (0 <= self.min_depth < self.max_depth):
            raise ConfigError(
                f'need 0 <= min_depth < max_depth, got {self.min_depth!r}, {self.max_depth!r}')


@dataclass(frozen=True)
class NodeConfig:
    """Defaults of the ROS 2 ``depth_node`` (everything that is not an :class:`EstimatorConfig`).

    The node declares one parameter per field (plus the ``EstimatorConfig`` fields); YAML files
    only override. Units are in the names: ``_s`` seconds, ``_m`` metres, ``_px`` pixels.
    Zero means "off / not set" for ``fx``..``cy``, ``points_max_range_m``,
    ``points_max_uncertainty`` and ``colorize_max_depth_m``. ``cameras`` (empty = one camera
    on unprefixed topics), ``sync`` (``'latest'`` or ``'stamp'``), ``sync_tolerance_s`` and
    ``sync_wait_s`` describe a rig (:mod:`urcdc_depth_ros.cameras`).
    """

    autostart: bool = setting(
        True, 'configure and activate at start-up (false: wait for lifecycle transitions)')
    model_path: str = setting('', 'ONNX model, TensorRT engine or torch checkpoint (required)')
    backend: str = setting('onnxruntime', "inference backend: 'onnxruntime', 'openvino', "
                           "'tensorrt', 'torch' or 'auto' (by the model file and what is "
                           'installed; the log says why)')
    backend_threads: int = setting(
        0, 'CPU threads of the onnxruntime / openvino / torch backend; 0 = its default',
        (0, 1024))
    backend_precision: str = setting(
        '', "'' = the backend's default; tensorrt: auto|fp32|fp16|int8, openvino: "
        'auto|f32|bf16, torch: float32|bfloat16')
    engine_max_batch: int = setting(
        0, 'tensorrt, building from .onnx: largest batch of one engine call (profile max); '
        '0 = the number of cameras when the ONNX has a dynamic batch, else 1; batches larger '
        'than the engine run as several calls', (0, 64))
    use_compressed: bool = setting(
        False, 'subscribe to image/compressed (JPEG/PNG) instead of image')
    lazy: bool = setting(True, 'skip inference while no output topic has a subscriber')
    camera_info_tolerance_s: float = setting(
        0.005, 'largest |stamp difference| (s) between an image and the camera_info used for it',
        (0.0, 10.0))
    camera_info_buffer: int = setting(
        20, 'how many recent camera_info messages are kept for stamp matching', (1, 1000))
    camera_info_wait_s: float = setting(
        0.1, 'how long (s) the worker waits for a matching camera_info', (0.0, 5.0))
    fx: float = setting(
        0.0, 'fallback focal length x (px) used when no camera_info arrives; 0 = none',
        (0.0, 1e6))
    fy: float = setting(0.0, 'fallback focal length y (px); 0 = same as fx', (0.0, 1e6))
    cx: float = setting(0.0, 'fallback principal point x (px); 0 = image centre', (0.0, 1e6))
    cy: float = setting(0.0, 'fallback principal point y (px); 0 = image centre', (0.0, 1e6))
    publish_points: bool = setting(True, 'publish the organised point cloud on points')
    points_rgb: bool = setting(
        True, 'add a packed rgb field to the cloud (when the image matches the depth)')
    points_uncertainty: bool = setting(
        True, 'add an uncertainty field (units of `uncertainty`) to the cloud')
    points_stride: int = setting(1, 'keep every n-th row and column in the cloud', (1, 64))
    points_max_range_m: float = setting(
        0.0, 'points farther than this range (m) become NaN; 0 = no limit', (0.0, 1e4))
    points_max_uncertainty: float = setting(
        0.0, 'points whose uncertainty exceeds this (units of `uncertainty`) become NaN; '
        '0 = no limit', (0.0, 1e4))
    publish_colorized: bool = setting(
        False, 'publish depth/colorized (bgr8 turbo colour map, for RViz)')
    colorize_max_depth_m: float = setting(
        0.0, "depth (m) mapped to the far end of the colour map; 0 = the model's max_depth",
        (0.0, 1e4))
    input_reliability: str = setting(
        'best_effort', "QoS reliability of image/camera_info: 'best_effort' or 'reliable'")
    input_depth: int = setting(1, 'QoS history depth of image/camera_info', (1, 10000))
    output_reliability: str = setting(
        'reliable', "QoS reliability of every output: 'reliable' or 'best_effort'")
    output_depth: int = setting(1, 'QoS history depth of every output', (1, 1000))
    diagnostics_period_s: float = setting(
        1.0, 'period (s) of the /diagnostics status', (0.05, 60.0))
    cameras: tuple[str, ...] = setting(
        (), 'camera names of a rig; each has <cam>/image, <cam>/camera_info in and '
        '<cam>/depth, ... out, and <cam>.<setting> overrides; empty = one camera on '
        'unprefixed topics')
    sync: str = setting(
        'latest', "'latest' (each camera's newest frame, batched as they come) or 'stamp' "
        '(wait for frames of every camera with matching stamps)')
    sync_tolerance_s: float = setting(
        0.005, "largest stamp difference (s) of frames batched together with sync 'stamp'",
        (0.0, 10.0))
    sync_wait_s: float = setting(
        0.05, "how long (s) sync 'stamp' waits for the missing cameras before running the "
        'ones it has', (0.0, 10.0))

    RELIABILITIES = ('best_effort', 'reliable')
    SYNC_MODES = ('latest', 'stamp')


def replace_known(cls, values: Mapping[str, Any], base=None):
    """Return ``cls`` built from ``base`` (or defaults) with ``values`` applied.

    Unknown keys raise ConfigError listing the known ones (a typo in YAML fails at start-up).
    """
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f'unknown {cls.__name__} keys {unknown!r}; known keys: {known}')
    kw = asdict(base) if base is not None else {}
    kw.update(values)
    return cls(**kw)


def load_node_params(path: str) -> dict[str, Any]:
    """The ``ros__parameters`` of the single ``depth_node`` entry of a params file (YAML).

    Raises ConfigError naming the file when it is unreadable or has no such entry.
    """
    import yaml
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f'params file {path!r} is unreadable: {exc}') from exc
    entries = [v for k, v in (doc or {}).items() if str(k).endswith('depth_node')] \
        if isinstance(doc, dict) else []
    if len(entries) != 1 or not isinstance(entries[0], dict) \
            or not isinstance(entries[0].get('ros__parameters'), dict):
        raise ConfigError(f'params file {path!r} needs exactly one `depth_node:` (or '
                          '`/**/depth_node:`) entry with `ros__parameters:` (see '
                          'config/depth.yaml)')
    return dict(entries[0]['ros__parameters'])


def estimator_config_from_params(params: Mapping[str, Any]) -> EstimatorConfig:
    """The EstimatorConfig a node started with ``params`` uses (0 depth limits = the model's)."""
    names = {f.name for f in fields(EstimatorConfig)}
    kw = {k: v for k, v in params.items() if k in names}
    for k in ('min_depth', 'max_depth'):
        if k in kw:
            kw[k] = kw[k] or None
    return EstimatorConfig(**kw)


__all__ = ['ModelMeta', 'EstimatorConfig', 'NodeConfig', 'replace_known',
           'load_node_params', 'estimator_config_from_params',
           'setting', 'param_docs', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'KITTI_FOCAL_PX', 'NYU_FOCAL_PX', 'KITTI_MAX_DEPTH_M', 'MODEL_PRECISIONS']
