"""TrainConfig: every training option in one dataclass, read from / written to YAML.

The YAML file has the top-level keys of :class:`TrainConfig` and a ``data:`` section holding the
:class:`urcdc_training.datasets.DataConfig` keys; split files written ``splits:NAME`` are the
lists bundled in ``training/splits`` (installed with ``urcdc_training``). Command-line
overrides are ``key=value`` or dotted ``data.input_height=352``; values are parsed as YAML and
coerced to the field's type.
Unknown keys raise :class:`ConfigError` listing the valid ones. A copy of the resolved config is
written beside the checkpoints (``train_config.yaml``) and embedded in each checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import yaml

from urcdc_depth_ros.errors import ConfigError
from urcdc_depth_ros.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER, METRIC_NAMES

from .datasets import DataConfig
from .losses import PARITY_MODES

AMP_MODES = ('off', 'bf16', 'fp16')
RESUME_MODES = ('auto', 'never')  # or a checkpoint path
LOSS_MIN_DEPTH_M = {'kitti': 1.0, 'nyu': 0.1}
EVAL_CROPS = {'kitti': 'garg', 'nyu': 'nyu'}
SPLITS_PREFIX = 'splits:'  # data.filenames_file: splits:NAME = the bundled training/splits/NAME


@dataclass
class TrainConfig:
    """Training options (defaults: the published KITTI Eigen recipe, docs/method.md §2).

    Attributes:
        variant: network variant (``large07`` in the paper; ``nano07`` is a small CPU variant).
        pretrained_swin, pretrained_densenet: ImageNet backbone weights (paths) or None.
        model_kwargs: extra keyword arguments for ``build_model`` (e.g. ``drop_path_rate``).
        lr: Adam learning rate at step 0.
        end_lr_ratio: the learning rate decays polynomially to ``end_lr_ratio * lr``.
        lr_power: power of the polynomial decay (0.9).
        weight_decay, adam_eps: parsed like the official scripts (1e-2, 1e-3) but, as there,
            passed to Adam only when ``pass_weight_decay_eps`` is true (then Adam uses them;
            otherwise Adam's defaults, weight decay 0 and eps 1e-8).
        epochs: passes over the training set.
        max_steps: stop after this many optimiser steps (0 = ``epochs`` full epochs); the LR
            schedule spans the resulting total.
        batch_size: images per process per step (DDP: the global batch is this x world size).
        parity: ``'epoch'`` (official: parity of the step within the epoch) or ``'global'``.
            Even steps optimise SILog + uncertainty, odd steps cross-distillation.
        loss_min_depth: GT validity threshold of the losses, metres (None: 1.0 KITTI, 0.1 NYU).
        variance_focus: lambda of SILog (0.85).
        amp: ``'off'``, ``'bf16'`` (autocast, CUDA or CPU) or ``'fp16'`` (autocast + GradScaler,
            CUDA only).
        grad_clip_norm: clip the gradient norm to this value (0 = off, as official).
        eval_every: evaluate every this many steps (0 = only at the end).
        eval_max_images: evaluate on the first N eval images (0 = all).
        eval_flip_tta: use flip test-time augmentation in periodic evaluation.
        eval_crop: ``'garg'``, ``'eigen'``, ``'nyu'`` or ``'none'`` (None: garg KITTI, nyu NYU).
        best_metrics: metrics whose best checkpoint is kept as ``best_<metric>.pt``.
        checkpoint_dir: where checkpoints, ``train_config.yaml`` and TensorBoard logs go.
        checkpoint_every: write a checkpoint every this many steps (and at the end).
        keep_last: how many periodic checkpoints to keep (best ones are kept separately).
        resume: ``'auto'`` (continue from the newest readable checkpoint in checkpoint_dir),
            ``'never'``, or a checkpoint path.
        tensorboard_dir: TensorBoard log dir (None: ``<checkpoint_dir>/tensorboard``; '' off).
        log_every: scalar logging period, steps. image_every: image panel period, steps.
        seed: seeds python, numpy, torch, the sampler shuffle and per-sample augmentation.
        device: ``'auto'`` (CUDA when available), ``'cpu'`` or ``'cuda'``.
        find_unused_parameters: DDP option; needed because odd steps leave the uncertainty
            heads (and skipped coupling units) without gradients.
        data: the data set options (see DataConfig).
    """

    variant: str = 'large07'
    pretrained_swin: str | None = None
    pretrained_densenet: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    lr: float = 2e-5
    end_lr_ratio: float = 0.1
    lr_power: float = 0.9
    weight_decay: float = 1e-2
    adam_eps: float = 1e-3
    pass_weight_decay_eps: bool = False
    epochs: int = 50
    max_steps: int = 0
    batch_size: int = 4
    parity: str = 'epoch'
    loss_min_depth: float | None = None
    variance_focus: float = 0.85
    amp: str = 'off'
    grad_clip_norm: float = 0.0
    eval_every: int = 5000
    eval_max_images: int = 0
    eval_flip_tta: bool = False
    eval_crop: str | None = None
    best_metrics: list = field(default_factory=lambda: ['abs_rel', 'rms', 'd1'])
    checkpoint_dir: str = 'runs/urcdc'
    checkpoint_every: int = 5000
    keep_last: int = 3
    resume: str = 'auto'
    tensorboard_dir: str | None = None
    log_every: int = 50
    image_every: int = 1000
    seed: int = 0
    device: str = 'auto'
    find_unused_parameters: bool = True
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        for name in ('filenames_file', 'filenames_file_eval'):
            value = str(getattr(self.data, name) or '')
            if value.startswith(SPLITS_PREFIX):
                from .datasets import split_path
                setattr(self.data, name, split_path(value[len(SPLITS_PREFIX):]))
        self.validate()

    # --- derived values ------------------------------------------------------------------
    @property
    def max_depth(self) -> float:
        """Depth range of the network, metres (the single source is ``data.max_depth``)."""
        return float(self.data.max_depth)

    @property
    def dataset_kind(self) -> str:
        """``'kitti'`` or ``'nyu'``."""
        return str(self.data.dataset)

    def loss_min_depth_m(self) -> float:
        """Valid-GT threshold of the losses, metres."""
        if self.loss_min_depth is not None:
            return float(self.loss_min_depth)
        return LOSS_MIN_DEPTH_M.get(self.dataset_kind, 1.0)

    def eval_crop_name(self) -> str | None:
        """Evaluation crop for ``urcdc_depth_ros.metrics.valid_mask`` (None = whole frame)."""
        crop = self.eval_crop if self.eval_crop is not None else EVAL_CROPS.get(
            self.dataset_kind, 'garg')
        return None if crop == 'none' else crop

    def tensorboard_path(self) -> str | None:
        """Resolved TensorBoard directory, or None when disabled."""
        if self.tensorboard_dir == '':
            return None
        return self.tensorboard_dir or os.path.join(self.checkpoint_dir, 'tensorboard')

    # --- validation ----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first bad value and how to fix it."""
        if self.amp not in AMP_MODES:
            raise ConfigError(f'amp={self.amp!r} is not one of {list(AMP_MODES)}')
        if self.parity not in PARITY_MODES:
            raise ConfigError(f'parity={self.parity!r} is not one of {list(PARITY_MODES)}')
        if self.device not in ('auto', 'cpu', 'cuda') and not str(self.device).startswith(
                'cuda:'):
            raise ConfigError(f"device={self.device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        for name in ('lr', 'lr_power', 'variance_focus'):
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} must be > 0, got {getattr(self, name)!r}')
        if not 0 <= self.end_lr_ratio <= 1:
            raise ConfigError(f'end_lr_ratio must be in [0, 1], got {self.end_lr_ratio!r}')
        for name in ('epochs', 'batch_size', 'keep_last'):
            if getattr(self, name) < 1:
                raise ConfigError(f'{name} must be >= 1, got {getattr(self, name)!r}')
        for name in ('max_steps', 'eval_every', 'eval_max_images', 'checkpoint_every',
                     'log_every', 'image_every'):
            if getattr(self, name) < 0:
                raise ConfigError(f'{name} must be >= 0 (0 = off/all), got '
                                  f'{getattr(self, name)!r}')
        unknown = sorted(set(self.best_metrics) - set(METRIC_NAMES))
        if unknown:
            raise ConfigError(f'best_metrics has unknown metrics {unknown!r}; valid: '
                              f'{list(METRIC_NAMES)}')
        if self.eval_crop not in (None, 'none', 'garg', 'eigen', 'nyu'):
            raise ConfigError(f"eval_crop={self.eval_crop!r}: use garg, eigen, nyu, none or null")
        if self.resume not in RESUME_MODES and not os.path.isfile(str(self.resume)):
            raise ConfigError(f'resume={self.resume!r} is neither one of {list(RESUME_MODES)} '
                              'nor an existing checkpoint file')

    # --- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML friendly: tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        """YAML text that :meth:`from_yaml_text` reads back to an equal config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str) -> None:
        """Write the YAML atomically (temp file + rename)."""
        tmp = f'{path}.tmp{os.getpid()}'
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(self.to_yaml())
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> 'TrainConfig':
        """Build from a nested dict; unknown keys raise ConfigError listing the valid ones."""
        if not isinstance(values, Mapping):
            raise ConfigError(f'a training config must be a mapping, got {type(values).__name__}')
        values = dict(values)
        data_values = values.pop('data', None) or {}
        data = _build(DataConfig, data_values, 'data.')
        kw = _coerce_fields(cls, values, '')
        try:
            return cls(data=data, **kw)
        except TypeError as exc:
            raise ConfigError(f'bad training config: {exc}') from exc

    @classmethod
    def from_yaml_text(cls, text: str, overrides: Sequence[str] = ()) -> 'TrainConfig':
        """Parse YAML text, apply ``key=value`` overrides, validate."""
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f'training config is not valid YAML: {exc}') from exc
        if not isinstance(values, dict):
            raise ConfigError('training config YAML must be a mapping of keys to values')
        apply_overrides(values, overrides)
        return cls.from_dict(values)

    @classmethod
    def load(cls, path: str, overrides: Sequence[str] = ()) -> 'TrainConfig':
        """Read a YAML file (see module docstring) and apply overrides."""
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f'cannot read training config {path!r}: {exc}; pass an existing '
                              'YAML file with --config (see config/train_*.yaml)') from exc
        return cls.from_yaml_text(text, overrides)


