"""Shared helpers of the depth-node tests: a random-weight ONNX model, a node subprocess, and
an rclpy probe node that publishes camera frames and collects the outputs (real DDS on loopback).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

import numpy as np
from fixtures.models import make_onnx_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS_FILE = os.path.join(REPO, 'config', 'depth.yaml')
#: the large-data Fast DDS profile (launch ``large_data:=true``), for FASTDDS_DEFAULT_PROFILES_FILE
DDS_PROFILE = os.path.join(REPO, 'config', 'fastdds_large_data.xml')


def tiny_onnx_model(tmp_dir: str, height: int = 64, width: int = 192) -> str:
    """Path of a random-weight URCDC-Depth ONNX model (``fixtures.models``), h x w input."""
    onnx_path, _, _ = make_onnx_model(str(tmp_dir), height=height, width=width)
    return str(onnx_path)


def node_command(model_path: str, *extra: str, params_file: str = PARAMS_FILE) -> list[str]:
    """The node as launched: same module, same params file, CLI overrides after it."""
    return [sys.executable, '-m', 'urcdc_depth_ros.node', '--ros-args',
            '--params-file', params_file, '-p', f'model_path:={model_path}', *extra]


def start_node(cmd: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """Start the node in its own process group, logging to ``log_path``; ``env``: extra vars."""
    log = open(log_path, 'w')
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            start_new_session=True,
                            env=None if env is None else {**os.environ, **env})


def stop_node(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> int:
    """Signal the node, wait, kill it if it hangs; return its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def spin_until(executor, cond: Callable[[], bool], timeout_s: float,
               proc: Optional[subprocess.Popen] = None) -> bool:
    """Spin ``executor`` until ``cond()`` or timeout; stop early if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        executor.spin_once(timeout_sec=0.05)
    return cond()


def kitti_like_K(width: int, height: int, fx: float = 721.5377) -> np.ndarray:
    """Intrinsics (3, 3), px, with the principal point near the centre."""
    return np.array([[fx, 0.0, width / 2.0 - 0.5], [0.0, fx, height / 2.0 + 0.25],
                     [0.0, 0.0, 1.0]])


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB with smooth structure (gradients + noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 9 + yy / 7)], -1)
    img = base * 200 + rng.uniform(0, 55, (height, width, 3))
    return img.clip(0, 255).astype(np.uint8)


def load_params(path: str = PARAMS_FILE) -> dict:
    """The ``ros__parameters`` of the single node entry of a params file."""
    from urcdc_depth_ros.config import load_node_params
    return load_node_params(path)


def estimator_config_from_yaml(path: str = PARAMS_FILE, **overrides):
    """The EstimatorConfig a node started with params file ``path`` uses."""
    from urcdc_depth_ros.config import estimator_config_from_params
    return estimator_config_from_params({**load_params(path), **overrides})


class Probe:
    """An rclpy node in its own context: publishes camera frames, records every output.

    Attributes:
        outputs: topic key -> list of received messages (``depth``, ``uncertainty``,
            ``camera_info``, ``points``, ``colorized``, ``diagnostics``).
        rx_times: topic key -> ``time.perf_counter()`` of each receipt, s.
    """

    def __init__(self, ns: str, image_topic: str, info_topic: str, reliable_in: bool = True,
                 in_depth: int = 10, compressed: bool = False):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('depth_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        rel = ReliabilityPolicy.RELIABLE if reliable_in else ReliabilityPolicy.BEST_EFFORT
        qin = QoSProfile(depth=in_depth, reliability=rel)
        self.image_pub = self.node.create_publisher(
            CompressedImage if compressed else Image, image_topic, qin)
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, qin)
        self.outputs: dict[str, list] = {k: [] for k in (
            'depth', 'uncertainty', 'camera_info', 'points', 'colorized', 'diagnostics')}
        self.rx_times: dict[str, list[float]] = {k: [] for k in self.outputs}
        qout = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for key, typ, topic in (('depth', Image, 'depth'), ('uncertainty', Image, 'uncertainty'),
                                ('camera_info', CameraInfo, 'depth/camera_info'),
                                ('points', PointCloud2, 'points'),
                                ('colorized', Image, 'depth/colorized')):
            self.node.create_subscription(typ, f'{ns}/{topic}', self._keep(key), qout)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._keep('diagnostics'),
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))

    def _keep(self, key):
        def cb(msg):
            self.rx_times[key].append(time.perf_counter())
            self.outputs[key].append(msg)
        return cb

    def spin_until(self, cond, timeout_s: float, proc=None) -> bool:
        """Spin until ``cond()`` (see :func:`spin_until`)."""
        return spin_until(self.executor, cond, timeout_s, proc)

    def by_stamp(self, key: str, stamp_ns: int):
        """The received ``key`` message with header stamp ``stamp_ns`` (or None)."""
        from urcdc_depth_ros.ros_io import stamp_to_ns
        for msg in self.outputs[key]:
            if stamp_to_ns(msg.header.stamp) == stamp_ns:
                return msg
        return None

    def node_diagnostics(self) -> dict[str, str]:
        """Key/values of the newest depth_node diagnostics status ({} if none yet)."""
        for arr in reversed(self.outputs['diagnostics']):
            for st in arr.status:
                if st.name.endswith(': depth'):
                    return {kv.key: kv.value for kv in st.values}
        return {}

    def close(self) -> None:
        """Destroy the node and shut the private context down."""
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class InProcessNode:
    """A DepthNode and a probe node on one executor, in a private rclpy context.

    ``params`` override the defaults below (lifecycle driven by the test, reliable deep input
    QoS so that no test frame is lost). Subclasses add the probe's publishers/subscriptions.
    """

    def __init__(self, model: str, ns: str, probe_name: str, **params) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from urcdc_depth_ros.node import DepthNode
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        params = dict(dict(model_path=model, autostart=False, input_reliability='reliable',
                           input_depth=10), **params)
        self.node = DepthNode(context=self.ctx, namespace=ns, parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])
        self.probe = rclpy.create_node(probe_name, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.probe)
        self.qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def close(self) -> None:
        """Stop the executor, the node and the probe; shut the private context down."""
        import rclpy
        self.ex.shutdown()
        self.node.close()
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def make_header(stamp_ns: int, frame_id: str = 'camera_optical_frame'):
    """A std_msgs/Header with the given stamp (ns) and frame."""
    from std_msgs.msg import Header
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return h
