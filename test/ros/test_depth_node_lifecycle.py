"""DepthNode lifecycle in-process with real rclpy: transitions create and release what they
should, bad parameters fail configure with their name, lazy mode does no work without
subscribers, and a bad value makes the autostarted executable exit non-zero.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from depth_node_helpers import (REPO, kitti_like_K, make_header, node_command, spin_until,
                                synthetic_image, tiny_onnx_model)

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return tiny_onnx_model(str(tmp_path_factory.mktemp('depth_node_lifecycle')))


@pytest.fixture
def ctx():
    import rclpy
    from rclpy.context import Context
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def _node(ctx, ns, **params):
    from rclpy.parameter import Parameter

    from urcdc_depth_ros.node import DepthNode
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return DepthNode(context=ctx, namespace=ns, parameter_overrides=overrides)


def test_transitions_create_and_release_publishers_subscriptions_and_backend(ctx, model):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    node = _node(ctx, '/lc_ut', model_path=model, autostart=False)
    try:
        pubs = {n for n, _ in node.get_publisher_names_and_types_by_node('depth_node', '/lc_ut')}
        assert '/lc_ut/depth' not in pubs
        assert node.trigger_configure() == R.SUCCESS
        pubs = {n for n, _ in node.get_publisher_names_and_types_by_node('depth_node', '/lc_ut')}
        assert {'/lc_ut/depth', '/lc_ut/uncertainty', '/lc_ut/depth/camera_info',
                '/lc_ut/points', '/diagnostics'} <= pubs
        assert '/lc_ut/depth/colorized' not in pubs  # publish_colorized defaults to false
        assert node.count_subscribers('/lc_ut/image') == 0
        assert node.trigger_activate() == R.SUCCESS
        subs = node.get_subscriber_names_and_types_by_node('depth_node', '/lc_ut')
        subs = {n for n, _ in subs}
        assert {'/lc_ut/image', '/lc_ut/camera_info'} <= subs
        assert node._worker is not None and node._worker.is_alive()
        worker = node._worker
        assert node.trigger_deactivate() == R.SUCCESS
        assert not worker.is_alive() and node._subs == []
        assert node.trigger_cleanup() == R.SUCCESS
        assert node._estimator is None and node._pubs == {}
        assert node.trigger_configure() == R.SUCCESS  # configurable again after cleanup
        assert node.trigger_shutdown() == R.SUCCESS
        assert node._estimator is None
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize('params_file', ['depth.yaml', 'depth_generic_camera.yaml'])
def test_params_file_values_reach_the_node_in_any_namespace(ctx, model, params_file):
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from depth_node_helpers import load_params
    from urcdc_depth_ros.node import DepthNode
    path = os.path.join(REPO, 'config', params_file)
    node = DepthNode(context=ctx, namespace='/some/robot', cli_args=[
        '--ros-args', '--params-file', path, '-p', f'model_path:={model}', '-p',
        'autostart:=false'])
    try:
        for name, value in load_params(path).items():
            if name not in ('model_path', 'autostart'):
                assert node.get_parameter(name).value == value, name
        assert node._param_errors == {}
        assert node.trigger_configure() == R.SUCCESS
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize('name, value', [
    ('uncertainty', 'sigma'), ('resize_mode', 'stretch'), ('input_reliability', 'sometimes'),
    ('points_stride', 0), ('camera_info_tolerance_s', -1.0), ('backend', 'tflite'),
    ('backend_precision', 'fp16'),  # onnxruntime takes the precision from the file
    ('engine_max_batch', 4),  # a TensorRT-only setting
    ('fx', 700),  # an integer where a double is expected
])
def test_an_invalid_parameter_fails_configure(ctx, model, name, value):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    node = _node(ctx, '/lc_bad', model_path=model, autostart=False, **{name: value})
    try:
        assert node.trigger_configure() == R.FAILURE
        assert node._estimator is None
    finally:
        node.close()
        node.destroy_node()


def test_a_missing_model_fails_configure(ctx, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    node = _node(ctx, '/lc_missing', model_path=str(tmp_path / 'nope.onnx'), autostart=False)
    try:
        assert node.trigger_configure() == R.FAILURE
    finally:
        node.close()
        node.destroy_node()


def test_autostart_with_a_bad_value_logs_its_name_and_exits_nonzero(model):
    cmd = node_command(model, '-r', '__ns:=/lc_exit', '-p', 'points_stride:=0')
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, PYTHONUNBUFFERED='1'))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert 'points_stride' in out and 'configure failed' in out
    assert 'Traceback' not in out


def test_lazy_node_skips_inference_until_an_output_has_a_subscriber(ctx, model):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from urcdc_depth_ros.ros_io import build_camera_info, numpy_to_image
    node = _node(ctx, '/lc_lazy', model_path=model, autostart=False)
    probe = rclpy.create_node('lazy_probe', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(probe)
    try:
        node.trigger_configure()
        node.trigger_activate()
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        img_pub = probe.create_publisher(Image, '/lc_lazy/image', qos)
        info_pub = probe.create_publisher(CameraInfo, '/lc_lazy/camera_info', qos)
        img, K = synthetic_image(96, 256), kitti_like_K(256, 96)
        counter = iter(range(1, 10**6))

        def send():
            h = make_header(next(counter) * 1000)
            info_pub.publish(build_camera_info(K, 256, 96, h))
            img_pub.publish(numpy_to_image(img, 'rgb8', h))

        assert spin_until(ex, lambda: (send() or node.stats.counts['skipped_lazy'] >= 3),
                          20.0)
        assert node.stats.counts['processed'] == 0
        got = []
        probe.create_subscription(Image, '/lc_lazy/depth', got.append, qos)
        assert spin_until(ex, lambda: (send() or len(got) >= 2), 20.0)
        assert node.stats.counts['processed'] >= 2
        depth = np.frombuffer(got[-1].data, np.float32)
        assert np.isfinite(depth).any()
    finally:
        ex.shutdown()
        node.close()
        node.destroy_node()
        probe.destroy_node()
