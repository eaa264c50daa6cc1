"""DepthNode inputs in-process over real rclpy: camera_info matched by stamp, fallback
intrinsics when none arrive, compressed (PNG) input, colourised output and cloud filters."""
from __future__ import annotations

import numpy as np
import pytest

from depth_node_helpers import (InProcessNode, kitti_like_K, make_header, spin_until,
                                synthetic_image, tiny_onnx_model)

pytestmark = pytest.mark.ros

H, W = 96, 256


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return tiny_onnx_model(str(tmp_path_factory.mktemp('depth_node_inputs')))


class Rig(InProcessNode):
    """An in-process DepthNode plus a probe node on one executor, in a private context."""

    def __init__(self, model, ns, **params):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        super().__init__(model, ns, 'inputs_probe', **params)
        qos = self.qos
        self.img_pub = self.probe.create_publisher(Image, f'{ns}/image', qos)
        self.jpg_pub = self.probe.create_publisher(CompressedImage, f'{ns}/image/compressed',
                                                   qos)
        self.info_pub = self.probe.create_publisher(CameraInfo, f'{ns}/camera_info', qos)
        self.got = {k: [] for k in ('depth', 'depth/camera_info', 'depth/colorized', 'points')}
        for topic, typ in (('depth', Image), ('depth/camera_info', CameraInfo),
                           ('depth/colorized', Image), ('points', PointCloud2)):
            self.probe.create_subscription(typ, f'{ns}/{topic}', self.got[topic].append, qos)
        from rclpy.lifecycle import TransitionCallbackReturn as R
        assert self.node.trigger_configure() == R.SUCCESS
        assert self.node.trigger_activate() == R.SUCCESS

    def wait_for(self, topic, stamp_ns, send=None, timeout_s=20.0):
        from urcdc_depth_ros.ros_io import stamp_to_ns

        def found():
            if send is not None:
                send()
            return any(stamp_to_ns(m.header.stamp) == stamp_ns for m in self.got[topic])

        assert spin_until(self.ex, found, timeout_s), (topic, self.node.stats.summary(0))
        return [m for m in self.got[topic] if stamp_to_ns(m.header.stamp) == stamp_ns][-1]


@pytest.fixture
def rig_factory(model):
    rigs = []

    def make(ns, **params):
        rigs.append(Rig(model, ns, **params))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_camera_info_is_matched_to_the_image_by_stamp(rig_factory):
    from urcdc_depth_ros.ros_io import build_camera_info, numpy_to_image, parse_camera_info
    rig = rig_factory('/in_match', camera_info_tolerance_s=0.01)
    img = synthetic_image(H, W)
    K_a, K_b = kitti_like_K(W, H, fx=400.0), kitti_like_K(W, H, fx=800.0)
    t0 = 2_000_000_000
    # camera_info stamps t0 (K_a) and t0 + 5 ms (K_b); the image at t0 + 4 ms is nearest K_b
    rig.info_pub.publish(build_camera_info(K_a, W, H, make_header(t0)))
    rig.info_pub.publish(build_camera_info(K_b, W, H, make_header(t0 + 5_000_000)))
    spin_until(rig.ex, lambda: len(rig.node._cam_infos) == 2, 10.0)
    rig.img_pub.publish(numpy_to_image(img, 'rgb8', make_header(t0 + 4_000_000)))
    info = rig.wait_for('depth/camera_info', t0 + 4_000_000)
    assert parse_camera_info(info).K[0, 0] == pytest.approx(800.0)
    rig.img_pub.publish(numpy_to_image(img, 'rgb8', make_header(t0)))  # exact match wins
    info = rig.wait_for('depth/camera_info', t0)
    assert parse_camera_info(info).K[0, 0] == pytest.approx(400.0)
    # no camera_info within the tolerance: the frame is skipped and counted
    rig.img_pub.publish(numpy_to_image(img, 'rgb8', make_header(t0 + 900_000_000)))
    assert spin_until(rig.ex, lambda: rig.node.stats.counts['no_intrinsics'] == 1, 10.0)


def test_fallback_intrinsics_are_used_when_no_camera_info_arrives(rig_factory):
    from urcdc_depth_ros.ros_io import numpy_to_image, parse_camera_info
    rig = rig_factory('/in_fallback', fx=650.0, fy=640.0, cx=120.0, cy=50.0,
                      camera_info_wait_s=0.05)
    stamp = 3_000_000_000
    msg = numpy_to_image(synthetic_image(H, W), 'rgb8', make_header(stamp))
    info = rig.wait_for('depth/camera_info', stamp, send=lambda: rig.img_pub.publish(msg))
    K = parse_camera_info(info).K
    np.testing.assert_allclose(K[[0, 1, 0, 1], [0, 1, 2, 2]], [650.0, 640.0, 120.0, 50.0])


def test_compressed_png_input_gives_the_estimators_depth_for_the_decoded_image(
        rig_factory, model):
    import cv2

    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.ros_io import CompressedImage, build_camera_info, image_to_numpy
    rig = rig_factory('/in_png', use_compressed=True)
    bgr = synthetic_image(H, W, seed=5)
    K = kitti_like_K(W, H)
    stamp = 4_000_000_000
    ok, buf = cv2.imencode('.png', bgr)
    msg = CompressedImage(header=make_header(stamp), format='png', data=buf.tobytes())
    info = build_camera_info(K, W, H, make_header(stamp))

    def send():
        rig.info_pub.publish(info)
        rig.jpg_pub.publish(msg)

    depth = image_to_numpy(rig.wait_for('depth', stamp, send=send))
    with DepthEstimator.from_model(model) as est:
        ref = est.estimate(bgr, K, encoding='bgr8')
    np.testing.assert_allclose(depth, ref.depth_m, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_colorized_output_and_cloud_filters_follow_their_parameters(rig_factory):
    from urcdc_depth_ros.ros_io import (build_camera_info, image_to_numpy, numpy_to_image,
                                        pointcloud2_to_arrays)
    rig = rig_factory('/in_opts', publish_colorized=True, points_stride=2, points_rgb=False,
                      points_uncertainty=False, points_max_range_m=30.0)
    K = kitti_like_K(W, H)
    stamp = 5_000_000_000
    info = build_camera_info(K, W, H, make_header(stamp))
    msg = numpy_to_image(synthetic_image(H, W), 'rgb8', make_header(stamp))

    def send():
        rig.info_pub.publish(info)
        rig.img_pub.publish(msg)

    colour = rig.wait_for('depth/colorized', stamp, send=send)
    depth = image_to_numpy(rig.wait_for('depth', stamp))
    cloud = rig.wait_for('points', stamp)
    assert colour.encoding == 'bgr8' and (colour.height, colour.width) == (H, W)
    assert (cloud.height, cloud.width) == (H // 2, W // 2)
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z']
    f = pointcloud2_to_arrays(cloud)
    rng = np.sqrt(f['x'] ** 2 + f['y'] ** 2 + f['z'] ** 2)
    assert np.nanmax(rng) <= 30.0 + 1e-3
    sub = depth[::2, ::2]
    near = np.isfinite(sub) & (sub < 25.0)
    np.testing.assert_array_equal(f['z'][near], sub[near])
