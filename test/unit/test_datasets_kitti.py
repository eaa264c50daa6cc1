"""KITTI-format loaders on generated data: shapes, metres, focal, KB crop, errors, checks."""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import pytest
import torch

from urcdc_depth_ros.config import IMAGENET_MEAN, IMAGENET_STD
from urcdc_depth_ros.errors import ConfigError, DataError
from urcdc_training.check_data import check_dataset
from urcdc_training.datasets import DataConfig, build_dataset, parse_split, split_path
from urcdc_training.synthetic import generate_dataset

NO_AUG = dict(do_random_rotate=False, cutflip_prob=0.0, flip_prob=0.0, color_aug_prob=0.0)


def _unnormalise(image: torch.Tensor) -> np.ndarray:
    x = image.numpy().transpose(1, 2, 0)
    return x * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)


@pytest.fixture(scope='module')
def full_set(tmp_path_factory):
    """Full KITTI-size frames (KB crop applies): 1 train drive, 1 test drive, 1 frame each."""
    out = tmp_path_factory.mktemp('kitti_full')
    info = generate_dataset(str(out), drives=2, frames=1, seed=11, test_drives=1)
    cfg = DataConfig(data_path=info.raw_path, gt_path=info.gt_path,
                     filenames_file=info.train_split, filenames_file_eval=info.test_split)
    return info, cfg


def _first_line(split):
    with open(split) as f:
        return f.readline().split()


def test_train_sample_is_kb_cropped_gt_in_metres_with_split_focal(full_set):
    info, cfg = full_set
    cfg = dataclasses.replace(cfg, input_width=1216, **NO_AUG)
    s = build_dataset(cfg, 'train')[0]
    assert s['image'].shape == (3, 352, 1216) and s['depth'].shape == (1, 352, 1216)
    assert s['image'].dtype == torch.float32 and s['depth'].dtype == torch.float32
    img_rel, gt_rel, fx = _first_line(info.train_split)
    assert s['focal'] == pytest.approx(float(fx)) and s['has_valid_depth'] is True
    assert s['path'] == img_rel
    gt = cv2.imread(os.path.join(info.gt_path, gt_rel), cv2.IMREAD_UNCHANGED) / 256.0
    rgb = cv2.imread(os.path.join(info.raw_path, img_rel))[..., ::-1] / 255.0
    top, left = 375 - 352, (1242 - 1216) // 2
    np.testing.assert_allclose(s['depth'][0].numpy(), gt[top:, left:left + 1216], atol=1e-6)
    np.testing.assert_allclose(_unnormalise(s['image']), rgb[top:, left:left + 1216],
                               atol=1e-5)


def test_train_augmentation_gives_input_size_and_is_reproducible_per_epoch(full_set):
    _, cfg = full_set
    ds = build_dataset(cfg, 'train')
    a, b = ds[0], ds[0]
    assert a['image'].shape == (3, 352, 1120) and a['depth'].shape == (1, 352, 1120)
    assert torch.equal(a['image'], b['image']) and torch.equal(a['depth'], b['depth'])
    ds.set_epoch(1)
    c = ds[0]
    assert not torch.equal(a['image'], c['image'])
    valid = c['depth'][c['depth'] > 0]
    assert valid.numel() > 1000 and float(valid.max()) <= 120.0 + 1e-3


def test_eval_sample_has_full_frame_gt_and_crop_offsets(full_set):
    info, cfg = full_set
    s = build_dataset(cfg, 'eval')[0]
    assert s['image'].shape == (3, 352, 1216) and s['depth'].shape == (1, 375, 1242)
    assert (s['crop_top'], s['crop_left']) == (23, 13) and s['has_valid_depth'] is True
    img_rel, gt_rel, _ = _first_line(info.test_split)
    gt = cv2.imread(os.path.join(info.gt_path, gt_rel), cv2.IMREAD_UNCHANGED) / 256.0
    np.testing.assert_allclose(s['depth'][0].numpy(), gt, atol=1e-6)
    rgb = cv2.imread(os.path.join(info.raw_path, img_rel))[..., ::-1] / 255.0
    t, left = s['crop_top'], s['crop_left']
    np.testing.assert_allclose(_unnormalise(s['image']), rgb[t:t + 352, left:left + 1216],
                               atol=1e-5)
    t = build_dataset(cfg, 'test')[0]
    assert t['has_valid_depth'] is False and float(t['depth'].abs().sum()) == 0.0


def test_eval_frames_without_gt_are_flagged_not_fatal(full_set, tmp_path):
    info, cfg = full_set
    img_rel, gt_rel, fx = _first_line(info.test_split)
    split = tmp_path / 'eval.txt'
    split.write_text(f'{img_rel} None {fx}\n{img_rel} missing/0.png {fx}\n{img_rel} {gt_rel} '
                     f'{fx}\n')
    ds = build_dataset(dataclasses.replace(cfg, filenames_file_eval=str(split)), 'eval')
    assert [ds[i]['has_valid_depth'] for i in range(3)] == [False, False, True]
    assert float(ds[0]['depth'].sum()) == 0.0 and ds[0]['depth'].shape == (1, 375, 1242)


def test_half_size_synthetic_set_trains_without_kb_crop(tmp_path):
    info = generate_dataset(str(tmp_path), drives=1, frames=1, seed=3, width=621, height=188,
                            test_drives=0)
    cfg = DataConfig(data_path=info.raw_path, gt_path=info.gt_path, do_kb_crop=False,
                     filenames_file=info.train_split, input_height=160, input_width=608)
    s = build_dataset(cfg, 'train')[0]
    assert s['image'].shape == (3, 160, 608) and s['focal'] == pytest.approx(360.7688)
    with pytest.raises(DataError, match='smaller than the KB crop'):
        build_dataset(dataclasses.replace(cfg, do_kb_crop=True), 'train')[0]