def apply_overrides(values: dict, overrides: Sequence[str]) -> dict:
    """Apply ``key=value`` / ``data.key=value`` strings to a nested dict in place.

    Values are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``, ``null``); type coercion to the
    field's type happens later in :meth:`TrainConfig.from_dict`.
    """
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'override {item!r} is not key=value (e.g. lr=1e-4 or '
                              'data.input_height=352)')
        key, raw = item.split('=', 1)
        try:
            value = yaml.safe_load(raw) if raw != '' else ''
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split('.')
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f'override {item!r}: {part!r} is not a section')
        node[parts[-1]] = value
    return values


# --- helpers -------------------------------------------------------------------------------

def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls, values, prefix):
    if not isinstance(values, Mapping):
        raise ConfigError(f'section {prefix.rstrip(".")!r} must be a mapping')
    kw = _coerce_fields(cls, dict(values), prefix)
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f'bad {prefix.rstrip(".")} config: {exc}') from exc


def _coerce_fields(cls, values: dict, prefix: str) -> dict:
    known = [f.name for f in fields(cls) if f.init and f.name != 'data']
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f'unknown {cls.__name__} keys {[prefix + k for k in unknown]!r}; '
                          f'valid keys: {[prefix + k for k in known]}'
                          + ('' if prefix else ' and data.<key>'))
    hints = typing.get_type_hints(cls)
    return {k: _coerce(v, hints.get(k, Any), prefix + k) for k, v in values.items()}


