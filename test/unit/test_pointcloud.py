"""pointcloud: geometry against the pinhole model, NaN handling, filters, stride, rgb packing,
ray-grid caching (speed is in bench/bench_node.py, not here)."""
from __future__ import annotations

import numpy as np
import pytest

from urcdc_depth_ros.errors import InputError
from urcdc_depth_ros.pointcloud import (PointCloudBuilder, depth_to_points, pack_rgb,
                                        unpack_rgb)

K = np.array([[500.0, 0.0, 31.5], [0.0, 480.0, 20.25], [0.0, 0.0, 1.0]])


def _depth(h=41, w=64, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 60.0, (h, w)).astype(np.float32)


def test_points_project_back_to_their_pixels_with_z_equal_to_depth():
    d = _depth()
    c = depth_to_points(d, K)
    x, y, z = (c.points[..., i].astype(np.float64) for i in range(3))
    v, u = np.mgrid[0:d.shape[0], 0:d.shape[1]]
    np.testing.assert_array_equal(z, d)
    np.testing.assert_allclose(K[0, 0] * x / z + K[0, 2], u, atol=1e-4)
    np.testing.assert_allclose(K[1, 1] * y / z + K[1, 2], v, atol=1e-4)
    assert c.fields == ('x', 'y', 'z') and c.points.flags.c_contiguous


def test_a_point_on_the_optical_axis_has_zero_x_and_y():
    d = np.full((3, 3), 7.0, np.float32)
    c = depth_to_points(d, np.array([[100.0, 0, 1.0], [0, 100.0, 1.0], [0, 0, 1]]))
    np.testing.assert_array_equal(c.points[1, 1], [0.0, 0.0, 7.0])


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf, 0.0, -3.0])
def test_invalid_depth_gives_nan_xyz_and_keeps_the_cloud_organised(bad):
    d = _depth()
    d[5, 7] = bad
    c = depth_to_points(d, K)
    assert c.points.shape[:2] == d.shape
    assert np.isnan(c.points[5, 7, :3]).all()
    assert np.isfinite(c.points[..., :3]).sum() == 3 * (d.size - 1)


def test_max_range_filters_by_euclidean_distance_not_depth():
    d = np.full((41, 64), 10.0, np.float32)
    c = depth_to_points(d, K, max_range_m=10.01)
    rng = np.linalg.norm(np.nan_to_num(c.points[..., :3], nan=0), axis=-1)
    kept = np.isfinite(c.points[..., 2])
    assert kept.any() and not kept.all()  # centre kept, corners (range ~10.03 m) dropped
    assert (rng[kept] <= 10.01 + 1e-4).all()
    assert kept[20, 31] and not kept[0, 0]


def test_uncertainty_threshold_and_field():
    d = _depth()
    unc = np.linspace(0, 2, d.size, dtype=np.float32).reshape(d.shape)
    c = depth_to_points(d, K, uncertainty=unc, max_uncertainty=1.0)
    assert c.fields == ('x', 'y', 'z', 'uncertainty')
    np.testing.assert_array_equal(c.points[..., 3], unc)
    assert np.array_equal(np.isfinite(c.points[..., 2]), unc <= 1.0)


def test_stride_keeps_every_nth_pixel_and_its_geometry():
    d = _depth()
    c = depth_to_points(d, K, stride=3)
    assert c.points.shape[:2] == (14, 22) and c.stride == 3
    np.testing.assert_array_equal(c.points[..., 2], d[::3, ::3])
    i, j = 4, 5
    x, _, z = c.points[i, j, :3].astype(np.float64)
    assert K[0, 0] * x / z + K[0, 2] == pytest.approx(j * 3, abs=1e-4)


def test_rgb_is_packed_as_0x00rrggbb_and_round_trips():
    rgb = np.random.default_rng(1).integers(0, 256, (41, 64, 3), dtype=np.uint8)
    c = depth_to_points(_depth(), K, rgb=rgb)
    assert c.fields == ('x', 'y', 'z', 'rgb')
    np.testing.assert_array_equal(unpack_rgb(c.points[..., 3]), rgb)
    np.testing.assert_array_equal(c.points[..., 3].view(np.uint32), pack_rgb(rgb).view(np.uint32))
    assert pack_rgb(np.array([[[1, 2, 3]]], np.uint8)).view(np.uint32)[0, 0] == 0x010203


def test_ray_grids_are_cached_per_size_stride_and_K():
    b = PointCloudBuilder(cache_size=2)
    r1 = b.rays(10, 20, K)
    assert b.rays(10, 20, K)[0] is r1[0]
    K2 = K.copy()
    K2[0, 2] += 1
    assert b.rays(10, 20, K2)[0] is not r1[0]
    b.rays(10, 20, K, stride=2)
    assert b.rays(10, 20, K)[0] is not r1[0]  # evicted (cache of 2)


