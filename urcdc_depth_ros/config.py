"""Configuration dataclasses: the single source of default values.

``ModelMeta`` travels with every checkpoint, ONNX file and TensorRT engine, so inference never
guesses the variant, input size, normalisation or depth range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KITTI_FOCAL_PX = 721.5377  # fx of KITTI's 2011_09_26 colour camera (image_02), pixels
NYU_FOCAL_PX = 518.8579


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
    """

    variant: str = 'tiny07'
    max_depth: float = 80.0
    input_height: int = 352
    input_width: int = 1216
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    focal_px: float = KITTI_FOCAL_PX
    min_depth: float = 1e-3
    dataset: str = 'unknown'

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
            depth error, m), ``'relative'`` (expected |gt-d|/(gt+d)) or ``'confidence'`` (the
            network's raw map in [0, 1], high = reliable).
        min_depth, max_depth: valid range in metres; outside it the depth is NaN. ``None``
            takes the model's.
    """

    resize_mode: str = 'auto'
    output_resolution: str = 'input'
    rescale_focal: bool = True
    flip_tta: bool = False
    uncertainty: str = 'metres'
    min_depth: float | None = None
    max_depth: float | None = None

    RESIZE_MODES = ('auto', 'kb_crop', 'resize')
    OUTPUT_RESOLUTIONS = ('input', 'model')
    UNCERTAINTY_KINDS = ('metres', 'relative', 'confidence')

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

    autostart: bool = True
    model_path: str = ''
    backend: str = 'onnxruntime'
    use_compressed: bool = False
    lazy: bool = True
    camera_info_tolerance_s: float = 0.005
    camera_info_buffer: int = 20
    camera_info_wait_s: float = 0.1
    fx: float = 0.0
    fy: float = 0.0
    cx: float = 0.0
    cy: float = 0.0
    publish_points: bool = True
    points_rgb: bool = True
    points_uncertainty: bool = True
    points_stride: int = 1
    points_max_range_m: float = 0.0
    points_max_uncertainty: float = 0.0
    publish_colorized: bool = False
    colorize_max_depth_m: float = 0.0
    input_reliability: str = 'best_effort'
    input_depth: int = 1
    output_reliability: str = 'reliable'
    output_depth: int = 1
    diagnostics_period_s: float = 1.0
    cameras: tuple[str, ...] = ()
    sync: str = 'latest'
    sync_tolerance_s: float = 0.005
    sync_wait_s: float = 0.05

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
           'IMAGENET_MEAN', 'IMAGENET_STD',
           'KITTI_FOCAL_PX', 'NYU_FOCAL_PX']
