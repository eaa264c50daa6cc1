"""The encoding table: colour conversion to RGB, Image buffers (padding, byte order, malformed
messages) and depth units, shared by the node's ros_io and the bag tools' bag_io."""
import numpy as np
import pytest

from urcdc_depth_ros import encodings
from urcdc_depth_ros.encodings import (COLOUR_ENCODINGS, ENCODINGS, buffer_to_numpy,
                                       depth_to_metres, numpy_to_buffer, to_rgb)
from urcdc_depth_ros.errors import InputError


@pytest.mark.parametrize('encoding,channels', [('rgb8', 3), ('bgr8', 3), ('rgba8', 4),
                                               ('bgra8', 4), ('mono8', 0)])
def test_every_encoding_becomes_the_same_rgb(encoding, channels):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    if encoding == 'mono8':
        image, expected = rgb[..., 0].copy(), np.repeat(rgb[..., :1], 3, 2)
    else:
        image = rgb[..., ::-1] if encoding.startswith('bgr') else rgb
        if channels == 4:
            image = np.concatenate([image, np.full((4, 5, 1), 7, np.uint8)], 2)
        expected = rgb
    np.testing.assert_array_equal(to_rgb(np.ascontiguousarray(image), encoding), expected)


@pytest.mark.parametrize('image,encoding,fragment', [
    (np.zeros((4, 5, 3), np.float32), 'rgb8', 'dtype'),
    (np.zeros((4, 5, 4), np.uint8), 'rgb8', 'shape'),
    (np.zeros((4, 5), np.uint8), 'bgr8', 'shape'),
    (np.zeros((4, 5, 3), np.uint8), 'mono8', 'shape'),
    (np.zeros((0, 5, 3), np.uint8), 'rgb8', 'empty'),
    (np.zeros((4, 5, 3), np.uint8), 'yuv422', 'unsupported'),
    ([[1, 2, 3]], 'rgb8', 'numpy'),
])
def test_malformed_images_raise_input_error_naming_the_problem(image, encoding, fragment):
    with pytest.raises(InputError, match=fragment):
        to_rgb(image, encoding)


def _array(encoding, h=5, w=7, seed=0):
    t = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if t.channels == 1 else (h, w, t.channels)
    if t.dtype.kind == 'f':
        return rng.uniform(0, 80, shape).astype(t.dtype)
    return rng.integers(0, np.iinfo(t.dtype).max, shape, dtype=t.dtype, endpoint=True)


@pytest.mark.parametrize('encoding', list(ENCODINGS))
@pytest.mark.parametrize('big_endian', [False, True])
def test_buffers_round_trip_with_padding_and_either_byte_order(encoding, big_endian):
    a = _array(encoding)
    t = ENCODINGS[encoding]
    wire = a.astype(t.dtype.newbyteorder('>' if big_endian else '<'))
    row, pad = a[0].nbytes, 6 * t.dtype.itemsize
    data = np.full((a.shape[0], row + pad), 0xAB, np.uint8)
    data[:, :row] = np.ascontiguousarray(wire).view(np.uint8).reshape(a.shape[0], row)
    out = buffer_to_numpy(data.tobytes(), a.shape[0], a.shape[1], row + pad, encoding,
                          big_endian)
    np.testing.assert_array_equal(out, a)
    assert out.dtype == t.dtype and out.dtype.isnative and not out.flags.writeable
    h, w, step, raw = numpy_to_buffer(a, encoding)
    np.testing.assert_array_equal(buffer_to_numpy(raw, h, w, step, encoding,
                                                  encodings.HOST_BIGENDIAN), a)


@pytest.mark.parametrize('change,fragment', [
    (dict(encoding='yuv422'), 'unsupported'), (dict(step=10), 'smaller'),
    (dict(data=bytes(5 * 21 - 1)), 'truncated'), (dict(data=bytes(5 * 21 + 1)), 'truncated'),
    (dict(height=0), 'empty'), (dict(height=1 << 30), 'implausible')])
def test_malformed_buffers_raise_one_input_error_naming_the_problem(change, fragment):
    fields = dict(data=bytes(5 * 21), height=5, width=7, step=21, encoding='rgb8',
                  is_bigendian=False)
    fields.update(change)
    with pytest.raises(InputError, match=fragment):
        buffer_to_numpy(**fields)


def test_colour_encodings_are_the_camera_inputs_and_depth_ones_carry_units():
    assert COLOUR_ENCODINGS == ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')
    mm = np.array([[0, 1500], [40000, 1]], np.uint16)
    np.testing.assert_allclose(depth_to_metres(mm, '16UC1'), [[np.nan, 1.5], [40.0, 0.001]])
    m = np.array([[np.nan, 2.5]], np.float32)
    assert depth_to_metres(m, '32FC1') is m
    with pytest.raises(InputError, match='not a depth encoding'):
        depth_to_metres(np.zeros((2, 2), np.uint8), 'rgb8')
