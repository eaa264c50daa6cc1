"""ros_io: numpy <-> Image for every encoding (padding, byte order), CompressedImage decoding,
CameraInfo build/parse/validation, PointCloud2 layout; parity with cv_bridge / sensor_msgs_py
where those import (a ROS install), skipped otherwise."""
from __future__ import annotations

import importlib.util
import sys

import cv2
import numpy as np
import pytest

from urcdc_depth_ros import encodings, ros_io
from urcdc_depth_ros.errors import InputError
from urcdc_depth_ros.pointcloud import PointCloudBuilder, depth_to_points

pytestmark = pytest.mark.ros

ENCODINGS = list(encodings.ENCODINGS)
HAVE_BRIDGE = importlib.util.find_spec('cv_bridge') is not None and ros_io.have_cv_bridge()
HAVE_SMPY = importlib.util.find_spec('sensor_msgs_py') is not None
K = np.array([[500.0, 0.0, 159.5], [0.0, 490.0, 119.5], [0.0, 0.0, 1.0]])


def _array(encoding, h=7, w=13, seed=0):
    t = encodings.ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if t.channels == 1 else (h, w, t.channels)
    if t.dtype.kind == 'f':
        a = rng.uniform(0, 80, shape).astype(t.dtype)
        a[0, 0] = np.nan
        return a
    return rng.integers(0, np.iinfo(t.dtype).max, shape, dtype=t.dtype, endpoint=True)


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_image_round_trip_is_exact_for_every_encoding(encoding):
    a = _array(encoding)
    msg = ros_io.numpy_to_image(a, encoding, ros_io.Header(frame_id='cam'))
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (7, 13, encoding, 'cam')
    assert msg.step == a[0].nbytes and len(msg.data) == a.nbytes
    np.testing.assert_array_equal(ros_io.image_to_numpy(msg), a)


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_padded_rows_are_read_without_the_padding(encoding):
    a = _array(encoding, seed=1)
    row = a[0].nbytes
    pad = 24  # a multiple of every element size (1, 2, 4, 8 B)
    data = np.zeros((a.shape[0], row + pad), np.uint8)
    data[:, :row] = np.ascontiguousarray(a).view(np.uint8).reshape(a.shape[0], row)
    data[:, row:] = 0xAB
    msg = ros_io.numpy_to_image(a, encoding)
    msg.step, msg.data = row + pad, data.tobytes()
    np.testing.assert_array_equal(ros_io.image_to_numpy(msg), a)


def test_big_endian_float_images_are_byte_swapped():
    a = _array('32FC1', seed=2)
    msg = ros_io.numpy_to_image(a, '32FC1')
    msg.is_bigendian = True
    msg.data = a.astype('>f4').tobytes()
    out = ros_io.image_to_numpy(msg)
    np.testing.assert_array_equal(out, a)
    assert out.dtype == np.float32 and out.dtype.isnative


def _malformed():
    a = _array('rgb8')
    good = ros_io.numpy_to_image(a, 'rgb8')
    cases = {}
    for name, change in {
        'unknown encoding': dict(encoding='yuv422'),
        'step too small': dict(step=10),
        'truncated data': dict(data=bytes(good.data)[:-1]),
        'data too long': dict(data=bytes(good.data) + b'\0'),
        'zero size': dict(height=0, width=0, step=0, data=b''),
        'implausible size': dict(height=1 << 30),
    }.items():
        m = ros_io.numpy_to_image(a, 'rgb8')
        for k, v in change.items():
            setattr(m, k, v)
        cases[name] = m
    f = ros_io.numpy_to_image(_array('32FC1'), '32FC1')
    f.step, f.data = f.step + 2, bytes(f.data) + bytes(2 * f.height)
    cases['float step not a multiple of 4'] = f
    return cases


@pytest.mark.parametrize('case', list(_malformed()))
def test_malformed_images_raise_input_error_naming_the_problem(case):
    with pytest.raises(InputError):
        ros_io.image_to_numpy(_malformed()[case])


@pytest.mark.parametrize('arr, encoding', [
    (np.zeros((4, 4, 3), np.float32), 'rgb8'), (np.zeros((4, 4), np.uint8), 'rgb8'),
    (np.zeros((4, 4, 3), np.uint8), '32FC1'), (np.zeros((4, 4), np.uint8), 'mono16'),
    (np.zeros((0, 4), np.float32), '32FC1')])
def test_numpy_to_image_rejects_arrays_that_do_not_fit_the_encoding(arr, encoding):
    with pytest.raises(InputError):
        ros_io.numpy_to_image(arr, encoding)


@pytest.mark.parametrize('ext, shape, encoding', [
    ('.png', (20, 30, 3), 'bgr8'), ('.png', (20, 30), 'mono8'), ('.png', (20, 30, 4), 'bgra8'),
    ('.jpg', (32, 48, 3), 'bgr8')])
