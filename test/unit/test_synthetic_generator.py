"""Synthetic KITTI-format generator: exact geometry, LiDAR/dense agreement, layout, determinism."""
from __future__ import annotations

import datetime as dt
import filecmp
import os

import cv2
import numpy as np
import pytest

from urcdc_depth_ros.errors import ConfigError
from urcdc_depth_ros.kitti.calib import KittiCalib, velodyne_to_depth
from urcdc_training.synthetic import encode_depth_png, generate_dataset
from urcdc_training.synthetic.cli import main as synth_main
from urcdc_training.synthetic.lidar import scan
from urcdc_training.synthetic.scene import (CameraRays, StreetScene, make_street_scene,
                                            render_camera)

W, H = 320, 97  # small KITTI-shaped frames keep the tests fast


def _read_depth(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint16, path
    return img.astype(np.float32) / 256.0


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth')
    return generate_dataset(str(out), drives=3, frames=2, seed=7, width=W, height=H,
                            test_drives=1)


def test_road_only_scene_depth_matches_plane_formula_per_row():
    calib = KittiCalib.default().scaled(W, H)
    scene = StreetScene.empty(cam_height=1.65)
    rgb, depth = render_camera(scene, CameraRays(calib.K, W, H, np.zeros(3)))
    fy, cy = calib.K[1, 1], calib.K[1, 2]
    v = np.arange(H)
    below = v > cy + 1e-6
    expected = 1.65 * fy / (v[below] - cy)
    np.testing.assert_allclose(depth[below], np.repeat(expected[:, None], W, 1), rtol=1e-5)
    assert np.isinf(depth[~below]).all()  # sky rows: no depth
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8


def _reference_depth(scene, origin, d):
    """Nearest hit along rays ``origin + t d`` (d: (N, 3), z = 1), float64, one primitive at a
    time; an independent check of the casters (slabs for boxes, quadratics for the rest)."""
    o = np.asarray(origin, np.float64)
    best = np.full(len(d), np.inf)

    def keep(t, ok):
        np.minimum(best, np.where(ok & (t > 1e-3), t, np.inf), out=best)

    with np.errstate(divide='ignore', invalid='ignore'):
        keep((scene.cam_height - o[1]) / d[:, 1], d[:, 1] > 0)
        for lo, hi in zip(scene.box_lo, scene.box_hi):
            t1, t2 = (lo - o) / d, (hi - o) / d
            tmin = np.nanmax(np.minimum(t1, t2), 1)
            keep(tmin, np.nanmin(np.maximum(t1, t2), 1) >= tmin)
        for x, z, r, y0, y1 in scene.cyl:
            a = d[:, 0] ** 2 + d[:, 2] ** 2
            b = (o[0] - x) * d[:, 0] + (o[2] - z) * d[:, 2]
            t = (-b - np.sqrt(b * b - a * ((o[0] - x) ** 2 + (o[2] - z) ** 2 - r * r))) / a
            keep(t, (o[1] + t * d[:, 1] >= y0) & (o[1] + t * d[:, 1] <= y1))
        for *c, r in scene.sph:
            oc = o - c
            a, b = (d * d).sum(1), d @ oc
            keep((-b - np.sqrt(b * b - a * (oc @ oc - r * r))) / a, True)
    return best


@pytest.mark.parametrize('z', [0.0, 31.7])
def test_camera_depth_is_the_exact_nearest_hit_of_every_ray(z):
    calib = KittiCalib.default().scaled(W, H)
    scene = make_street_scene(np.random.default_rng(5), -130.0, 300.0)
    origin = np.array([0.2, 0.0, z])
    rays = CameraRays(calib.K, W, H, origin)
    _, depth = render_camera(scene, rays)
    d = np.stack(np.broadcast_arrays(rays.u[None, :], rays.v[:, None], 1.0), -1)
    ref = _reference_depth(scene, origin, d.reshape(-1, 3).astype(np.float64)).reshape(H, W)
    assert np.array_equal(np.isinf(depth), np.isinf(ref))  # same sky
    hit = np.isfinite(ref)
    assert hit.mean() > 0.5
    np.testing.assert_allclose(depth[hit], ref[hit], rtol=1e-4)


def test_lidar_ground_truth_agrees_with_dense_depth():
    calib = KittiCalib.default()
    rng = np.random.default_rng(3)
    scene = make_street_scene(rng, -130.0, 300.0)
    origin = np.array([0.0, 0.0, 25.0])
    _, dense = render_camera(scene, CameraRays(calib.K, calib.width, calib.height, origin))
    T_world_cam = np.eye(4)
    T_world_cam[:3, 3] = origin
    points = scan(scene, T_world_cam @ calib.T_cam_velo)
    assert points.shape[1] == 4 and points.dtype == np.float32
    assert np.linalg.norm(points[:, :3], axis=1).max() <= 120.0 + 1e-3
    gt = velodyne_to_depth(points, calib)
    both = (gt > 0) & np.isfinite(dense)
    assert both.sum() > 5000  # a real sweep covers the camera's view
    rel = np.abs(gt[both] - dense[both]) / dense[both]
    assert np.median(rel) < 0.01
    assert np.mean(rel < 0.05) > 0.9  # only edge pixels disagree


def test_layout_calibration_and_timestamps(small_set):
    info = small_set
    date_dir = os.path.join(info.raw_path, info.date)
    calib = KittiCalib.load(date_dir)
    np.testing.assert_allclose(calib.K, KittiCalib.default().scaled(W, H).K, rtol=1e-6)
    assert (calib.width, calib.height) == (W, H)
    assert os.path.isfile(os.path.join(date_dir, 'calib_imu_to_velo.txt'))
    assert info.train_drives == info.drives[:2] and info.test_drives == info.drives[2:]
    for drive in info.drives:
        d = os.path.join(date_dir, drive)
        for sub in ('image_02', 'velodyne_points'):
            with open(os.path.join(d, sub, 'timestamps.txt')) as f:
                stamps = [dt.datetime.strptime(s[:26], '%Y-%m-%d %H:%M:%S.%f')
                          for s in f.read().split('\n') if s]
            assert len(stamps) == info.frames
            gaps = np.diff([s.timestamp() for s in stamps])
            assert np.all(np.abs(gaps - 0.1036) < 0.002)  # ~10 Hz
        img = cv2.imread(os.path.join(d, 'image_02', 'data', '0000000001.png'))
        assert img.shape == (H, W, 3)
        pts = np.fromfile(os.path.join(d, 'velodyne_points', 'data', '0000000001.bin'),
                          np.float32).reshape(-1, 4)
        gt = _read_depth(os.path.join(info.gt_path, drive, 'proj_depth', 'groundtruth',
                                      'image_02', '0000000001.png'))
        # The GT PNG is the scan projected with the written calibration.
        expected = velodyne_to_depth(pts, calib)
        np.testing.assert_allclose(gt, np.round(expected * 256) / 256, atol=1e-6)
        dense = _read_depth(os.path.join(d, 'dense_depth', 'image_02', '0000000001.png'))
        assert dense.shape == (H, W) and (dense > 0).mean() > 0.5


def test_split_files_list_existing_pairs_with_focal(small_set):
    info = small_set
    for split, drives in ((info.train_split, info.train_drives),
                          (info.test_split, info.test_drives)):
        with open(split) as f:
            lines = f.read().splitlines()
        assert len(lines) == len(drives) * info.frames
        for line in lines:
            img, gt, fx = line.split(' ')
            assert img.split('/')[1] in drives and img.startswith(info.date + '/')
            assert os.path.isfile(os.path.join(info.raw_path, img))
            assert os.path.isfile(os.path.join(info.gt_path, gt))
            assert float(fx) == pytest.approx(721.5377 * W / 1242, abs=1e-4)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    kw = dict(drives=2, frames=2, width=160, height=48, test_drives=1)
    a = generate_dataset(str(tmp_path / 'a'), seed=1, **kw)
    b = generate_dataset(str(tmp_path / 'b'), seed=1, **kw)
    c = generate_dataset(str(tmp_path / 'c'), seed=2, **kw)
    files = sorted(os.path.relpath(os.path.join(d, f), a.out_dir)
                   for d, _, names in os.walk(a.out_dir) for f in names)
    # 3 calib + info + 2 splits; per drive 4 timestamps (image_02, image_03, velodyne, dense)
    # + oxts timestamps and dataformat; per frame image_02, image_03, scan, dense, GT and an
    # oxts line.
    assert len(files) == 6 + 2 * 7 + 2 * 2 * 6
    for rel in files:
        if rel != 'synthetic_info.json':  # holds the output paths
            assert filecmp.cmp(os.path.join(a.out_dir, rel), os.path.join(b.out_dir, rel),
                               shallow=False), rel
    rel = os.path.join(a.date, a.drives[0], 'image_02', 'data', '0000000000.png')
    assert not filecmp.cmp(os.path.join(a.raw_path, rel), os.path.join(c.raw_path, rel),
                           shallow=False)


def test_depth_png_encoding_rounds_and_drops_invalid_values():
    d = np.array([[0.5 / 256, 1.5 / 256, 10.0, 255.99, 256.1, 0.0, -1.0, np.inf, np.nan]])
    expected = [[0, 2, 2560, 65533, 0, 0, 0, 0, 0]]
    for dtype in (np.float32, np.float64):
        out = encode_depth_png(d.astype(dtype))
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, expected)


def test_bad_counts_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match='test_drives'):
        generate_dataset(str(tmp_path), drives=1, frames=1, test_drives=2)


def test_cli_writes_a_data_set_and_rejects_bad_options(tmp_path):
    out = tmp_path / 'cli'
    assert synth_main(['--out', str(out), '--drives', '1', '--frames', '1', '--width', '96',
                       '--height', '32', '--test-drives', '0', '--quiet']) == 0
    assert (out / 'splits' / 'synthetic_train.txt').read_text().count('\n') == 1
    assert synth_main(['--out', str(out), '--drives', '1', '--test-drives', '3',
                       '--quiet']) == 2
