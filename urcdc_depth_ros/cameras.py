"""Camera rigs: the ``cameras`` parameter, per-camera overrides and topic names (ROS-free).

One node serves N cameras. Each camera ``<cam>`` has its own inputs (``<cam>/image``,
``<cam>/image/compressed``, ``<cam>/camera_info``) and outputs (``<cam>/depth``, ...). A params
file overrides settings per camera in the natural YAML shape, which ROS 2 flattens into
``<cam>.<setting>`` parameters::

    depth_node:
      ros__parameters:
        cameras: [cam_02, cam_03]
        cam_03:
          fx: 721.5377
          points_stride: 2

An empty ``cameras`` list is the single-camera node: one camera named ``''`` whose topics
have no prefix (``image``, ``depth``, ...), exactly as before rigs existed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

from .config import NodeConfig
from .errors import ConfigError

#: settings a camera may override (the rest is node-wide: one model, one worker)
CAMERA_OVERRIDES = (
    'use_compressed', 'resize_mode', 'fx', 'fy', 'cx', 'cy', 'camera_info_tolerance_s',
    'input_reliability', 'input_depth', 'output_reliability', 'output_depth',
    'publish_points', 'points_rgb', 'points_uncertainty', 'points_stride',
    'points_max_range_m', 'points_max_uncertainty', 'publish_colorized',
)
#: a camera name is one ROS name token (it becomes a topic prefix and a parameter prefix)
NAME_PATTERN = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
#: dotted parameter prefixes that belong to rclpy, not to a camera
_FOREIGN_PREFIXES = ('qos_overrides',)


@dataclass(frozen=True)
class CameraConfig:
    """One camera of the rig.

    Attributes:
        name: camera name, ``''`` for the single-camera node (no topic prefix).
        node: the node settings with this camera's overrides applied.
        resize_mode: how this camera's images map to the network (``EstimatorConfig``).
    """

    name: str
    node: NodeConfig
    resize_mode: str

    def topic(self, base: str) -> str:
        """Relative topic ``base`` of this camera (``<name>/<base>``, or ``base``)."""
        return f'{self.name}/{base}' if self.name else base

    @property
    def label(self) -> str:
        """Name for logs and diagnostics (``'camera'`` for the single-camera node)."""
        return self.name or 'camera'


def validate_camera_names(value: Any) -> tuple[str, ...]:
    """The ``cameras`` parameter as a tuple of names; ConfigError naming a bad or repeated one.

    ``None`` (an empty YAML list arrives unset) and ``[]`` mean the single-camera node.
    """
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f'parameter cameras={value!r} must be a list of camera names, e.g. '
                          "['cam_02', 'cam_03']")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ConfigError(f'camera name {name!r} in cameras={list(names)!r} is invalid: '
                              'use a letter then letters, digits or _ (it becomes a topic and '
                              'parameter prefix)')
        if name in CAMERA_OVERRIDES or name in _FOREIGN_PREFIXES:
            raise ConfigError(f'camera name {name!r} clashes with a parameter name; rename it')
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f'camera names {dupes!r} appear more than once in '
                          f'cameras={list(names)!r}; each camera needs its own name')
    return names


def check_override_names(parameter_names: Iterable[str], cameras: Sequence[str]) -> None:
    """Every dotted parameter ``<cam>.<setting>`` must name a listed camera and a setting.

    Raises ConfigError naming the parameter, the cameras and the settings that are allowed.
    """
    for full in sorted(parameter_names):
        if '.' not in full:
            continue
        prefix, setting = full.split('.', 1)
        if prefix in _FOREIGN_PREFIXES:
            continue
        if prefix not in cameras:
            raise ConfigError(f'parameter {full!r} overrides camera {prefix!r}, which is not in '
                              f'cameras={list(cameras)!r}; add it there or remove the override')
        if setting not in CAMERA_OVERRIDES:
            raise ConfigError(f'parameter {full!r}: {setting!r} cannot be set per camera; '
                              f'per-camera settings are {list(CAMERA_OVERRIDES)}')


def camera_configs(node_cfg: NodeConfig, resize_mode: str, cameras: Sequence[str],
                   overrides: Mapping[str, Mapping[str, Any]]) -> list[CameraConfig]:
    """The rig: one :class:`CameraConfig` per camera (one unnamed one when ``cameras`` is empty).

    Args:
        node_cfg: node-wide settings; resize_mode: node-wide ``EstimatorConfig.resize_mode``.
        overrides: camera -> {setting: value} (settings in :data:`CAMERA_OVERRIDES`).
    Raises:
        ConfigError: a bad override value (e.g. an unknown reliability or resize mode).
    """
    from .config import EstimatorConfig
    if not cameras:
        return [CameraConfig('', node_cfg, resize_mode)]
    out = []
    for name in cameras:
        values = dict(overrides.get(name, {}))
        mode = values.pop('resize_mode', resize_mode)
        if mode not in EstimatorConfig.RESIZE_MODES:
            raise ConfigError(f'parameter {name}.resize_mode={mode!r} is not one of '
                              f'{list(EstimatorConfig.RESIZE_MODES)}')
        cfg = replace(node_cfg, **values)
        for key in ('input_reliability', 'output_reliability'):
            if getattr(cfg, key) not in NodeConfig.RELIABILITIES:
                raise ConfigError(f'parameter {name}.{key}={getattr(cfg, key)!r} is not one of '
                                  f'{list(NodeConfig.RELIABILITIES)}')
        out.append(CameraConfig(name, cfg, mode))
    return out


__all__ = ['CAMERA_OVERRIDES', 'NAME_PATTERN', 'CameraConfig', 'validate_camera_names',
           'check_override_names', 'camera_configs']
