"""The depth node as launched (same module, params file, remaps) in a subprocess, driven over
real DDS on loopback: outputs equal the in-process DepthEstimator's, clouds re-project to their
pixels, every encoding works, and SIGTERM ends the node cleanly.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from depth_node_helpers import (DDS_PROFILE, Probe, estimator_config_from_yaml, kitti_like_K,
                                make_header, node_command, start_node, stop_node,
                                synthetic_image, tiny_onnx_model)

pytestmark = pytest.mark.ros

H, W = 96, 256  # camera image; the tiny model's input is 64 x 192 (KITTI crop from the bottom)
NS = '/proc_ut'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from urcdc_depth_ros.estimator import DepthEstimator
    tmp = tmp_path_factory.mktemp('depth_node_process')
    model = tiny_onnx_model(str(tmp))
    cmd = node_command(model, '-r', f'__ns:={NS}', '-r', 'image:=/proc_cam/image_raw',
                       '-r', 'camera_info:=/proc_cam/camera_info',
                       '-p', 'diagnostics_period_s:=0.2')
    log = os.path.join(str(tmp), 'node.log')
    proc = start_node(cmd, log)
    probe = Probe(NS, '/proc_cam/image_raw', '/proc_cam/camera_info')
    est = DepthEstimator.from_model(model, config=estimator_config_from_yaml())
    yield {'proc': proc, 'probe': probe, 'est': est, 'log': log}
    probe.close()
    est.close()
    stop_node(proc, signal.SIGKILL)


ALL_KEYS = ('depth', 'uncertainty', 'camera_info', 'points')


def _send_until_output(s, image, encoding, stamp_ns, K, keys=ALL_KEYS):
    """Publish the frame (again every 0.5 s: the input is best effort) until all outputs came."""
    from urcdc_depth_ros.ros_io import build_camera_info, numpy_to_image
    probe, header = s['probe'], make_header(stamp_ns)
    info = build_camera_info(K, image.shape[1], image.shape[0], header)
    msg = numpy_to_image(image, encoding, header)

    def done():
        return all(probe.by_stamp(k, stamp_ns) is not None for k in keys)

    for _ in range(60):
        probe.info_pub.publish(info)
        probe.image_pub.publish(msg)
        if probe.spin_until(done, 0.5, s['proc']):
            return {k: probe.by_stamp(k, stamp_ns) for k in keys}
        assert s['proc'].poll() is None, open(s['log']).read()[-3000:]
    raise AssertionError(f'no outputs for stamp {stamp_ns}; node log:\n'
                         + open(s['log']).read()[-3000:])


def test_outputs_equal_the_estimators_on_the_same_image(setup):
    from urcdc_depth_ros.ros_io import image_to_numpy, parse_camera_info
    img, K = synthetic_image(H, W, seed=1), kitti_like_K(W, H)
    out = _send_until_output(setup, img, 'rgb8', 1_000_000_001, K)
    ref = setup['est'].estimate(img, K, encoding='rgb8')
    depth, unc = image_to_numpy(out['depth']), image_to_numpy(out['uncertainty'])
    assert out['depth'].encoding == '32FC1' and depth.shape == (H, W)
    assert np.isnan(depth).any() and np.isfinite(depth).any()  # crop: NaN outside the view
    np.testing.assert_allclose(depth, ref.depth_m, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(unc, ref.uncertainty, rtol=1e-5, atol=1e-6, equal_nan=True)
    cam = parse_camera_info(out['camera_info'])
    assert (cam.width, cam.height) == (W, H)
    np.testing.assert_allclose(cam.K, ref.K)
    np.testing.assert_allclose(cam.P[:, :3], ref.K)
    for key in ('depth', 'uncertainty', 'camera_info', 'points'):
        assert out[key].header.frame_id == 'camera_optical_frame'


def test_every_cloud_point_reprojects_to_its_pixel_with_the_depth_as_z(setup):
    from urcdc_depth_ros.pointcloud import unpack_rgb
    from urcdc_depth_ros.ros_io import image_to_numpy, pointcloud2_to_arrays
    img, K = synthetic_image(H, W, seed=2), kitti_like_K(W, H, fx=500.0)
    out = _send_until_output(setup, img, 'rgb8', 1_000_000_002, K)
    depth = image_to_numpy(out['depth'])
    cloud = out['points']
    assert (cloud.height, cloud.width, cloud.is_dense) == (H, W, False)
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'uncertainty']
    f = pointcloud2_to_arrays(cloud)
    np.testing.assert_array_equal(f['z'], depth)
    valid = np.isfinite(depth)
    assert np.array_equal(np.isfinite(f['x']), valid)
    v, u = np.nonzero(valid)
    z = f['z'][valid].astype(np.float64)
    np.testing.assert_allclose(f['x'][valid] / z * K[0, 0] + K[0, 2], u, atol=2e-3)
    np.testing.assert_allclose(f['y'][valid] / z * K[1, 1] + K[1, 2], v, atol=2e-3)
    np.testing.assert_array_equal(unpack_rgb(f['rgb']), img)
    np.testing.assert_array_equal(f['uncertainty'], image_to_numpy(out['uncertainty']))


@pytest.mark.parametrize('encoding', ['bgr8', 'rgba8', 'bgra8', 'mono8'])
def test_each_input_encoding_gives_the_estimators_depth(setup, encoding):
    import cv2

    from urcdc_depth_ros.ros_io import image_to_numpy
    rgb = synthetic_image(H, W, seed=3)
    img = {'bgr8': lambda: rgb[..., ::-1].copy(),
           'rgba8': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA),
           'bgra8': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA),
           'mono8': lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)}[encoding]()
    stamp = 1_000_000_100 + ['bgr8', 'rgba8', 'bgra8', 'mono8'].index(encoding)
    K = kitti_like_K(W, H)
    out = _send_until_output(setup, img, encoding, stamp, K, keys=('depth',))
    ref = setup['est'].estimate(img, K, encoding=encoding)
    np.testing.assert_allclose(image_to_numpy(out['depth']), ref.depth_m, rtol=1e-5,
                               atol=1e-6, equal_nan=True)


def test_diagnostics_report_rates_latency_backend_and_counts(setup):
    probe = setup['probe']
    assert probe.spin_until(lambda: int(probe.node_diagnostics().get('processed', 0)) >= 3,
                            10.0, setup['proc'])
    d = probe.node_diagnostics()
    assert d['backend'] == 'onnxruntime' and d['model_path'].endswith('.onnx')
    assert d['state'] == 'active' and d['rejected'] == '0'
    # a model without a fitted calibration says so: its metres are the uncalibrated formula
    assert d['uncertainty'] == 'metres' and d['uncertainty_calibration'] == 'none'
    assert float(d['latency_p50_ms']) > 0 and float(d['latency_p95_ms']) >= float(
        d['latency_p50_ms'])
    for key in ('input_rate_hz', 'output_rate_hz', 'dropped', 'received'):
        assert key in d


def test_node_exits_cleanly_on_sigterm(setup):
    rc = stop_node(setup['proc'], signal.SIGTERM)
    log = open(setup['log']).read()
    assert rc == 0, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]


def test_the_large_data_dds_profile_delivers_consecutive_frames_exactly(tmp_path):
    """config/fastdds_large_data.xml (launch ``large_data:=true``) in a real node process:
    Fast DDS accepts it, and two different frames arrive whole and equal to the estimator's
    (the node reuses its message buffers from frame to frame)."""
    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.ros_io import image_to_numpy, pointcloud2_to_arrays
    model = tiny_onnx_model(str(tmp_path))
    ns = '/proc_large'
    cmd = node_command(model, '-r', f'__ns:={ns}', '-r', 'image:=/large_cam/image_raw',
                       '-r', 'camera_info:=/large_cam/camera_info')
    log = os.path.join(str(tmp_path), 'node.log')
    proc = start_node(cmd, log, env={'FASTDDS_DEFAULT_PROFILES_FILE': DDS_PROFILE})
    probe = Probe(ns, '/large_cam/image_raw', '/large_cam/camera_info')
    est = DepthEstimator.from_model(model, config=estimator_config_from_yaml())
    s = {'proc': proc, 'probe': probe, 'log': log}
    try:
        K = kitti_like_K(W, H)
        for i, seed in enumerate((3, 4)):
            img = synthetic_image(H, W, seed=seed)
            out = _send_until_output(s, img, 'rgb8', 2_000_000_000 + i, K)
            ref = est.estimate(img, K, encoding='rgb8')
            np.testing.assert_allclose(image_to_numpy(out['depth']), ref.depth_m, rtol=1e-5,
                                       atol=1e-6, equal_nan=True)
            np.testing.assert_allclose(image_to_numpy(out['uncertainty']), ref.uncertainty,
                                       rtol=1e-5, atol=1e-6, equal_nan=True)
            z = pointcloud2_to_arrays(out['points'])['z']
            np.testing.assert_allclose(z, ref.depth_m, rtol=1e-5, atol=1e-6, equal_nan=True)
        assert 'error' not in open(log).read().lower()
    finally:
        probe.close()
        est.close()
        stop_node(proc, signal.SIGKILL)