def _coerce(value, hint, name):
    """Coerce a YAML value to a (simple) type hint; raise ConfigError when impossible."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f'{name}: bad value {value!r}')
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ('true', 'false', 'yes', 'no',
                                                            '1', '0', 'on', 'off'):
                return value.lower() in ('true', 'yes', '1', 'on')
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError('not a boolean')
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError('not an integer')
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError('not a number')
            return float(value)
        if hint is str:
            if isinstance(value, (dict, list)):
                raise ValueError('not a string')
            return str(value)
        if hint in (list, tuple) or origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError('not a list')
            args = typing.get_args(hint)
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(args) != len(value):
                    raise ValueError(f'needs {len(args)} values')
                return tuple(_coerce(v, a, name) for v, a in zip(value, args))
            item = args[0] if args else Any
            out = [_coerce(v, item, name) for v in value]
            return tuple(out) if (hint is tuple or origin is tuple) else out
        if hint is dict or origin is dict:
            if not isinstance(value, dict):
                raise ValueError('not a mapping')
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{name}={value!r} is not a valid {getattr(hint, "__name__", hint)}'
                          f' ({exc})') from exc
    return value


__all__ = ['TrainConfig', 'apply_overrides', 'AMP_MODES', 'LOWER_IS_BETTER',
           'HIGHER_IS_BETTER']
