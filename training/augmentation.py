"""Training-time augmentation for depth: pure numpy functions with an explicit random generator.

Images are (H, W, 3) float32 RGB in [0, 1]; depth maps are (H, W) float32 metres (0 = no GT).
Every function that draws random numbers takes an ``np.random.Generator``; the loaders create one
per sample (from the seed, the epoch and the index), so a sample's augmentation is reproducible.

Order (URCDC-Depth / BTS, docs/method.md §2 and §4): random rotation -> random crop -> CutFlip ->
horizontal flip -> colour (gamma, brightness, per-channel gain, clip), composed by
:class:`TrainAugmentation`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np


def rotate(image: np.ndarray, depth: np.ndarray, angle_deg: float):
    """Rotate both maps by ``angle_deg`` (counter-clockwise, about the image centre).

    The image is resampled bilinearly, the depth by nearest neighbour (no mixed depths at
    edges); pixels that come from outside the frame are 0.
    """
    h, w = depth.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle_deg), 1.0)
    img = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    dep = cv2.warpAffine(depth, m, (w, h), flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, dep


def random_rotate(image, depth, rng: np.random.Generator, degree: float):
    """Rotate by an angle drawn uniformly from [-degree, degree] degrees."""
    return rotate(image, depth, rng.uniform(-degree, degree))


def random_crop(image, depth, rng: np.random.Generator, height: int, width: int):
    """Crop both maps at the same uniformly drawn window of ``height`` x ``width`` pixels."""
    h, w = depth.shape[:2]
    if h < height or w < width:
        raise ValueError(f'cannot crop {height}x{width} from a {h}x{w} image')
    top = int(rng.integers(0, h - height + 1))
    left = int(rng.integers(0, w - width + 1))
    return (image[top:top + height, left:left + width],
            depth[top:top + height, left:left + width])


def cutflip_rows(height: int) -> tuple[int, int]:
    """Inclusive range of CutFlip's cut height h_c for an image of ``height`` rows."""
    return int(np.floor(0.2 * height)), int(np.floor(0.8 * height))


def cutflip(image, depth, rng: np.random.Generator, prob: float = 0.5):
    """CutFlip (URCDC-Depth): with probability ``prob`` move the bottom h_c rows to the top.

    h_c is uniform over the integers [floor(0.2 h), floor(0.8 h)]; the result is a vertical
    circular shift by h_c rows of the image and the depth together (no mirroring).
    Returns (image, depth, h_c) with h_c = 0 when not applied.
    """
    if rng.random() >= prob:
        return image, depth, 0
    lo, hi = cutflip_rows(depth.shape[0])
    h_c = int(rng.integers(lo, hi + 1))
    return np.roll(image, h_c, axis=0), np.roll(depth, h_c, axis=0), h_c


def hflip(image, depth):
    """Mirror both maps left-right."""
    return image[:, ::-1], depth[:, ::-1]


def color_augment(image, rng: np.random.Generator, gamma_range: tuple[float, float],
                  brightness_range: tuple[float, float], gain_range: tuple[float, float]):
    """Gamma, brightness and per-channel gain drawn uniformly from the ranges; clip to [0, 1].

    The ranges have no defaults here: they are ``DataConfig``'s (brightness depends on the
    data set), passed through :class:`AugmentationParams`.
    """
    gamma = rng.uniform(*gamma_range)
    brightness = rng.uniform(*brightness_range)
    gains = rng.uniform(*gain_range, size=3).astype(np.float32)
    out = np.power(np.clip(image, 0, 1), gamma) * brightness * gains[None, None, :]
    return np.clip(out, 0, 1).astype(np.float32)


@dataclass(frozen=True)
class AugmentationParams:
    """What :class:`TrainAugmentation` does: the augmentation fields of a ``DataConfig``.

    No defaults of its own: :meth:`from_config` takes every field by name from a
    ``DataConfig`` (the single source of the defaults), with ``brightness_range`` resolved to
    the data set's value when unset.
    """

    input_height: int
    input_width: int
    do_random_rotate: bool
    degree: float
    cutflip_prob: float
    flip_prob: float
    color_aug_prob: float
    gamma_range: tuple[float, float]
    brightness_range: tuple[float, float]
    gain_range: tuple[float, float]

    @classmethod
    def from_config(cls, cfg, **overrides) -> 'AugmentationParams':
        """The parameters of ``cfg`` (a ``DataConfig``), then ``overrides`` by name."""
        values = {f.name: getattr(cfg, f.name) for f in fields(cls)}
        values['brightness_range'] = cfg.resolved_brightness_range()
        values.update(overrides)
        for name in ('gamma_range', 'brightness_range', 'gain_range'):
            values[name] = tuple(float(v) for v in values[name])
        return cls(**values)


class TrainAugmentation:
    """The training pipeline: rotate -> crop -> CutFlip -> flip -> colour.

    Call with ``(image, depth, rng)``; returns contiguous ``(image, depth)`` of the input size.
    """

    def __init__(self, cfg):
        is_params = isinstance(cfg, AugmentationParams)
        self.p = cfg if is_params else AugmentationParams.from_config(cfg)

    def __call__(self, image: np.ndarray, depth: np.ndarray, rng: np.random.Generator):
        """Augment one (image (H, W, 3) float [0, 1], depth (H, W) m) pair with ``rng``."""
        p = self.p
        if p.do_random_rotate and p.degree > 0:
            image, depth = random_rotate(image, depth, rng, p.degree)
        h, w = depth.shape[:2]
        if (h, w) != (p.input_height, p.input_width):
            image, depth = random_crop(image, depth, rng, p.input_height, p.input_width)
        image, depth, _ = cutflip(image, depth, rng, p.cutflip_prob)
        if rng.random() < p.flip_prob:
            image, depth = hflip(image, depth)
        if rng.random() < p.color_aug_prob:
            image = color_augment(image, rng, p.gamma_range, p.brightness_range, p.gain_range)
        return (np.ascontiguousarray(image, np.float32),
                np.ascontiguousarray(depth, np.float32))