def test_bad_split_lines_raise_data_error_naming_file_and_line(tmp_path):
    split = tmp_path / 'bad.txt'
    split.write_text('a.png b.png 721.5\na.png b.png 7 extra\n')
    cfg = DataConfig(filenames_file=str(split))
    with pytest.raises(DataError, match=rf'{split}:2: 4 fields'):
        build_dataset(cfg, 'train')
    split.write_text('a.png b.png abc\n')
    with pytest.raises(DataError, match=rf'{split}:1: focal'):
        build_dataset(cfg, 'train')
    split.write_text('a.png None 721.5\n')
    with pytest.raises(DataError, match=rf'{split}:1: training line'):
        build_dataset(cfg, 'train')
    with pytest.raises(DataError, match='does not exist'):
        build_dataset(DataConfig(filenames_file=str(tmp_path / 'nope.txt')), 'train')


def test_missing_and_corrupt_files_raise_data_error_naming_line_and_path(full_set, tmp_path):
    info, cfg = full_set
    img_rel, gt_rel, fx = _first_line(info.train_split)
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    split = tmp_path / 'train.txt'
    split.write_text(f'{img_rel} {gt_rel} {fx}\nnope/x.png {gt_rel} {fx}\n'
                     f'{tmp_path}/broken.png {gt_rel} {fx}\n')
    ds = build_dataset(dataclasses.replace(cfg, filenames_file=str(split)), 'train')
    ds[0]
    with pytest.raises(DataError, match=rf"{split}:2: image '.*nope/x.png' does not exist"):
        ds[1]
    with pytest.raises(DataError, match=rf'{split}:3: .*broken.png.* cannot be decoded'):
        ds[2]


def test_data_config_rejects_bad_values_with_config_error():
    with pytest.raises(ConfigError, match='cutflip_prob'):
        DataConfig(cutflip_prob=1.5)
    with pytest.raises(ConfigError, match='larger than the KB crop'):
        DataConfig(input_width=1300)
    with pytest.raises(ConfigError, match='dataset'):
        DataConfig(dataset='cityscapes')
    with pytest.raises(ConfigError, match='unknown DataConfig keys'):
        DataConfig.from_dict({'input_hieght': 352})
    with pytest.raises(ConfigError, match='mode'):
        build_dataset(DataConfig(), 'validate')
    nyu = DataConfig.for_dataset('nyu')
    assert (nyu.input_height, nyu.input_width, nyu.max_depth) == (480, 640, 10.0)
    assert nyu.resolved_brightness_range() == (0.75, 1.25)
    assert DataConfig().resolved_brightness_range() == (0.9, 1.1)
    assert DataConfig.from_dict(DataConfig().to_dict()) == DataConfig()


def test_check_dataset_reports_every_problem_at_once(full_set, tmp_path):
    info, cfg = full_set
    img_rel, gt_rel, fx = _first_line(info.train_split)
    (tmp_path / 'notpng.png').write_text('hello')
    split = tmp_path / 'train.txt'
    split.write_text(f'{img_rel} {gt_rel} {fx}\n'          # fine
                     f'missing.png {gt_rel} {fx}\n'        # image missing
                     f'{img_rel} missing_gt.png {fx}\n'    # GT missing
                     f'{tmp_path}/notpng.png {gt_rel} {fx}\n'  # not an image
                     f'{img_rel} {gt_rel} nan-ish\n')      # bad focal
    bad_cfg = dataclasses.replace(cfg, filenames_file=str(split))
    problems = check_dataset(bad_cfg)
    assert len(problems) == 4, problems
    for line_no in (2, 3, 4, 5):
        assert any(f'{split}:{line_no}:' in p for p in problems)
    assert check_dataset(cfg, decode=True) == []
    wrong_gt = dataclasses.replace(cfg, gt_path=str(tmp_path))
    assert any('none of the 1 GT files exist' in p for p in check_dataset(wrong_gt))


def test_bundled_split_lists_parse():
    eigen = parse_split(split_path('eigen_train_files_with_gt.txt'), 721.5377, require_gt=True)
    assert len(eigen) == 23158 and {round(e.focal) for e in eigen} == {707, 718, 719, 722}
    test = parse_split(split_path('eigen_test_files_with_gt.txt'), 721.5377)
    assert len(test) == 697
    official = parse_split(split_path('kitti_official_test.txt'), 721.5377)
    assert len(official) == 500 and all(e.gt is None for e in official)
    val = parse_split(split_path('kitti_official_valid.txt'), 721.5377)
    assert len(val) == 1000 and all(e.gt and e.focal == 721.5377 for e in val)


def test_getitem_key_table_names_exactly_the_keys_each_mode_returns(full_set):
    from urcdc_training.datasets.base import DepthDataset
    doc = DepthDataset.__getitem__.__doc__.split('-' * 15)[-1]  # rows below the header rule
    table = {}
    for line in doc.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isidentifier() and line.startswith(' ' * 12 + parts[0]):
            table[parts[0]] = parts[1] != '-'  # False: not returned in train
    _, cfg = full_set
    train, evaluation = build_dataset(cfg, 'train')[0], build_dataset(cfg, 'eval')[0]
    assert set(evaluation) == set(table) == set(build_dataset(cfg, 'test')[0])
    assert set(train) == {k for k, in_train in table.items() if in_train}