@pytest.mark.parametrize('bad_K', [np.full((3, 3), np.nan), np.diag([0.0, 1.0, 1.0]),
                                   np.eye(2)])
def test_bad_intrinsics_raise_input_error(bad_K):
    with pytest.raises(InputError):
        depth_to_points(_depth(), bad_K)


def test_shape_mismatches_raise_input_error():
    with pytest.raises(InputError):
        depth_to_points(_depth(), K, uncertainty=np.zeros((2, 2), np.float32))
    with pytest.raises(InputError):
        depth_to_points(np.zeros((0, 5), np.float32), K)
    with pytest.raises(InputError):
        depth_to_points(_depth(), K, stride=0)


def test_strided_rgb_and_uncertainty_channels_match_the_per_pixel_reference():
    rng = np.random.default_rng(3)
    d = _depth(45, 70)
    d[::7, ::5] = np.nan
    unc = rng.uniform(0, 2, d.shape).astype(np.float32)
    unc[3, 4] = np.nan  # NaN uncertainty fails any threshold
    rgb = rng.integers(0, 256, d.shape + (3,), dtype=np.uint8)
    c = depth_to_points(d, K, rgb=rgb, uncertainty=unc, stride=3, max_uncertainty=1.5)
    assert c.points.shape == (15, 24, 5) and c.points.flags['C_CONTIGUOUS']
    for i, j in ((0, 0), (1, 1), (5, 17), (14, 23)):
        v, u = 3 * i, 3 * j
        keep = np.isfinite(d[v, u]) and unc[v, u] <= 1.5
        z = d[v, u] if keep else np.nan
        want = [(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z]
        np.testing.assert_allclose(c.points[i, j, :3], want, rtol=1e-6)
        assert c.points[i, j, 3].view(np.uint32) == pack_rgb(rgb[v:v + 1, u:u + 1]).view(
            np.uint32)[0, 0]
        np.testing.assert_equal(c.points[i, j, 4], unc[v, u])
    assert np.isnan(depth_to_points(d, K, uncertainty=unc, max_uncertainty=1.5).points[3, 4, 2])


def test_a_cloud_built_into_out_equals_the_allocated_one_and_lives_in_out():
    from urcdc_depth_ros.pointcloud import cloud_shape
    d = _depth()
    d[5, 7] = np.nan
    rgb = np.random.default_rng(3).integers(0, 256, d.shape + (3,), dtype=np.uint8)
    unc = np.linspace(0, 2, d.size, dtype=np.float32).reshape(d.shape)
    for stride in (1, 3):
        ref = depth_to_points(d, K, rgb=rgb, uncertainty=unc, stride=stride)
        shape = cloud_shape(*d.shape, stride, True, True)
        assert shape == ref.points.shape
        out = np.full(shape, 7.0, np.float32)  # stale values from a previous frame
        got = PointCloudBuilder().build(d, K, rgb=rgb, uncertainty=unc, stride=stride, out=out)
        assert got.points is out and got.fields == ref.fields
        np.testing.assert_array_equal(out.view(np.uint32), ref.points.view(np.uint32))
    with pytest.raises(InputError, match='shape'):
        PointCloudBuilder().build(d, K, out=np.zeros((2, 2, 3), np.float32))


def test_uncertainty_used_only_for_filtering_adds_no_field():
    d = _depth()
    unc = np.linspace(0, 2, d.size, dtype=np.float32).reshape(d.shape)
    c = depth_to_points(d, K, uncertainty=unc, max_uncertainty=1.0, uncertainty_field=False)
    assert c.fields == ('x', 'y', 'z') and c.points.shape == d.shape + (3,)
    assert np.array_equal(np.isfinite(c.points[..., 2]), unc <= 1.0)


def test_a_cloud_built_in_parallel_bands_equals_the_single_thread_one():
    from urcdc_depth_ros.pointcloud import PARALLEL_MIN_POINTS
    h, w = 375, 1242
    assert h * w >= PARALLEL_MIN_POINTS  # large enough to be split
    d = _depth(h, w, seed=6)
    d[100:110, :] = np.nan
    d[200, 5] = -1.0  # invalid: becomes NaN in every band
    rgb = np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)
    unc = np.random.default_rng(8).uniform(0, 2, (h, w)).astype(np.float32)
    Kc = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    for kw in ({}, {'max_uncertainty': 1.0, 'max_range_m': 40.0}):
        one = PointCloudBuilder(threads=1).build(d, Kc, rgb=rgb, uncertainty=unc, **kw)
        three = PointCloudBuilder(threads=3).build(d, Kc, rgb=rgb, uncertainty=unc, **kw)
        np.testing.assert_array_equal(three.points.view(np.uint32), one.points.view(np.uint32))
    assert np.isnan(one.points[200, 5, 2])
