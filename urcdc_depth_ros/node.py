"""The ROS 2 shell: ``DepthNode`` (a lifecycle node) and the ``depth_node`` entry point.

Only wiring lives here: parameters (declared from the ``config.py`` dataclasses), QoS,
callbacks, the inference worker and message conversions (``ros_io``). Depth itself comes from
the ROS-free :class:`~urcdc_depth_ros.estimator.DepthEstimator`, clouds from ``pointcloud``.
"""
from __future__ import annotations

import functools
import os
import sys
import textwrap
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from . import ros_io
from .cameras import (CAMERA_OVERRIDES, CameraConfig, camera_configs, check_override_names,
                      validate_camera_names)
from .config import KITTI_MAX_DEPTH_M, EstimatorConfig, NodeConfig, param_docs
from .diagnostics import LatencyStats, NodeStats
from .encodings import to_rgb
from .errors import InputError, UrcdcDepthError
from .frame_buffer import RigSlots
from .pointcloud import PointCloudBuilder
from .preprocessing import plan_geometry, view_fraction

#: threads of the point-cloud build (the backend is idle while the node publishes)
CLOUD_THREADS = 2


#: parameter -> (description, (min, max) or None), from the config fields' metadata
PARAM_DOCS = param_docs(NodeConfig, EstimatorConfig)
_OPTIONAL_ZERO = ('min_depth', 'max_depth')  # None in EstimatorConfig <-> 0.0 as a parameter


@dataclass
class _Frame:
    """One accepted input image, as stored in its camera's latest-frame slot.

    ``image`` is None for a compressed frame that arrived while nobody subscribed (lazy): it
    is decoded only if a subscriber is there when the worker takes it (``msg`` keeps it).
    """

    image: Optional[np.ndarray]
    encoding: str
    header: Header
    stamp_ns: int
    t_recv_s: float
    msg: Any = None


@dataclass
class _Job:
    """A frame of one camera that passed the checks and goes into the batched backend call."""

    cam: '_Camera'
    frame: _Frame
    camera_model: ros_io.CameraModel


