"""NYU-Depth-v2 loader on synthesised files in the official split formats."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from urcdc_depth_ros.config import NYU_FOCAL_PX
from urcdc_training.datasets import DataConfig, build_dataset, parse_split, split_path
from urcdc_training.datasets.nyu import VALID_COLS, VALID_ROWS


@pytest.fixture()
def nyu_root(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / 'bathroom').mkdir()
    rgb = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    depth_mm = rng.integers(500, 9000, (480, 640)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / 'bathroom' / 'rgb_00001.jpg'), rgb)
    cv2.imwrite(str(tmp_path / 'bathroom' / 'sync_depth_00001.png'), depth_mm)
    (tmp_path / 'train.txt').write_text(
        'bathroom/rgb_00001.jpg bathroom/sync_depth_00001.png '
        'bathroom/dense/sync_depth_dense_00001.png\n')
    (tmp_path / 'test.txt').write_text(
        'bathroom/rgb_00001.jpg bathroom/sync_depth_00001.png 518.8579\n')
    cfg = DataConfig.for_dataset('nyu', data_path=str(tmp_path), gt_path=str(tmp_path),
                                 filenames_file=str(tmp_path / 'train.txt'),
                                 filenames_file_eval=str(tmp_path / 'test.txt'))
    return cfg, depth_mm


def test_nyu_eval_reads_millimetres_as_metres_full_frame(nyu_root):
    cfg, depth_mm = nyu_root
    s = build_dataset(cfg, 'eval')[0]
    assert s['image'].shape == (3, 480, 640) and s['depth'].shape == (1, 480, 640)
    assert (s['crop_top'], s['crop_left']) == (0, 0) and s['has_valid_depth'] is True
    np.testing.assert_allclose(s['depth'][0].numpy(), depth_mm / 1000.0, rtol=1e-6)
    assert s['focal'] == pytest.approx(518.8579)


def test_nyu_train_at_full_size_zeroes_gt_outside_the_valid_region(nyu_root):
    cfg, depth_mm = nyu_root
    cfg.do_random_rotate = False
    cfg.cutflip_prob = cfg.flip_prob = cfg.color_aug_prob = 0.0
    s = build_dataset(cfg, 'train')[0]
    d = s['depth'][0].numpy()
    assert d.shape == (480, 640) and s['focal'] == pytest.approx(NYU_FOCAL_PX)
    (r0, r1), (c0, c1) = VALID_ROWS, VALID_COLS
    np.testing.assert_allclose(d[r0:r1, c0:c1], depth_mm[r0:r1, c0:c1] / 1000.0, rtol=1e-6)
    assert d[:r0].max() == 0 and d[r1:].max() == 0 and d[:, :c0].max() == 0
    assert d[:, c1:].max() == 0


def test_nyu_train_at_smaller_size_crops_inside_the_valid_region(nyu_root):
    cfg, _ = nyu_root
    cfg.input_height, cfg.input_width = 416, 544
    s = build_dataset(cfg, 'train')[0]
    assert s['image'].shape == (3, 416, 544)
    valid = s['depth'][s['depth'] > 0]
    assert valid.numel() > 0.9 * 416 * 544 and float(valid.max()) <= 9.0


def test_bundled_nyu_lists_parse_with_default_focal_for_dense_lines():
    train = parse_split(split_path('nyudepthv2_train_files_with_gt_dense.txt'), NYU_FOCAL_PX,
                        require_gt=True)
    assert len(train) == 36253 and {e.focal for e in train} == {NYU_FOCAL_PX}
    test = parse_split(split_path('nyudepthv2_test_files_with_gt.txt'), 1.0)
    assert len(test) == 654 and {e.focal for e in test} == {518.8579}
