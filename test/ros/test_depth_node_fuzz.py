"""Malformed input never kills the node: 1000+ bad Image / CameraInfo messages are each counted
as rejected in /diagnostics, and the next good frame still gives the estimator's depth.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from depth_node_helpers import (Probe, estimator_config_from_yaml, kitti_like_K, make_header,
                                node_command, start_node, stop_node, synthetic_image,
                                tiny_onnx_model)

pytestmark = pytest.mark.ros

NS = '/fuzz_ut'
H, W = 96, 256


def _bad_images(rng: np.random.Generator, n: int):
    """``n`` malformed sensor_msgs/Image messages of assorted kinds (seeded)."""
    from sensor_msgs.msg import Image
    good = synthetic_image(8, 12).tobytes()
    kinds = ['encoding', 'step_small', 'truncated', 'too_long', 'zero', 'width0', 'huge',
             'empty_data', 'depth_enc']
    for i in range(n):
        kind = kinds[i % len(kinds)]
        m = Image(height=8, width=12, encoding='rgb8', step=36, data=good)
        m.header = make_header(10_000 + i)
        if kind == 'encoding':
            m.encoding = str(rng.choice(['yuv422', '16UC1', '', 'RGB8', 'bayer_rggb8', 'jpeg']))
        elif kind == 'step_small':
            m.step = int(rng.integers(0, 36))
        elif kind == 'truncated':
            m.data = good[:int(rng.integers(0, len(good)))]
        elif kind == 'too_long':
            m.data = good + bytes(int(rng.integers(1, 100)))
        elif kind == 'zero':
            m.height = m.width = m.step = 0
            m.data = b''
        elif kind == 'width0':
            m.width = 0
        elif kind == 'huge':
            m.height, m.width = 1 << 30, 1 << 30
        elif kind == 'empty_data':
            m.data = b''
        elif kind == 'depth_enc':  # a valid 32FC1 image is still not a camera image
            m.encoding, m.step = '32FC1', 48
            m.data = np.zeros((8, 12), np.float32).tobytes()
        yield m


def _bad_infos(n: int, K: np.ndarray):
    from urcdc_depth_ros.ros_io import build_camera_info
    for i in range(n):
        m = build_camera_info(K, W, H, make_header(20_000 + i))
        k = list(m.k)
        if i % 4 == 0:
            k[0] = float('nan')
        elif i % 4 == 1:
            k[4] = 0.0
        elif i % 4 == 2:
            m.p = [float('inf')] * 12
        else:
            m.width = 0
        m.k = k
        yield m


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('depth_node_fuzz')
    model = tiny_onnx_model(str(tmp))
    # reliable, deep input queues: every malformed message must reach the callback
    cmd = node_command(model, '-r', f'__ns:={NS}', '-r', 'image:=/fuzz_cam/image',
                       '-r', 'camera_info:=/fuzz_cam/info', '-p', 'input_reliability:=reliable',
                       '-p', 'input_depth:=3000', '-p', 'diagnostics_period_s:=0.25')
    log = os.path.join(str(tmp), 'node.log')
    proc = start_node(cmd, log)
    probe = Probe(NS, '/fuzz_cam/image', '/fuzz_cam/info', reliable_in=True, in_depth=3000)
    yield {'proc': proc, 'probe': probe, 'log': log, 'model': model}
    probe.close()
    stop_node(proc, signal.SIGKILL)


def test_malformed_messages_are_all_counted_and_the_next_good_frame_is_correct(node):
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.ros_io import build_camera_info, image_to_numpy, numpy_to_image
    probe, proc = node['probe'], node['proc']
    assert probe.spin_until(lambda: probe.node.count_subscribers('/fuzz_cam/image') > 0
                            and probe.node_diagnostics(), 30.0, proc), 'node never came up'
    rng = np.random.default_rng(7)
    K = kitti_like_K(W, H)
    n_img, n_info = 1000, 200
    for i, msg in enumerate(_bad_images(rng, n_img)):
        probe.image_pub.publish(msg)
        if i % 50 == 0:
            probe.executor.spin_once(timeout_sec=0.01)
    for msg in _bad_infos(n_info, K):
        probe.info_pub.publish(msg)

    def counted():
        d = probe.node_diagnostics()
        return int(d.get('rejected', -1)) >= n_img + n_info

    assert probe.spin_until(counted, 60.0, proc), (probe.node_diagnostics(),
                                                   open(node['log']).read()[-2000:])
    probe.spin_until(lambda: False, 0.6)  # one more diagnostics period: nothing extra counted
    d = probe.node_diagnostics()
    assert proc.poll() is None, open(node['log']).read()[-3000:]
    assert int(d['rejected_image']) == n_img
    assert int(d['rejected_camera_info']) == n_info
    assert int(d['rejected']) == n_img + n_info
    assert int(d['processed']) == 0

    img = synthetic_image(H, W, seed=11)
    stamp = 5_000_000_000
    header = make_header(stamp)
    probe.info_pub.publish(build_camera_info(K, W, H, header))
    probe.image_pub.publish(numpy_to_image(img, 'rgb8', header))
    assert probe.spin_until(lambda: probe.by_stamp('depth', stamp) is not None, 30.0, proc), \
        open(node['log']).read()[-3000:]
    with DepthEstimator.from_model(node['model'], config=estimator_config_from_yaml()) as est:
        ref = est.estimate(img, K)
    np.testing.assert_allclose(image_to_numpy(probe.by_stamp('depth', stamp)), ref.depth_m,
                               rtol=1e-5, atol=1e-6, equal_nan=True)
    log = open(node['log']).read()
    assert 'dropped a malformed image message' in log  # throttled, but said at least once
    assert 'Traceback' not in log
