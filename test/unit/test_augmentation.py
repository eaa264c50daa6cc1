"""Augmentation: CutFlip, rotation, crop, flip, colour and the composed training pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from urcdc_training.augmentation import (AugmentationParams, TrainAugmentation, color_augment,
                                         cutflip, cutflip_rows, hflip, random_crop,
                                         random_rotate, rotate)
from urcdc_training.datasets import DataConfig


def _row_maps(h=40, w=12):
    """Image and depth whose values encode (row, col), so moves can be traced."""
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = rows * 100 + cols + 1
    image = np.stack([rows / h, cols / w, np.full_like(rows, 0.5)], -1).astype(np.float32)
    return image, depth


def test_cutflip_is_a_circular_shift_of_image_and_depth_together():
    image, depth = _row_maps()
    out_img, out_dep, h_c = cutflip(image, depth, np.random.default_rng(0), prob=1.0)
    assert h_c > 0
    np.testing.assert_array_equal(out_dep, np.roll(depth, h_c, axis=0))
    np.testing.assert_array_equal(out_img, np.roll(image, h_c, axis=0))
    # The bottom h_c rows are now on top, in their original order.
    np.testing.assert_array_equal(out_dep[:h_c], depth[-h_c:])
    np.testing.assert_array_equal(out_dep[h_c:], depth[:-h_c])


@pytest.mark.parametrize('h', [10, 37, 352])
def test_cutflip_height_covers_exactly_the_integer_range(h):
    lo, hi = cutflip_rows(h)
    assert (lo, hi) == (int(np.floor(0.2 * h)), int(np.floor(0.8 * h)))
    rng = np.random.default_rng(1)
    depth = np.zeros((h, 3), np.float32)
    seen = {cutflip(depth[..., None], depth, rng, prob=1.0)[2] for _ in range(4000)}
    assert min(seen) == lo and max(seen) == hi
    if hi - lo < 50:
        assert seen == set(range(lo, hi + 1))


def test_cutflip_probability_zero_is_identity_and_half_applies_about_half():
    image, depth = _row_maps()
    rng = np.random.default_rng(2)
    out_img, out_dep, h_c = cutflip(image, depth, rng, prob=0.0)
    assert h_c == 0 and out_img is image and out_dep is depth
    applied = [cutflip(image, depth, rng, prob=0.5)[2] > 0 for _ in range(2000)]
    assert 0.45 < np.mean(applied) < 0.55


def test_rotate_by_90_degrees_matches_rot90_for_image_and_depth():
    rng = np.random.default_rng(3)
    image = rng.random((9, 9, 3)).astype(np.float32)
    depth = rng.random((9, 9)).astype(np.float32)
    out_img, out_dep = rotate(image, depth, 90.0)
    np.testing.assert_allclose(out_img, np.rot90(image), atol=1e-5)
    np.testing.assert_allclose(out_dep, np.rot90(depth), atol=1e-6)


def test_rotated_depth_uses_nearest_values_and_zero_border():
    rng = np.random.default_rng(4)
    image = rng.random((30, 50, 3)).astype(np.float32)
    depth = rng.choice([5.0, 20.0, 60.0], size=(30, 50)).astype(np.float32)
    _, out_dep = random_rotate(image, depth, rng, degree=10.0)
    assert set(np.unique(out_dep)) <= {0.0, 5.0, 20.0, 60.0}  # never interpolated
    _, same = random_rotate(image, depth, rng, degree=0.0)
    np.testing.assert_array_equal(same, depth)


def test_random_crop_takes_the_same_window_from_image_and_depth():
    image, depth = _row_maps(40, 30)
    rng = np.random.default_rng(5)
    windows = set()
    for _ in range(30):
        out_img, out_dep = random_crop(image, depth, rng, 16, 10)
        assert out_dep.shape == (16, 10) and out_img.shape == (16, 10, 3)
        top, left = int(out_dep[0, 0] - 1) // 100, int(out_dep[0, 0] - 1) % 100
        np.testing.assert_array_equal(out_dep, depth[top:top + 16, left:left + 10])
        np.testing.assert_array_equal(out_img, image[top:top + 16, left:left + 10])
        windows.add((top, left))
    assert len(windows) > 5
    with pytest.raises(ValueError):
        random_crop(image, depth, rng, 41, 10)


def test_hflip_mirrors_both_and_twice_is_identity():
    image, depth = _row_maps()
    f_img, f_dep = hflip(image, depth)
    np.testing.assert_array_equal(f_dep[:, 0], depth[:, -1])
    np.testing.assert_array_equal(f_img[:, 0], image[:, -1])
    np.testing.assert_array_equal(hflip(f_img, f_dep)[1], depth)


def test_color_augment_applies_gamma_brightness_gain_and_clips():
    image = np.random.default_rng(6).random((8, 8, 3)).astype(np.float32)
    rng = np.random.default_rng(7)
    np.testing.assert_allclose(color_augment(image, rng, (2, 2), (1, 1), (1, 1)), image ** 2,
                               rtol=1e-5)
    bright = color_augment(image, rng, (1, 1), (3, 3), (1, 1))
    np.testing.assert_allclose(bright, np.clip(image * 3, 0, 1), rtol=1e-5)
    out = color_augment(image, rng, (0.9, 1.1), (0.75, 1.25), (0.9, 1.1))
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, image)


def test_pipeline_without_randomness_is_identity():
    image, depth = _row_maps(20, 30)
    aug = TrainAugmentation(AugmentationParams.from_config(
        DataConfig(), input_height=20, input_width=30, do_random_rotate=False, cutflip_prob=0,
        flip_prob=0, color_aug_prob=0))
    out_img, out_dep = aug(image, depth, np.random.default_rng(0))
    np.testing.assert_array_equal(out_img, image)
    np.testing.assert_array_equal(out_dep, depth)


def test_pipeline_cutflips_after_cropping_and_is_reproducible():
    image, depth = _row_maps(40, 30)
    params = AugmentationParams.from_config(DataConfig(), input_height=20, input_width=10,
                                            do_random_rotate=False, cutflip_prob=1.0,
                                            flip_prob=0, color_aug_prob=0)
    aug = TrainAugmentation(params)
    out_img, out_dep = aug(image, depth, np.random.default_rng(8))
    assert out_dep.shape == (20, 10) and out_img.shape == (20, 10, 3)
    # Undo the shift: the first row of the crop is where the row index wraps around.
    rows = ((out_dep[:, 0] - 1) // 100).astype(int)
    h_c = int(np.argmin(rows))
    lo, hi = cutflip_rows(20)  # the cut is drawn for the 20-row crop, not the 40-row image
    assert lo <= h_c <= hi
    crop = np.roll(out_dep, -h_c, axis=0)
    top, left = int(crop[0, 0] - 1) // 100, int(crop[0, 0] - 1) % 100
    np.testing.assert_array_equal(crop, depth[top:top + 20, left:left + 10])
    again = aug(image, depth, np.random.default_rng(8))
    np.testing.assert_array_equal(again[0], out_img)
    np.testing.assert_array_equal(again[1], out_dep)


def test_params_come_from_the_data_config_by_name_with_the_data_sets_brightness():
    nyu = DataConfig.for_dataset('nyu', degree=4.0, gain_range=(0.8, 1.2))
    params = AugmentationParams.from_config(nyu)
    assert (params.input_height, params.input_width, params.degree) == (480, 640, 4.0)
    assert params.gain_range == (0.8, 1.2)
    assert params.brightness_range == (0.75, 1.25)   # NYU's, not KITTI's (0.9, 1.1)
    assert AugmentationParams.from_config(DataConfig()).brightness_range == (0.9, 1.1)
    assert TrainAugmentation(nyu).p == params
