"""DepthNode serving a rig, in-process over real rclpy: three cameras of different sizes and
intrinsics share one batched backend call, each camera's outputs carry its own header and K
and equal the estimator's result for that image alone; a silent camera stalls nobody; a
malformed frame is counted on its camera only; ``sync: stamp`` pairs and times out cleanly."""
from __future__ import annotations

import numpy as np
import pytest

from depth_node_helpers import InProcessNode, kitti_like_K, make_header, spin_until, \
    synthetic_image, tiny_onnx_model

pytestmark = pytest.mark.ros

# name -> (height, width, fx px): smaller than, like, and larger than the 64 x 192 input
CAMS = {'front': (96, 256, 400.0), 'left': (64, 192, 721.5377), 'rear': (120, 320, 900.0)}


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return tiny_onnx_model(str(tmp_path_factory.mktemp('depth_node_rig')))


class RigHarness(InProcessNode):
    """An in-process multi-camera DepthNode plus a probe node on one executor."""

    def __init__(self, model, ns, cameras, camera_param=None, **params):
        from sensor_msgs.msg import CameraInfo, Image

        super().__init__(model, ns, 'rig_probe',
                         **{'cameras': camera_param or list(cameras), **params})
        qos = self.qos
        self.img_pub, self.info_pub, self.got = {}, {}, {}
        for cam in cameras:
            self.img_pub[cam] = self.probe.create_publisher(Image, f'{ns}/{cam}/image', qos)
            self.info_pub[cam] = self.probe.create_publisher(CameraInfo,
                                                             f'{ns}/{cam}/camera_info', qos)
            for topic, typ in (('depth', Image), ('depth/camera_info', CameraInfo)):
                self.got[cam, topic] = []
                self.probe.create_subscription(typ, f'{ns}/{cam}/{topic}',
                                               self.got[cam, topic].append, qos)

    def configure(self):
        from rclpy.lifecycle import TransitionCallbackReturn as R
        return self.node.trigger_configure() == R.SUCCESS

    def start(self):
        from rclpy.lifecycle import TransitionCallbackReturn as R
        assert self.configure()
        assert self.node.trigger_activate() == R.SUCCESS
        assert spin_until(self.ex, lambda: all(
            p.get_subscription_count() > 0 for p in self.img_pub.values()), 10.0)
        return self

    def send(self, cam, image, K, stamp_ns, encoding='rgb8'):
        from urcdc_depth_ros.ros_io import build_camera_info, numpy_to_image
        h = make_header(stamp_ns, f'{cam}_optical_frame')
        self.info_pub[cam].publish(build_camera_info(K, image.shape[1], image.shape[0], h))
        msg = numpy_to_image(image, 'rgb8', h)
        msg.encoding = encoding
        self.img_pub[cam].publish(msg)

    def output(self, cam, topic, stamp_ns):
        from urcdc_depth_ros.ros_io import stamp_to_ns
        found = [m for m in self.got[cam, topic] if stamp_to_ns(m.header.stamp) == stamp_ns]
        return found[-1] if found else None

    def stats(self, cam):
        return next(c.stats for c in self.node._cams if c.name == cam)


@pytest.fixture
def harness(model):
    made = []

    def make(ns, cameras, camera_param=None, **params):
        made.append(RigHarness(model, ns, cameras, camera_param, **params))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _frames():
    return {cam: (synthetic_image(h, w, seed=i), kitti_like_K(w, h, fx=fx))
            for i, (cam, (h, w, fx)) in enumerate(CAMS.items())}


def test_three_cameras_share_one_batch_and_each_get_their_own_depth_header_and_K(
        harness, model):
    from urcdc_depth_ros.config import EstimatorConfig
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.ros_io import image_to_numpy
    # rear crops KITTI-style instead of the default auto: a per-camera override
    rig = harness('/rig3', CAMS, **{'rear.resize_mode': 'kb_crop'}).start()
    frames = _frames()
    t0 = 5_000_000_000
    k = [0]

    def send_round():
        k[0] += 1
        for cam, (img, K) in frames.items():
            rig.send(cam, img, K, t0 + k[0] * 1_000_000)
        return 3 in rig.node.batch_sizes

    # the worker takes every camera that has a frame: resent rounds meet a busy worker, so
    # a batch of all three forms
    assert spin_until(rig.ex, send_round, 60.0), dict(rig.node.batch_sizes)
    last = t0 + k[0] * 1_000_000
    assert spin_until(rig.ex, lambda: all(rig.output(c, t, last) is not None for c in CAMS
                                          for t in ('depth', 'depth/camera_info')), 20.0)
    for cam, (img, K) in frames.items():
        depth_msg = rig.output(cam, 'depth', last)
        info = rig.output(cam, 'depth/camera_info', last)
        assert depth_msg.header.frame_id == info.header.frame_id == f'{cam}_optical_frame'
        assert (depth_msg.height, depth_msg.width) == img.shape[:2]
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K)
        mode = 'kb_crop' if cam == 'rear' else 'auto'
        with DepthEstimator.from_model(model, config=EstimatorConfig(resize_mode=mode)) as est:
            expected = est.estimate(img, K).depth_m
        np.testing.assert_allclose(image_to_numpy(depth_msg), expected, rtol=1e-4,
                                   equal_nan=True)
    status = {kv.key: kv.value for kv in rig.node.diagnostics_status().values}
    assert status['cameras'] == 'front,left,rear' and '3:' in status['batch_size_histogram']
    names = [s.name for s in rig.node.camera_statuses()]
    assert [n.rsplit(' ', 1)[1] for n in names] == list(CAMS)