class _Camera:
    """Per-camera state: settings, publishers, subscriptions, camera_info buffer, statistics."""

    def __init__(self, cfg: CameraConfig, stats: NodeStats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.pubs: dict[str, Any] = {}
        self.cond = threading.Condition()
        self.cam_infos: deque[tuple[ros_io.CameraModel, Header]] = deque(
            maxlen=cfg.node.camera_info_buffer)
        self.cam_ever = False
        self.fallback_warned = False
        self.view_checked = False

    @property
    def name(self) -> str:
        """The camera's name, '' for the single-camera node."""
        return self.cfg.name


def uncertainty_calibration(estimator) -> str:
    """Diagnostics text: ``'none'`` (uncalibrated formula) or what the table was fitted on."""
    cal = getattr(estimator, 'calibration', None)
    if cal is None:
        return 'none' if estimator is not None else ''
    return f'fitted on {cal.n_pixels} px of {cal.fitted_on.get("source", "?")}'


class DepthNode(LifecycleNode):
    """Monocular metric depth + uncertainty from one camera or a rig of N (URCDC-Depth).

    Lifecycle: ``on_configure`` loads the model and creates publishers, ``on_activate``
    subscribes and starts the inference worker, ``on_deactivate`` stops both, ``on_cleanup``
    releases the model. With ``autostart`` (default) ``main()`` runs configure + activate.

    Parameters (defaults in ``config.NodeConfig`` / ``config.EstimatorConfig``; see
    :data:`PARAM_DOCS`, ``depth_node --help`` or ``ros2 param describe``):
        model_path, backend, backend_threads, backend_precision, engine_max_batch, autostart,
        use_compressed, lazy,
        camera_info_tolerance_s, camera_info_buffer, camera_info_wait_s,
        fx, fy, cx, cy (fallback intrinsics, px),
        publish_points, points_rgb, points_uncertainty, points_stride, points_max_range_m,
        points_max_uncertainty, publish_colorized, colorize_max_depth_m,
        input_reliability, input_depth, output_reliability, output_depth, diagnostics_period_s,
        cameras, sync, sync_tolerance_s, sync_wait_s (rigs; ``<cam>.<setting>`` overrides
        per camera, see :mod:`urcdc_depth_ros.cameras`),
        resize_mode, output_resolution, rescale_focal, flip_tta, uncertainty, min_depth,
        max_depth (EstimatorConfig).

    Subscribers (relative names, prefixed ``<cam>/`` per camera of a rig; sensor-data QoS by
    default):
        image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8), or with ``use_compressed``
        image/compressed (sensor_msgs/CompressedImage: JPEG, PNG);
        camera_info (sensor_msgs/CameraInfo), matched to each image by stamp.

    Publishers (every message carries the input image's header: stamp and optical frame):
        depth (sensor_msgs/Image 32FC1, metres along z, NaN = invalid; REP 118),
        uncertainty (sensor_msgs/Image 32FC1, units per the ``uncertainty`` parameter),
        depth/camera_info (sensor_msgs/CameraInfo matching the depth image's size and K),
        points (sensor_msgs/PointCloud2, organised, float32 x y z [rgb] [uncertainty] in m,
        NaN = invalid, is_dense false), depth/colorized (sensor_msgs/Image bgr8, optional),
        /diagnostics (diagnostic_msgs/DiagnosticArray: rates, latency, drop/reject counts;
        per camera and, for a rig, the batch sizes).

    A rig runs one backend call per batch: every camera with a new frame (``sync: latest``),
    or the cameras whose stamps match (``sync: stamp``).
    """

    def __init__(self, node_name: str = 'depth_node', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._param_errors: dict[str, str] = {}
        self._declare_all()
        self.stats = NodeStats()
        self.batch_sizes: Counter[int] = Counter()
        self.batch_backend_ms = LatencyStats()
        self.sync_timeouts = 0
        self._cams: list[_Camera] = []
        self._rig: Optional[RigSlots[_Frame]] = None
        self._estimator = None
        self._cfg: Optional[NodeConfig] = None
        self._est_cfg: Optional[EstimatorConfig] = None
        self._subs: list = []
        self._diag_pub = None
        self._diag_timer = None
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._clouds = PointCloudBuilder(threads=CLOUD_THREADS)
        self._buffers = ros_io.MessageBuffers()  # outgoing message data, reused per frame
        self._state = 'unconfigured'
        self._input_group = MutuallyExclusiveCallbackGroup()

    # ---------------------------------------------------------------- parameters
    def _declare(self, name: str, default: Any, doc: Optional[str] = None) -> None:
        """Declare ``name`` with a described, ranged descriptor; remember invalid overrides."""
        description, limits = PARAM_DOCS[doc or name]
        desc = ParameterDescriptor(name=name, description=description)
        if limits is not None and isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(limits[0]), to_value=float(limits[1]), step=0.0)]
        elif limits is not None and isinstance(default, int) and not isinstance(default, bool):
            desc.integer_range = [IntegerRange(
                from_value=int(limits[0]), to_value=int(limits[1]), step=1)]
        if default is None:  # `cameras`: a string list whose empty YAML form arrives unset
            desc.dynamic_typing = True
        try:
            self.declare_parameter(name, default, desc)
        except (InvalidParameterValueException, InvalidParameterTypeException,
                ParameterException) as exc:
            # reason: a bad YAML/CLI value must fail configure with a message, not the process
            self._param_errors[name] = f'parameter {name!r}: {exc}'
            self.declare_parameter(name, default, desc, ignore_override=True)

    def _declare_all(self) -> None:
        """Declare every NodeConfig and EstimatorConfig field and log the resolved values."""
        defaults = parameter_defaults()
        for name, default in defaults.items():
            self._declare(name, default)
        resolved = ', '.join(f'{n}={self.get_parameter(n).value!r}' for n in defaults)
        self.get_logger().info(f'parameters: {resolved}')

    def _camera_overrides(self, cameras: tuple[str, ...],
                          node_kw: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``<cam>.<setting>`` parameters given in the params file / CLI, declared on first use."""
        given = set(self._parameter_overrides)
        check_override_names(given, cameras)
        out: dict[str, dict[str, Any]] = {}
        est_defaults = {f.name: self.get_parameter(f.name).value
                        for f in fields(EstimatorConfig)}
        for cam in cameras:
            for key in CAMERA_OVERRIDES:
                full = f'{cam}.{key}'
                if full not in given:
                    continue
                if not self.has_parameter(full):
                    self._declare(full, node_kw.get(key, est_defaults.get(key)), doc=key)
                if full in self._param_errors:
                    raise UrcdcDepthError(self._param_errors[full])
                out.setdefault(cam, {})[key] = self.get_parameter(full).value
        return out

    def _read_config(self) -> tuple[NodeConfig, EstimatorConfig, list[CameraConfig]]:
        """Current parameter values -> validated configs; raises UrcdcDepthError / ValueError."""
        if self._param_errors:
            raise UrcdcDepthError('; '.join(self._param_errors.values()))
        node_kw = {f.name: self.get_parameter(f.name).value for f in fields(NodeConfig)}
        est_kw = {f.name: self.get_parameter(f.name).value for f in fields(EstimatorConfig)}
        for name in _OPTIONAL_ZERO:
            est_kw[name] = est_kw[name] or None
        node_kw['cameras'] = validate_camera_names(node_kw['cameras'])
        cfg = NodeConfig(**node_kw)
        for name, allowed in (('input_reliability', NodeConfig.RELIABILITIES),
                              ('output_reliability', NodeConfig.RELIABILITIES),
                              ('sync', NodeConfig.SYNC_MODES)):
            if getattr(cfg, name) not in allowed:
                raise UrcdcDepthError(f'parameter {name!r}={getattr(cfg, name)!r} is not one of '
                                      f'{list(allowed)}')
        est_cfg = EstimatorConfig(**est_kw)
        rig = camera_configs(cfg, est_cfg.resize_mode, cfg.cameras,
                             self._camera_overrides(cfg.cameras, node_kw))
        if not cfg.model_path:
            raise UrcdcDepthError("parameter 'model_path' is empty; set it to an ONNX model, "
                                  'TensorRT engine or checkpoint')
        if not os.path.exists(cfg.model_path):
            raise UrcdcDepthError(f'parameter model_path={cfg.model_path!r}: no such file')
        return cfg, est_cfg, rig

    @staticmethod
    def _qos(reliability: str, depth: int) -> QoSProfile:
        rel = (ReliabilityPolicy.RELIABLE if reliability == 'reliable'
               else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=rel,
                          durability=DurabilityPolicy.VOLATILE)

    # ---------------------------------------------------------------- compatibility views
    @property
    def _pubs(self) -> dict[str, Any]:
        """Every output publisher, keyed ``<key>`` (single camera) or ``<cam>/<key>``."""
        return {(f'{c.name}/{k}' if c.name else k): p for c in self._cams for k, p in
                c.pubs.items()}

    @property
    def _cam_infos(self) -> deque:
        """The camera_info buffer of the first (single) camera."""
        return self._cams[0].cam_infos if self._cams else deque()

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load the estimator, create publishers and the diagnostics timer."""
        try:
            cfg, est_cfg, rig = self._read_config()
            from .estimator import DepthEstimator  # reason: keeps `import node` light
            from .inference import backend_options, resolve_backend
            backend = resolve_backend(cfg.backend, cfg.model_path)
            max_batch = cfg.engine_max_batch
            if backend == 'tensorrt' and not max_batch:
                from .inference.tensorrt_build import auto_max_batch
                max_batch = auto_max_batch(cfg.model_path, len(rig))
            self._estimator = DepthEstimator.from_model(
                cfg.model_path, backend=backend, config=est_cfg,
                **backend_options(backend, cfg.backend_threads, cfg.backend_precision,
                                  max_batch))
        except (UrcdcDepthError, ValueError, TypeError, OSError, ImportError) as exc:
            self.get_logger().error(f'configure failed: {exc}')
            self._estimator = None
            return TransitionCallbackReturn.FAILURE
        self._cfg, self._est_cfg = cfg, est_cfg
        self.batch_sizes.clear()
        self.sync_timeouts = 0
        self._cams = [_Camera(c, self.stats if not c.name else NodeStats()) for c in rig]
        for cam in self._cams:
            c = cam.cfg.node
            qos = self._qos(c.output_reliability, c.output_depth)
            cam.pubs = {
                'depth': self.create_lifecycle_publisher(Image, cam.cfg.topic('depth'), qos),
                'uncertainty': self.create_lifecycle_publisher(
                    Image, cam.cfg.topic('uncertainty'), qos),
                'camera_info': self.create_lifecycle_publisher(
                    CameraInfo, cam.cfg.topic('depth/camera_info'), qos),
            }
            if c.publish_points:
                cam.pubs['points'] = self.create_lifecycle_publisher(
                    PointCloud2, cam.cfg.topic('points'), qos)
            if c.publish_colorized:
                cam.pubs['colorized'] = self.create_lifecycle_publisher(
                    Image, cam.cfg.topic('depth/colorized'), qos)
            self._warn_narrow_view_from_fallback(cam)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        meta = getattr(self._estimator, 'meta', None)
        cams = f' cameras={list(cfg.cameras)!r} sync={cfg.sync!r}' if cfg.cameras else ''
        self.get_logger().info(
            f'configured: backend={cfg.backend!r} model={cfg.model_path!r} '
            f'input_size={getattr(self._estimator, "input_size", None)!r} '
            f'variant={getattr(meta, "variant", None)!r} uncertainty={est_cfg.uncertainty!r}'
            f'{cams}')
        if est_cfg.uncertainty == 'metres' and uncertainty_calibration(self._estimator) == 'none':
            self.get_logger().warning(
                f'{cfg.model_path!r} carries no uncertainty calibration: `uncertainty` holds '
                'the uncalibrated formula 2 d r / (1 - r^2), not measured metres; fit one '
                'with `urcdc-calibrate --model MODEL --bag BAG_WITH_LIDAR`')
        self._state = 'inactive'
        return super().on_configure(state)

    def _warn_view(self, cam: _Camera, image_hw: tuple[int, int], K_px: np.ndarray,
                   source: str) -> None:
        """Warn when the network sees less than half of this camera's image."""
        meta = self._estimator.meta
        try:
            geom = plan_geometry(image_hw, K_px, (meta.input_height, meta.input_width),
                                 cam.cfg.resize_mode, focal_px=meta.focal_px)
        except InputError:
            return
        share = view_fraction(geom)
        if share < 0.5:
            fix = ("use resize_mode 'auto' (or 'resize')" if cam.cfg.resize_mode == 'kb_crop'
                   else "check fx against the model's training focal, use resize_mode "
                        "'resize'")
            self.get_logger().warning(
                f'{cam.cfg.label}: the network sees {share:.0%} of the {image_hw[1]}x'
                f'{image_hw[0]} image ({source}) with resize_mode={cam.cfg.resize_mode!r}; '
                f'the rest is NaN: {fix}, or use a model trained for this camera')

    def _warn_narrow_view_from_fallback(self, cam: _Camera) -> None:
        """At configure: judge the view on the image size the fallback cx, cy imply."""
        c = cam.cfg.node
        if c.fx > 0 and c.cx > 0 and c.cy > 0:
            hw = (int(round(2 * c.cy + 1)), int(round(2 * c.cx + 1)))
            K = np.array([[c.fx, 0, c.cx], [0, c.fy or c.fx, c.cy], [0, 0, 1]], np.float64)
            self._warn_view(cam, hw, K, 'size implied by the fallback cx, cy')

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs and start the inference worker."""
        for cam in self._cams:
            c = cam.cfg.node
            qos = self._qos(c.input_reliability, c.input_depth)
            if c.use_compressed:
                self._subs.append(self.create_subscription(
                    CompressedImage, cam.cfg.topic('image/compressed'),
                    functools.partial(self._on_compressed, cam), qos,
                    callback_group=self._input_group))
            else:
                self._subs.append(self.create_subscription(
                    Image, cam.cfg.topic('image'), functools.partial(self._on_image, cam), qos,
                    callback_group=self._input_group))
            cam_qos = self._qos(c.input_reliability, max(c.input_depth, 5))
            self._subs.append(self.create_subscription(
                CameraInfo, cam.cfg.topic('camera_info'),
                functools.partial(self._on_camera_info, cam), cam_qos,
                callback_group=self._input_group))
        self._stop.clear()
        self._rig = RigSlots([c.name for c in self._cams])
        self._worker = threading.Thread(target=self._work, name='depth_worker', daemon=True)
        self._worker.start()
        self._state = 'active'
        topics = ', '.join(s.topic_name for s in self._subs)
        self.get_logger().info(f'active: waiting for images on {topics}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker (a batch being processed is finished first)."""
        self._stop_inputs()
        self._state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy publishers and timers and close the backend."""
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything from any state."""
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the worker, drop subscriptions and publishers, close the backend (idempotent)."""
        self._stop_inputs()
        self._release()
        self._state = 'finalized'

    def _stop_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._stop.set()
        if self._rig is not None:
            self._rig.close()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self._rig is not None:
            self._rig.clear()

    def _release(self) -> None:
        for cam in self._cams:
            for pub in cam.pubs.values():
                self.destroy_lifecycle_publisher(pub)
            cam.pubs = {}
        self._cams = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self._estimator is not None:
            self._estimator.close()
            self._estimator = None

    # ---------------------------------------------------------------- callbacks
    def _reject(self, cam: _Camera, kind: str, why: str) -> None:
        cam.stats.reject(kind, why)
        where = f' on {cam.name}' if cam.name else ''
        self.get_logger().error(f'dropped a malformed {kind} message{where}: {why}',
                                throttle_duration_sec=2.0)

    def _accept(self, cam: _Camera, image: Optional[np.ndarray], encoding: str, header: Header,
                msg: Any = None) -> None:
        now = time.perf_counter()
        cam.stats.input_tick(now)
        stamp_ns = ros_io.stamp_to_ns(header.stamp)
        frame = _Frame(image, encoding, header, stamp_ns, now, msg)
        rig = self._rig
        if rig is not None and rig.put(cam.name, frame, stamp_ns):
            cam.stats.count('dropped')

    def _on_image(self, cam: _Camera, msg: Image) -> None:
        try:
            if msg.encoding not in ros_io.COLOUR_ENCODINGS:
                raise InputError(f'encoding {msg.encoding!r} is not one of '
                                 f'{list(ros_io.COLOUR_ENCODINGS)}')
            image = ros_io.image_to_numpy(msg)  # a view of the message buffer: no copy
        except InputError as exc:
            self._reject(cam, 'image', str(exc))
            return
        self._accept(cam, image, msg.encoding, msg.header)

    def _on_compressed(self, cam: _Camera, msg: CompressedImage) -> None:
        if not self._any_wanted(cam):  # lazy: decode only if someone is listening
            self._accept(cam, None, '', msg.header, msg)
            return
        try:
            image, encoding = ros_io.decode_compressed(msg)
        except InputError as exc:
            self._reject(cam, 'image', str(exc))
            return
        self._accept(cam, image, encoding, msg.header)

    def _on_camera_info(self, cam: _Camera, msg: CameraInfo) -> None:
        try:
            model = ros_io.parse_camera_info(msg)
        except InputError as exc:
            self._reject(cam, 'camera_info', str(exc))
            return
        with cam.cond:
            cam.cam_infos.append((model, msg.header))
            cam.cam_ever = True
            cam.cond.notify_all()

    # ---------------------------------------------------------------- worker
    def _match_camera_info(self, cam: _Camera, stamp_ns: int,
                           deadline: float) -> Optional[ros_io.CameraModel]:
        """Camera info with the same stamp, else the nearest within the tolerance.

        May wait until ``deadline`` (time.monotonic(), shared by the cameras of a batch).
        """
        tol_ns = int(cam.cfg.node.camera_info_tolerance_s * 1e9)

        def best() -> Optional[ros_io.CameraModel]:
            cands = [(abs(c.stamp_ns - stamp_ns), c) for c, _ in cam.cam_infos]
            cands = [dc for dc in cands if dc[0] <= tol_ns]
            return min(cands, key=lambda dc: dc[0])[1] if cands else None

        with cam.cond:
            found = best()
            if found is not None and found.stamp_ns == stamp_ns:
                return found
            if not cam.cam_ever and cam.fallback_warned:
                return None  # no camera_info topic: do not wait on every frame
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                cam.cond.wait(min(left, 0.02))
                found = best()
                if found is not None and found.stamp_ns == stamp_ns:
                    return found
            return best()

    def _fallback_camera(self, cam: _Camera, frame: _Frame) -> Optional[ros_io.CameraModel]:
        cfg = cam.cfg.node
        if not cfg.fx > 0:
            return None
        h, w = frame.image.shape[:2]
        K = np.array([[cfg.fx, 0.0, cfg.cx or (w - 1) / 2.0],
                      [0.0, cfg.fy or cfg.fx, cfg.cy or (h - 1) / 2.0],
                      [0.0, 0.0, 1.0]])
        if not cam.fallback_warned:
            where = f'{cam.name}: ' if cam.name else ''
            self.get_logger().warning(
                f'{where}no camera_info matched; using the fallback intrinsics fx={K[0, 0]} '
                f'fy={K[1, 1]} cx={K[0, 2]} cy={K[1, 2]} px (warned once)')
            cam.fallback_warned = True
        return ros_io.CameraModel(K, np.hstack([K, np.zeros((3, 1))]), np.zeros(5), np.eye(3),
                                  'plumb_bob', w, h, frame.stamp_ns, frame.header.frame_id)

    def _wanted(self, cam: _Camera, key: str) -> bool:
        pub = cam.pubs.get(key)
        if pub is None:
            return False
        return not self._cfg.lazy or pub.get_subscription_count() > 0

    def _any_wanted(self, cam: _Camera) -> bool:
        return self._cfg is not None and any(self._wanted(cam, k) for k in list(cam.pubs))

    def _work(self) -> None:
        cams = {c.name: c for c in self._cams}
        cfg = self._cfg
        while not self._stop.is_set():
            batch = self._rig.take_batch(0.2, cfg.sync, cfg.sync_tolerance_s, cfg.sync_wait_s)
            for name in batch.stale:
                cams[name].stats.count('dropped')
            if batch.timed_out and batch.items:
                self.sync_timeouts += 1
            if batch.items:
                self._process_batch([(cams[n], f) for n, f in batch.items.items()])

    def _prepare(self, cam: _Camera, frame: _Frame, deadline: float) -> Optional[_Job]:
        """Lazy check, late decode and intrinsics for one frame; None = skipped (counted)."""
        if not self._any_wanted(cam):
            cam.stats.count('skipped_lazy')
            return None
        if frame.image is None:  # compressed, taken undecoded while nobody listened
            frame.image, frame.encoding = ros_io.decode_compressed(frame.msg)
            frame.msg = None
        model = self._match_camera_info(cam, frame.stamp_ns, deadline)
        if model is None and not cam.cam_ever:
            model = self._fallback_camera(cam, frame)
        where = f'{cam.name}: ' if cam.name else ''
        if model is None:
            cam.stats.count('no_intrinsics')
            with cam.cond:
                offsets = [(c.stamp_ns - frame.stamp_ns) * 1e-9 for c, _ in cam.cam_infos]
            nearest = (f'the nearest of the {len(offsets)} buffered is '
                       f'{min(offsets, key=abs):+.3f} s away' if offsets else 'none buffered')
            self.get_logger().warning(
                f'{where}no camera_info within camera_info_tolerance_s='
                f'{cam.cfg.node.camera_info_tolerance_s} s of the image stamp ({nearest}) and '
                'no fallback intrinsics (fx, fy, cx, cy); frame skipped',
                throttle_duration_sec=5.0)
            return None
        h, w = frame.image.shape[:2]
        if (model.width, model.height) != (w, h):
            cam.stats.count('no_intrinsics')
            self.get_logger().warning(
                f'{where}camera_info size {model.width}x{model.height} differs from the image '
                f'{w}x{h}; frame skipped', throttle_duration_sec=5.0)
            return None
        if not cam.view_checked:
            cam.view_checked = True
            self._warn_view(cam, (h, w), model.K, 'first frame')
        return _Job(cam, frame, model)

    def _process_batch(self, frames: list[tuple[_Camera, _Frame]]) -> None:
        """One backend call for every camera of the batch that has a frame to process."""
        t_start = time.perf_counter()
        deadline = time.monotonic() + self._cfg.camera_info_wait_s
        jobs = []
        for cam, frame in frames:
            try:
                job = self._prepare(cam, frame, deadline)
            except InputError as exc:
                self._reject(cam, 'image', str(exc))
                continue
            if job is not None:
                jobs.append(job)
        if not jobs:
            return
        try:
            results = self._estimator.estimate_batch(
                [j.frame.image for j in jobs], [j.camera_model.K for j in jobs],
                [j.frame.encoding for j in jobs], [j.cam.cfg.resize_mode for j in jobs])
        except InputError as exc:
            if len(jobs) == 1:
                self._reject(jobs[0].cam, 'image', str(exc))
                return
            # one bad frame must not cost the others: isolate it by running each alone
            for job in jobs:
                self._process_batch([(job.cam, job.frame)])
            return
        except Exception as exc:  # noqa: BLE001 - a batch must never kill the worker
            for job in jobs:
                job.cam.stats.count('failed')
                job.cam.stats.last_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().error(f'inference failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=2.0)
            return
        backend_ms = results[0].timings_ms.get('backend')
        if self._cfg.cameras:
            self.batch_sizes[len(jobs)] += 1
            if backend_ms is not None:
                self.batch_backend_ms.add(backend_ms)
        for job, res in zip(jobs, results):
            try:
                self._publish(job, res, t_start)
            except Exception as exc:  # noqa: BLE001 - one camera's outputs never stop others
                job.cam.stats.count('failed')
                self.get_logger().error(f'publishing failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=2.0)

    def _publish(self, job: _Job, res, t_start: float) -> None:
        """Publish the wanted outputs of one camera's result (nothing for unwanted ones)."""
        cam, frame = job.cam, job.frame
        header = frame.header
        dh, dw = res.depth_m.shape
        if self._wanted(cam, 'depth'):
            cam.pubs['depth'].publish(self._image(cam, 'depth', res.depth_m, '32FC1', header))
        if self._wanted(cam, 'uncertainty'):
            cam.pubs['uncertainty'].publish(self._image(
                cam, 'uncertainty', np.asarray(res.uncertainty, np.float32), '32FC1', header))
        if self._wanted(cam, 'camera_info'):
            cam.pubs['camera_info'].publish(
                ros_io.transform_camera_info(job.camera_model, res.K, dw, dh, header))
        if self._wanted(cam, 'points'):
            cam.pubs['points'].publish(self._cloud(cam, frame, res, header))
        if self._wanted(cam, 'colorized'):
            meta = getattr(self._estimator, 'meta', None)
            far = self._cfg.colorize_max_depth_m or getattr(meta, 'max_depth', KITTI_MAX_DEPTH_M)
            cam.pubs['colorized'].publish(self._image(
                cam, 'colorized', ros_io.colorize_depth(res.depth_m, far), 'bgr8', header))
        now = time.perf_counter()
        cam.stats.output_tick(now, (now - frame.t_recv_s) * 1e3,
                              res.timings_ms.get('backend'), (t_start - frame.t_recv_s) * 1e3)

    def _image(self, cam: _Camera, key: str, arr: np.ndarray, encoding: str, header):
        """Image message of ``arr`` in this camera's reused ``key`` buffer."""
        buf = self._buffers.get((cam.name, key), arr.nbytes)
        return ros_io.numpy_to_image(arr, encoding, header, buffer=buf)

    def _cloud(self, cam: _Camera, frame: _Frame, res, header):
        """PointCloud2 of this camera's result, built in the camera's reused buffer."""
        cfg = cam.cfg.node
        rgb = None
        if cfg.points_rgb and frame.image.shape[:2] == res.depth_m.shape:
            rgb = to_rgb(frame.image, frame.encoding)
        unc = res.uncertainty if (cfg.points_uncertainty or cfg.points_max_uncertainty) else None
        return ros_io.cloud_message(
            self._clouds, self._buffers, (cam.name, 'points'), res.depth_m, res.K, header,
            rgb=rgb, uncertainty=unc, uncertainty_field=cfg.points_uncertainty,
            stride=cfg.points_stride, max_range_m=cfg.points_max_range_m,
            max_uncertainty=cfg.points_max_uncertainty)

    # ---------------------------------------------------------------- diagnostics
    def _camera_status(self, stats: NodeStats, name: str) -> DiagnosticStatus:
        """One camera's (or the single camera node's) health: rates Hz, latency ms, counters."""
        s = stats.summary(time.perf_counter())
        status = DiagnosticStatus(name=name, hardware_id=os.path.basename(
            self._cfg.model_path if self._cfg else ''))
        if self._state != 'active':
            status.level, status.message = DiagnosticStatus.WARN, f'node is {self._state}'
        elif s['input_rate_hz'] > 0 and s['output_rate_hz'] == 0 and not s['skipped_lazy']:
            status.level, status.message = DiagnosticStatus.WARN, 'images arrive, no output'
        else:
            status.level, status.message = DiagnosticStatus.OK, (
                f"{s['output_rate_hz']:.1f} Hz out, p50 {s['latency_p50_ms']:.1f} ms")
        values = {k: (f'{v:.3f}' if isinstance(v, float) else str(v)) for k, v in s.items()}
        values['backend'] = self._cfg.backend if self._cfg else ''
        backend = getattr(self._estimator, 'backend', None)
        values['backend_name'] = str(getattr(backend, 'name', ''))
        values['backend_precision'] = str(getattr(backend, 'precision', ''))
        values['backend_device'] = str(getattr(backend, 'device', ''))
        values['model_path'] = self._cfg.model_path if self._cfg else ''
        values['input_size'] = str(getattr(self._estimator, 'input_size', ''))
        values['uncertainty'] = self._est_cfg.uncertainty if self._est_cfg else ''
        values['uncertainty_calibration'] = uncertainty_calibration(self._estimator)
        values['state'] = self._state
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    def diagnostics_status(self) -> DiagnosticStatus:
        """The node's health as one DiagnosticStatus (for a rig: batches and backend per batch)."""
        fqn = self.get_fully_qualified_name()
        status = self._camera_status(self.stats, f'{fqn}: depth')
        if self._cfg is not None and self._cfg.cameras:
            hist = ' '.join(f'{n}:{c}' for n, c in sorted(self.batch_sizes.items()))
            status.values += [
                KeyValue(key='cameras', value=','.join(self._cfg.cameras)),
                KeyValue(key='sync', value=self._cfg.sync),
                KeyValue(key='sync_timeouts', value=str(self.sync_timeouts)),
                KeyValue(key='batches', value=str(sum(self.batch_sizes.values()))),
                KeyValue(key='batch_size_histogram', value=hist),
                KeyValue(key='backend_per_batch_p50_ms',
                         value=f'{self.batch_backend_ms.percentile(50):.3f}')]
            if self._state == 'active':
                status.level, status.message = DiagnosticStatus.OK, (
                    f'{len(self._cfg.cameras)} cameras, {sum(self.batch_sizes.values())} '
                    'batches')
        return status

    def camera_statuses(self) -> list[DiagnosticStatus]:
        """One DiagnosticStatus per camera of a rig (empty for the single-camera node)."""
        fqn = self.get_fully_qualified_name()
        return [self._camera_status(c.stats, f'{fqn}: depth {c.name}')
                for c in self._cams if c.name]

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostics_status()] + self.camera_statuses()
        self._diag_pub.publish(msg)