def test_compressed_images_decode_to_opencv_order(ext, shape, encoding):
    img = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    if ext == '.jpg':
        img = cv2.GaussianBlur(img, (9, 9), 3)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    msg = ros_io.CompressedImage(format=ext[1:], data=buf.tobytes())
    out, enc = ros_io.decode_compressed(msg)
    assert enc == encoding and out.shape == img.shape
    if ext == '.png':
        np.testing.assert_array_equal(out, img)
    else:
        assert np.abs(out.astype(int) - img).mean() < 4


@pytest.mark.parametrize('data', [b'', b'\xff\xd8\xff garbage', bytes(100)])
def test_undecodable_compressed_images_raise_input_error(data):
    with pytest.raises(InputError):
        ros_io.decode_compressed(ros_io.CompressedImage(format='jpeg', data=data))


def test_sixteen_bit_png_is_rejected():
    ok, buf = cv2.imencode('.png', np.zeros((4, 4), np.uint16))
    with pytest.raises(InputError, match='8-bit'):
        ros_io.decode_compressed(ros_io.CompressedImage(format='png', data=buf.tobytes()))


def test_camera_info_round_trip():
    D = np.array([0.1, -0.2, 0.001, 0.002, 0.05])
    msg = ros_io.build_camera_info(K, 320, 240, ros_io.Header(frame_id='cam'), D=D)
    cam = ros_io.parse_camera_info(msg)
    np.testing.assert_array_equal(cam.K, K)
    np.testing.assert_array_equal(cam.P, np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(cam.D, D)
    np.testing.assert_array_equal(cam.R, np.eye(3))
    assert (cam.width, cam.height, cam.frame_id) == (320, 240, 'cam')


@pytest.mark.parametrize('field, index, value', [
    ('k', 0, float('nan')), ('k', 0, 0.0), ('k', 4, -1.0), ('k', 2, float('inf')),
    ('p', 3, float('nan')), ('d', 0, float('nan')), ('width', None, 0)])
def test_invalid_camera_info_raises_input_error(field, index, value):
    msg = ros_io.build_camera_info(K, 320, 240)
    if index is None:
        setattr(msg, field, value)
    else:
        vals = list(getattr(msg, field))
        vals[index] = value
        setattr(msg, field, vals)
    with pytest.raises(InputError):
        ros_io.parse_camera_info(msg)


def test_camera_info_with_only_P_set_takes_its_intrinsics_from_P():
    P = np.hstack([K, np.array([[-0.54 * 500.0], [0.0], [0.0]])])
    msg = ros_io.build_camera_info(K, 320, 240, P=P)
    msg.k = [0.0] * 9
    np.testing.assert_array_equal(ros_io.parse_camera_info(msg).K, K)
    msg.p = [0.0] * 12
    with pytest.raises(InputError, match='not calibrated'):
        ros_io.parse_camera_info(msg)


def test_transformed_camera_info_scales_P_like_K_and_keeps_the_baseline():
    P = np.hstack([K, np.array([[-0.54 * 500.0], [0.0], [0.0]])])  # right stereo camera
    cam = ros_io.parse_camera_info(ros_io.build_camera_info(K, 320, 240, P=P))
    S = np.diag([0.5, 0.5, 1.0])
    S[0, 2], S[1, 2] = -10.0, -4.0  # half size, then a crop
    K2 = S @ K
    out = ros_io.parse_camera_info(ros_io.transform_camera_info(cam, K2, 150, 110))
    np.testing.assert_allclose(out.K, K2)
    np.testing.assert_allclose(out.P, S @ P)
    assert out.P[0, 3] == pytest.approx(-0.54 * 250.0)
    assert (out.width, out.height) == (150, 110)


def test_pointcloud2_layout_and_round_trip():
    d = np.random.default_rng(4).uniform(1, 50, (24, 32)).astype(np.float32)
    d[3, 4] = np.nan
    unc = np.full_like(d, 0.25)
    rgb = np.random.default_rng(5).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    cloud = depth_to_points(d, K, rgb=rgb, uncertainty=unc)
    msg = ros_io.build_pointcloud2(cloud, ros_io.Header(frame_id='cam'))
    assert (msg.height, msg.width, msg.is_dense, msg.point_step, msg.row_step) == (
        24, 32, False, 20, 20 * 32)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        (n, 4 * i, ros_io.PointField.FLOAT32, 1)
        for i, n in enumerate(['x', 'y', 'z', 'rgb', 'uncertainty'])]
    assert msg.is_bigendian == (sys.byteorder == 'big')
    f = ros_io.pointcloud2_to_arrays(msg)
    np.testing.assert_array_equal(f['z'], d)
    np.testing.assert_array_equal(f['uncertainty'], unc)
    assert np.isnan(f['x'][3, 4]) and np.isnan(f['y'][3, 4])


