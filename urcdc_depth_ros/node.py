"""The ROS 2 shell: ``DepthNode`` (a lifecycle node) and the ``depth_node`` entry point.

Only wiring lives here: parameters (declared from the ``config.py`` dataclasses), QoS,
callbacks, the inference worker and message conversions (``ros_io``). Depth itself comes from
the ROS-free :class:`~urcdc_depth_ros.estimator.DepthEstimator`, clouds from ``pointcloud``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
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
from .config import KITTI_MAX_DEPTH_M, EstimatorConfig, NodeConfig, param_docs
from .diagnostics import NodeStats
from .encodings import to_rgb
from .errors import InputError, UrcdcDepthError
from .frame_buffer import LatestSlot
from .pointcloud import PointCloudBuilder


#: parameter -> (description, (min, max) or None), from the config fields' metadata
PARAM_DOCS = param_docs(NodeConfig, EstimatorConfig)
_OPTIONAL_ZERO = ('min_depth', 'max_depth')  # None in EstimatorConfig <-> 0.0 as a parameter


@dataclass
class _Frame:
    """One accepted input image, as stored in the latest-frame slot."""

    image: np.ndarray
    encoding: str
    header: Header
    stamp_ns: int
    t_recv_s: float


def uncertainty_calibration(estimator) -> str:
    """Diagnostics text: ``'none'`` (uncalibrated formula) or what the table was fitted on."""
    cal = getattr(estimator, 'calibration', None)
    if cal is None:
        return 'none' if estimator is not None else ''
    return f'fitted on {cal.n_pixels} px of {cal.fitted_on.get("source", "?")}'


class DepthNode(LifecycleNode):
    """Monocular metric depth + uncertainty from a camera stream (URCDC-Depth).

    Lifecycle: ``on_configure`` loads the model and creates publishers, ``on_activate``
    subscribes and starts the inference worker, ``on_deactivate`` stops both, ``on_cleanup``
    releases the model. With ``autostart`` (default) ``main()`` runs configure + activate.

    Parameters (defaults in ``config.NodeConfig`` / ``config.EstimatorConfig``; see
    :data:`PARAM_DOCS` or ``ros2 param describe``):
        model_path, backend, backend_threads, backend_precision, autostart, use_compressed, lazy,
        camera_info_tolerance_s, camera_info_buffer, camera_info_wait_s,
        fx, fy, cx, cy (fallback intrinsics, px),
        publish_points, points_rgb, points_uncertainty, points_stride, points_max_range_m,
        points_max_uncertainty, publish_colorized, colorize_max_depth_m,
        input_reliability, input_depth, output_reliability, output_depth, diagnostics_period_s,
        resize_mode, output_resolution, rescale_focal, flip_tta, uncertainty, min_depth,
        max_depth (EstimatorConfig).

    Subscribers (relative names; sensor-data QoS by default):
        image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8), or with ``use_compressed``
        image/compressed (sensor_msgs/CompressedImage: JPEG, PNG);
        camera_info (sensor_msgs/CameraInfo), matched to each image by stamp.

    Publishers (every message carries the input image's header: stamp and optical frame):
        depth (sensor_msgs/Image 32FC1, metres along z, NaN = invalid; REP 118),
        uncertainty (sensor_msgs/Image 32FC1, units per the ``uncertainty`` parameter),
        depth/camera_info (sensor_msgs/CameraInfo matching the depth image's size and K),
        points (sensor_msgs/PointCloud2, organised, float32 x y z [rgb] [uncertainty] in m,
        NaN = invalid, is_dense false), depth/colorized (sensor_msgs/Image bgr8, optional),
        /diagnostics (diagnostic_msgs/DiagnosticArray: rates, latency, drop/reject counts).
    """

    def __init__(self, node_name: str = 'depth_node', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._param_errors: dict[str, str] = {}
        self._declare_all()
        self.stats = NodeStats()
        self._slot: LatestSlot[_Frame] = LatestSlot()
        self._cam_cond = threading.Condition()
        self._cam_infos: deque[tuple[ros_io.CameraModel, Header]] = deque(maxlen=1)
        self._cam_ever = False
        self._fallback_warned = False
        self._estimator = None
        self._cfg: Optional[NodeConfig] = None
        self._est_cfg: Optional[EstimatorConfig] = None
        self._pubs: dict[str, Any] = {}
        self._subs: list = []
        self._diag_pub = None
        self._diag_timer = None
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._clouds = PointCloudBuilder()
        self._state = 'unconfigured'
        self._input_group = MutuallyExclusiveCallbackGroup()

    # ---------------------------------------------------------------- parameters
    def _declare(self, name: str, default: Any) -> None:
        """Declare ``name`` with a described, ranged descriptor; remember invalid overrides."""
        description, limits = PARAM_DOCS[name]
        desc = ParameterDescriptor(name=name, description=description)
        if limits is not None and isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(limits[0]), to_value=float(limits[1]), step=0.0)]
        elif limits is not None and isinstance(default, int) and not isinstance(default, bool):
            desc.integer_range = [IntegerRange(
                from_value=int(limits[0]), to_value=int(limits[1]), step=1)]
        try:
            self.declare_parameter(name, default, desc)
        except (InvalidParameterValueException, InvalidParameterTypeException,
                ParameterException) as exc:
            # reason: a bad YAML/CLI value must fail configure with a message, not the process
            self._param_errors[name] = f'parameter {name!r}: {exc}'
            self.declare_parameter(name, default, desc, ignore_override=True)

    def _declare_all(self) -> None:
        """Declare every NodeConfig and EstimatorConfig field and log the resolved values."""
        defaults: dict[str, Any] = {}
        for cls in (NodeConfig, EstimatorConfig):
            inst = cls()
            for f in fields(cls):
                value = getattr(inst, f.name)
                defaults[f.name] = 0.0 if f.name in _OPTIONAL_ZERO and value is None else value
        for name, default in defaults.items():
            self._declare(name, default)
        resolved = ', '.join(f'{n}={self.get_parameter(n).value!r}' for n in defaults)
        self.get_logger().info(f'parameters: {resolved}')

    def _read_config(self) -> tuple[NodeConfig, EstimatorConfig]:
        """Current parameter values -> validated configs; raises UrcdcDepthError / ValueError."""
        if self._param_errors:
            raise UrcdcDepthError('; '.join(self._param_errors.values()))
        node_kw = {f.name: self.get_parameter(f.name).value for f in fields(NodeConfig)}
        est_kw = {f.name: self.get_parameter(f.name).value for f in fields(EstimatorConfig)}
        for name in _OPTIONAL_ZERO:
            est_kw[name] = est_kw[name] or None
        cfg = NodeConfig(**node_kw)
        for name in ('input_reliability', 'output_reliability'):
            if getattr(cfg, name) not in NodeConfig.RELIABILITIES:
                raise UrcdcDepthError(f'parameter {name!r}={getattr(cfg, name)!r} is not one of '
                                      f'{list(NodeConfig.RELIABILITIES)}')
        if not cfg.model_path:
            raise UrcdcDepthError("parameter 'model_path' is empty; set it to an ONNX model, "
                                  'TensorRT engine or checkpoint')
        if not os.path.exists(cfg.model_path):
            raise UrcdcDepthError(f'parameter model_path={cfg.model_path!r}: no such file')
        return cfg, EstimatorConfig(**est_kw)

    @staticmethod
    def _qos(reliability: str, depth: int) -> QoSProfile:
        rel = (ReliabilityPolicy.RELIABLE if reliability == 'reliable'
               else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=rel,
                          durability=DurabilityPolicy.VOLATILE)

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load the estimator, create publishers and the diagnostics timer."""
        try:
            cfg, est_cfg = self._read_config()
            from .estimator import DepthEstimator  # reason: keeps `import node` light
            from .inference import backend_options, resolve_backend
            backend = resolve_backend(cfg.backend, cfg.model_path)
            self._estimator = DepthEstimator.from_model(
                cfg.model_path, backend=backend, config=est_cfg,
                **backend_options(backend, cfg.backend_threads, cfg.backend_precision))
        except (UrcdcDepthError, ValueError, TypeError, OSError, ImportError) as exc:
            self.get_logger().error(f'configure failed: {exc}')
            self._estimator = None
            return TransitionCallbackReturn.FAILURE
        self._cfg, self._est_cfg = cfg, est_cfg
        qos = self._qos(cfg.output_reliability, cfg.output_depth)
        self._pubs = {
            'depth': self.create_lifecycle_publisher(Image, 'depth', qos),
            'uncertainty': self.create_lifecycle_publisher(Image, 'uncertainty', qos),
            'camera_info': self.create_lifecycle_publisher(CameraInfo, 'depth/camera_info', qos),
        }
        if cfg.publish_points:
            self._pubs['points'] = self.create_lifecycle_publisher(PointCloud2, 'points', qos)
        if cfg.publish_colorized:
            self._pubs['colorized'] = self.create_lifecycle_publisher(
                Image, 'depth/colorized', qos)
        with self._cam_cond:
            self._cam_infos = deque(maxlen=cfg.camera_info_buffer)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        meta = getattr(self._estimator, 'meta', None)
        self.get_logger().info(
            f'configured: backend={cfg.backend!r} model={cfg.model_path!r} '
            f'input_size={getattr(self._estimator, "input_size", None)!r} '
            f'variant={getattr(meta, "variant", None)!r} uncertainty={est_cfg.uncertainty!r}')
        if est_cfg.uncertainty == 'metres' and uncertainty_calibration(self._estimator) == 'none':
            self.get_logger().warning(
                f'{cfg.model_path!r} carries no uncertainty calibration: `uncertainty` holds '
                'the uncalibrated formula 2 d r / (1 - r^2), not measured metres; fit one '
                'with `urcdc-calibrate --model MODEL --bag BAG_WITH_LIDAR`')
        self._state = 'inactive'
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs and start the inference worker."""
        cfg = self._cfg
        qos = self._qos(cfg.input_reliability, cfg.input_depth)
        if cfg.use_compressed:
            self._subs.append(self.create_subscription(
                CompressedImage, 'image/compressed', self._on_compressed, qos,
                callback_group=self._input_group))
        else:
            self._subs.append(self.create_subscription(
                Image, 'image', self._on_image, qos, callback_group=self._input_group))
        cam_qos = self._qos(cfg.input_reliability, max(cfg.input_depth, 5))
        self._subs.append(self.create_subscription(
            CameraInfo, 'camera_info', self._on_camera_info, cam_qos,
            callback_group=self._input_group))
        self._stop.clear()
        self._slot.reopen()
        self._worker = threading.Thread(target=self._work, name='depth_worker', daemon=True)
        self._worker.start()
        self._state = 'active'
        self.get_logger().info('active: waiting for images on '
                               f'{self._subs[0].topic_name} and {self._subs[1].topic_name}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker (a frame being processed is finished first)."""
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
        self._slot.close()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._slot.clear()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
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
    def _reject(self, kind: str, why: str) -> None:
        self.stats.reject(kind, why)
        self.get_logger().error(f'dropped a malformed {kind} message: {why}',
                                throttle_duration_sec=2.0)

    def _accept(self, image: np.ndarray, encoding: str, header: Header) -> None:
        now = time.perf_counter()
        self.stats.input_tick(now)
        frame = _Frame(image, encoding, header, ros_io.stamp_to_ns(header.stamp), now)
        if self._slot.put(frame):
            self.stats.count('dropped')

    def _on_image(self, msg: Image) -> None:
        try:
            if msg.encoding not in ros_io.COLOUR_ENCODINGS:
                raise InputError(f'encoding {msg.encoding!r} is not one of '
                                 f'{list(ros_io.COLOUR_ENCODINGS)}')
            image = ros_io.image_to_numpy(msg)
        except InputError as exc:
            self._reject('image', str(exc))
            return
        self._accept(image, msg.encoding, msg.header)

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            image, encoding = ros_io.decode_compressed(msg)
        except InputError as exc:
            self._reject('image', str(exc))
            return
        self._accept(image, encoding, msg.header)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            cam = ros_io.parse_camera_info(msg)
        except InputError as exc:
            self._reject('camera_info', str(exc))
            return
        with self._cam_cond:
            self._cam_infos.append((cam, msg.header))
            self._cam_ever = True
            self._cam_cond.notify_all()

    # ---------------------------------------------------------------- worker
    def _match_camera_info(self, stamp_ns: int) -> Optional[ros_io.CameraModel]:
        """Camera info with the same stamp, else the nearest within the tolerance; may wait."""
        tol_ns = int(self._cfg.camera_info_tolerance_s * 1e9)

        def best() -> Optional[ros_io.CameraModel]:
            cands = [(abs(c.stamp_ns - stamp_ns), c) for c, _ in self._cam_infos]
            cands = [dc for dc in cands if dc[0] <= tol_ns]
            return min(cands, key=lambda dc: dc[0])[1] if cands else None

        with self._cam_cond:
            found = best()
            if found is not None and found.stamp_ns == stamp_ns:
                return found
            if not self._cam_ever and self._fallback_warned:
                return None  # no camera_info topic: do not wait on every frame
            deadline = time.monotonic() + self._cfg.camera_info_wait_s
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cam_cond.wait(min(left, 0.02))
                found = best()
                if found is not None and found.stamp_ns == stamp_ns:
                    return found
            return best()

    def _fallback_camera(self, frame: _Frame) -> Optional[ros_io.CameraModel]:
        cfg = self._cfg
        if not cfg.fx > 0:
            return None
        h, w = frame.image.shape[:2]
        K = np.array([[cfg.fx, 0.0, cfg.cx or (w - 1) / 2.0],
                      [0.0, cfg.fy or cfg.fx, cfg.cy or (h - 1) / 2.0],
                      [0.0, 0.0, 1.0]])
        if not self._fallback_warned:
            self.get_logger().warning(
                f'no camera_info matched; using the fallback intrinsics fx={K[0, 0]} '
                f'fy={K[1, 1]} cx={K[0, 2]} cy={K[1, 2]} px (warned once)')
            self._fallback_warned = True
        return ros_io.CameraModel(K, np.hstack([K, np.zeros((3, 1))]), np.zeros(5), np.eye(3),
                                  'plumb_bob', w, h, frame.stamp_ns, frame.header.frame_id)

    def _wanted(self, key: str) -> bool:
        pub = self._pubs.get(key)
        if pub is None:
            return False
        return not self._cfg.lazy or pub.get_subscription_count() > 0

    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._slot.take(timeout_s=0.2)
            if frame is None:
                continue
            try:
                self._process(frame)
            except InputError as exc:
                self._reject('image', str(exc))
            except Exception as exc:  # noqa: BLE001 - a frame must never kill the worker
                self.stats.count('failed')
                self.get_logger().error(f'inference failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=2.0)

    def _process(self, frame: _Frame) -> None:
        t_start = time.perf_counter()
        if not any(self._wanted(k) for k in self._pubs):
            self.stats.count('skipped_lazy')
            return
        cam = self._match_camera_info(frame.stamp_ns)
        if cam is None and not self._cam_ever:
            cam = self._fallback_camera(frame)
        if cam is None:
            self.stats.count('no_intrinsics')
            with self._cam_cond:
                offsets = [(c.stamp_ns - frame.stamp_ns) * 1e-9 for c, _ in self._cam_infos]
            nearest = (f'the nearest of the {len(offsets)} buffered is '
                       f'{min(offsets, key=abs):+.3f} s away' if offsets else 'none buffered')
            self.get_logger().warning(
                'no camera_info within camera_info_tolerance_s='
                f'{self._cfg.camera_info_tolerance_s} s of the image stamp ({nearest}) and no '
                'fallback intrinsics (fx, fy, cx, cy); frame skipped', throttle_duration_sec=5.0)
            return
        h, w = frame.image.shape[:2]
        if (cam.width, cam.height) != (w, h):
            self.stats.count('no_intrinsics')
            self.get_logger().warning(
                f'camera_info size {cam.width}x{cam.height} differs from the image {w}x{h}; '
                'frame skipped', throttle_duration_sec=5.0)
            return
        res = self._estimator.estimate(frame.image, cam.K, encoding=frame.encoding)
        header = frame.header
        dh, dw = res.depth_m.shape
        if self._wanted('depth'):
            self._pubs['depth'].publish(ros_io.numpy_to_image(res.depth_m, '32FC1', header))
        if self._wanted('uncertainty'):
            self._pubs['uncertainty'].publish(
                ros_io.numpy_to_image(np.ascontiguousarray(res.uncertainty, np.float32),
                                      '32FC1', header))
        if self._wanted('camera_info'):
            self._pubs['camera_info'].publish(
                ros_io.transform_camera_info(cam, res.K, dw, dh, header))
        if self._wanted('points'):
            self._pubs['points'].publish(ros_io.build_pointcloud2(
                self._cloud(frame, res), header))
        if self._wanted('colorized'):
            meta = getattr(self._estimator, 'meta', None)
            far = self._cfg.colorize_max_depth_m or getattr(meta, 'max_depth', KITTI_MAX_DEPTH_M)
            self._pubs['colorized'].publish(ros_io.numpy_to_image(
                ros_io.colorize_depth(res.depth_m, far), 'bgr8', header))
        now = time.perf_counter()
        self.stats.output_tick(now, (now - frame.t_recv_s) * 1e3,
                               res.timings_ms.get('backend'), (t_start - frame.t_recv_s) * 1e3)

    def _cloud(self, frame: _Frame, res):
        cfg = self._cfg
        rgb = None
        if cfg.points_rgb and frame.image.shape[:2] == res.depth_m.shape:
            rgb = to_rgb(frame.image, frame.encoding)
        unc = res.uncertainty if (cfg.points_uncertainty or cfg.points_max_uncertainty) else None
        cloud = self._clouds.build(res.depth_m, res.K, rgb=rgb, uncertainty=unc,
                                   stride=cfg.points_stride, max_range_m=cfg.points_max_range_m,
                                   max_uncertainty=cfg.points_max_uncertainty)
        if unc is not None and not cfg.points_uncertainty:  # used only for filtering
            cloud = type(cloud)(np.ascontiguousarray(cloud.points[..., :-1]),
                                cloud.fields[:-1], cloud.stride)
        return cloud

    # ---------------------------------------------------------------- diagnostics
    def diagnostics_status(self) -> DiagnosticStatus:
        """The node's health as one DiagnosticStatus (rates Hz, latency ms, counters)."""
        s = self.stats.summary(time.perf_counter())
        status = DiagnosticStatus(name=f'{self.get_fully_qualified_name()}: depth',
                                  hardware_id=os.path.basename(
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

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostics_status()]
        self._diag_pub.publish(msg)


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of ``depth_node``; returns the process exit status."""
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