def test_a_silent_camera_stalls_nobody_and_bad_frames_count_on_their_camera(harness):
    rig = harness('/rig_silent', ['front', 'left'], sync='stamp', sync_wait_s=0.5).start()
    img, K = _frames()['front']
    t0 = 7_000_000_000
    for i in range(3):  # both cameras, matching stamps
        stamp = t0 + i * 100_000_000
        rig.send('front', img, K, stamp)
        rig.send('left', img, K, stamp)
        assert spin_until(rig.ex, lambda: rig.output('left', 'depth', stamp) is not None, 20.0)
    assert rig.node.batch_sizes[2] >= 1
    # left falls silent and sends a malformed frame: front keeps publishing every frame
    rig.send('left', img, K, t0 + 10 ** 9, encoding='16UC1')
    for i in range(5):
        stamp = t0 + (20 + i) * 100_000_000
        rig.send('front', img, K, stamp)
        assert spin_until(rig.ex, lambda: rig.output('front', 'depth', stamp) is not None,
                          20.0), i
    assert spin_until(rig.ex, lambda: rig.stats('left').counts['rejected_image'] == 1, 5.0)
    assert rig.stats('front').counts['rejected'] == 0
    assert rig.stats('front').counts['processed'] == 8
    assert rig.node.sync_timeouts >= 5


def test_stamp_sync_pairs_frames_within_tolerance_and_drops_the_unmatched(harness):
    rig = harness('/rig_sync', ['front', 'left'], sync='stamp', sync_tolerance_s=0.005,
                  sync_wait_s=0.5).start()
    img, K = _frames()['front']
    t0 = 9_000_000_000
    rig.send('front', img, K, t0)
    rig.send('left', img, K, t0 + 2_000_000)  # 2 ms apart: one batch of two
    assert spin_until(rig.ex, lambda: rig.output('left', 'depth', t0 + 2_000_000) is not None
                      and rig.output('front', 'depth', t0) is not None, 20.0)
    assert dict(rig.node.batch_sizes) == {2: 1} and rig.node.sync_timeouts == 0
    t1 = t0 + 10 ** 9
    rig.send('front', img, K, t1)
    rig.send('left', img, K, t1 + 50_000_000)  # 50 ms apart: never a pair
    assert spin_until(rig.ex, lambda: rig.output('left', 'depth', t1 + 50_000_000) is not None,
                      20.0)
    rig.ex.spin_once(timeout_sec=0.3)
    assert rig.output('front', 'depth', t1) is None  # older than the newest stamp: stale
    assert rig.stats('front').counts['dropped'] == 1
    assert rig.node.sync_timeouts == 1 and rig.node.batch_sizes[1] == 1


@pytest.mark.parametrize('params,expected', [
    ({'cameras': ['a', 'a']}, 'more than once'),
    ({'cameras': ['a', 'bad-name']}, 'invalid'),
    ({'cameras': ['a'], 'b.fx': 500.0}, "camera 'b'"),
    ({'cameras': ['a'], 'a.max_depth': 50.0}, 'cannot be set per camera'),
    ({'cameras': ['a'], 'a.input_reliability': 'sometimes'}, 'a.input_reliability'),
])
def test_bad_rig_configs_fail_configure_naming_the_problem(harness, params, expected):
    rig = harness('/rig_bad', [], camera_param=params.pop('cameras'), **params)
    with pytest.raises(ValueError, match=expected):
        rig.node._read_config()  # what configure logs before it fails
    assert not rig.configure()


def test_the_shipped_surround_params_file_configures_a_two_camera_node(model):
    import os

    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from depth_node_helpers import REPO
    from urcdc_depth_ros.node import DepthNode
    ctx = Context()
    rclpy.init(context=ctx)
    node = DepthNode(context=ctx, cli_args=[
        '--ros-args', '--params-file', os.path.join(REPO, 'config', 'depth_surround.yaml'),
        '-p', f'model_path:={model}', '-p', 'autostart:=false'])
    try:
        assert node.trigger_configure() == R.SUCCESS
        cams = {c.name: c.cfg for c in node._cams}
        assert list(cams) == ['cam_02', 'cam_03'] and node._cfg.sync == 'stamp'
        assert cams['cam_03'].node.points_stride == 2 and cams['cam_02'].node.points_stride == 1
        topics = {p.topic_name for p in node._pubs.values()}
        assert {'/cam_02/depth', '/cam_03/points', '/cam_03/depth/camera_info'} <= topics
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_depth_node_help_lists_every_parameter_and_exits_0():
    import subprocess
    import sys

    from urcdc_depth_ros.node import PARAM_DOCS
    out = subprocess.run([sys.executable, '-m', 'urcdc_depth_ros.node', '--help'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('depth_node:') and 'usage: depth_node' in out.stdout
    for name in PARAM_DOCS:
        assert f'\n  {name} = ' in out.stdout, name
    assert "resize_mode = 'auto'" in out.stdout and 'cameras = []' in out.stdout