def parameter_defaults() -> dict[str, Any]:
    """Every node parameter -> its default as declared (``cameras``: None = no rig)."""
    defaults: dict[str, Any] = {}
    for cls in (NodeConfig, EstimatorConfig):
        inst = cls()
        for f in fields(cls):
            value = getattr(inst, f.name)
            if f.name in _OPTIONAL_ZERO and value is None:
                value = 0.0
            elif f.name == 'cameras':
                value = None
            defaults[f.name] = value
    return defaults


def help_text() -> str:
    """What ``depth_node --help`` prints: purpose, usage, topics, parameters with defaults."""
    lines = [
        'depth_node: monocular metric depth with per-pixel uncertainty (URCDC-Depth) for one',
        'camera or a rig of cameras (one model, one batched backend call).',
        '',
        'usage: depth_node --ros-args --params-file config/depth.yaml '
        '-p model_path:=/models/model.onnx',
        '                  [-p NAME:=VALUE ...] [-r __ns:=/front] [-r image:=/cam/image_raw]',
        '',
        'inputs: image (or image/compressed), camera_info; outputs: depth (32FC1 m, NaN =',
        'invalid), uncertainty, depth/camera_info, points, depth/colorized, /diagnostics.',
        *textwrap.wrap('With cameras: [a, b] every topic is per camera (a/image, a/depth, ...) '
                       f'and <cam>.<setting> overrides one of: {", ".join(CAMERA_OVERRIDES)}.',
                       88),
        '',
        'parameters (default; units in the names: _s seconds, _m metres, _px / fx.. pixels):',
    ]
    for name, default in parameter_defaults().items():
        description, limits = PARAM_DOCS[name]
        shown = '[]' if default is None else repr(default)
        rng = f' [{limits[0]:g}, {limits[1]:g}]' if limits else ''
        lines.append(f'  {name} = {shown}{rng}')
        lines.extend(f'      {chunk}' for chunk in textwrap.wrap(description, 80))
    return '\n'.join(lines) + '\n'


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of ``depth_node``; returns the process exit status."""
    argv = sys.argv[1:] if args is None else list(args)
    ros_at = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    if {'-h', '--help'} & set(argv[:ros_at]):
        sys.stdout.write(help_text())
        return 0
    rclpy.init(args=args)
    node: Optional[DepthNode] = None
    rc = 0
    try:
        node = DepthNode()
        if node.get_parameter('autostart').value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal('autostart: configure failed (see above); exiting')
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal('autostart: activate failed; exiting')
                return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == '__main__':
    sys.exit(main())