def test_colorized_depth_is_bgr8_with_black_invalid_and_warm_near():
    d = np.array([[1.0, 79.0, np.nan]], np.float32)
    img = ros_io.colorize_depth(d, 80.0)
    assert img.shape == (1, 3, 3) and img.dtype == np.uint8
    assert (img[0, 2] == 0).all()
    b, g, r = img[0, 0].astype(int)
    assert r > b  # near = red end of turbo
    b, g, r = img[0, 1].astype(int)
    assert b > r  # far = blue end


@pytest.mark.skipif(not HAVE_BRIDGE, reason='needs the ROS cv_bridge (a ROS install)')
@pytest.mark.parametrize('encoding', ENCODINGS)
def test_numpy_path_matches_cv_bridge(encoding):  # pragma: no cover - ROS installs only
    from cv_bridge import CvBridge
    bridge = CvBridge()
    a = _array(encoding, seed=6)
    ours = ros_io._numpy_to_image_np(a, encoding)
    theirs = bridge.cv2_to_imgmsg(a, encoding=encoding)
    assert (ours.height, ours.width, ours.step, ours.encoding, bytes(ours.data)) == (
        theirs.height, theirs.width, theirs.step, theirs.encoding, bytes(theirs.data))
    np.testing.assert_array_equal(
        encodings.buffer_to_numpy(theirs.data, theirs.height, theirs.width, theirs.step,
                                  encoding, theirs.is_bigendian),
        bridge.imgmsg_to_cv2(theirs))


@pytest.mark.skipif(not HAVE_SMPY, reason='needs sensor_msgs_py (a ROS install)')
def test_pointcloud2_matches_sensor_msgs_py():  # pragma: no cover - ROS installs only
    from sensor_msgs_py import point_cloud2
    d = np.random.default_rng(7).uniform(1, 50, (6, 9)).astype(np.float32)
    cloud = depth_to_points(d, K, uncertainty=np.ones_like(d))
    ours = ros_io.build_pointcloud2(cloud)
    pts = [tuple(p) for p in cloud.points.reshape(-1, 4)]
    theirs = point_cloud2.create_cloud(ours.header, ours.fields, pts)
    assert bytes(ours.data) == bytes(theirs.data)
    assert (ours.point_step, ours.fields) == (theirs.point_step, theirs.fields)
    back = point_cloud2.read_points_numpy(ours, field_names=('x', 'y', 'z'))
    np.testing.assert_array_equal(back, cloud.points[..., :3].reshape(-1, 3))


def test_messages_built_in_reused_buffers_equal_fresh_ones_and_keep_the_buffer():
    buffers = ros_io.MessageBuffers()
    header = ros_io.Header(frame_id='cam')
    for seed in (0, 1):  # the second frame overwrites the first one's buffer
        d = np.random.default_rng(seed).uniform(1, 50, (24, 32)).astype(np.float32)
        buf = buffers.get('depth', d.nbytes)
        msg = ros_io.numpy_to_image(d, '32FC1', header, buffer=buf)
        fresh = ros_io.numpy_to_image(d, '32FC1', header)
        assert msg.data is buf and bytes(msg.data) == bytes(fresh.data)
        assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (
            fresh.height, fresh.width, fresh.step, fresh.encoding, fresh.is_bigendian)
        np.testing.assert_array_equal(ros_io.image_to_numpy(msg), d)
        cbuf = buffers.get('points', d.size * 4 * 4)
        cloud = depth_to_points(d, K, uncertainty=d, out=ros_io.buffer_view(
            cbuf, np.float32, d.shape + (4,)))
        pc = ros_io.build_pointcloud2(cloud, header, cbuf)
        assert pc.data is cbuf
        assert bytes(pc.data) == bytes(ros_io.build_pointcloud2(
            depth_to_points(d, K, uncertainty=d), header).data)
        msg = ros_io.cloud_message(PointCloudBuilder(threads=2), buffers, 'cloud', d, K, header,
                                   uncertainty=d, max_range_m=30.0)
        assert msg.data is buffers.get('cloud', len(msg.data))
        assert bytes(msg.data) == bytes(ros_io.build_pointcloud2(
            depth_to_points(d, K, uncertainty=d, max_range_m=30.0), header).data)
    assert buffers.get('depth', d.nbytes) is buf  # same size: the same memory again
    assert len(buffers.get('depth', 8)) == 8


def test_a_buffer_of_the_wrong_size_or_memory_is_refused():
    d = np.ones((4, 5), np.float32)
    buffers = ros_io.MessageBuffers()
    with pytest.raises(InputError, match='80-byte'):
        ros_io.numpy_to_image(d, '32FC1', buffer=buffers.get('a', 10))
    cloud = depth_to_points(d, K)
    with pytest.raises(InputError, match='not a view'):
        ros_io.build_pointcloud2(cloud, buffer=buffers.get('b', cloud.points.nbytes))
