"""Data options, split-file parsing, image/depth reading and the shared depth Dataset.

Split files (the BTS / URCDC-Depth format, one sample per line, paths relative to
``data_path`` / ``gt_path``)::

    IMAGE GT FOCAL      KITTI Eigen, NYU test, synthetic (GT may be ``None``)
    IMAGE GT DENSE_GT   NYU train (the third path is ignored; focal = the data set default)
    IMAGE GT            KITTI official val_selection_cropped (focal = the data set default)
    IMAGE               KITTI official test (image only)

Samples are dicts whose keys differ between train and eval/test: see the key table of
:meth:`DepthDataset.__getitem__`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from urcdc_depth_ros.config import (IMAGENET_MEAN, IMAGENET_STD, KITTI_FOCAL_PX,
                                    KITTI_MAX_DEPTH_M)
from urcdc_depth_ros.errors import ConfigError, DataError

from ..augmentation import TrainAugmentation

MODES = ('train', 'eval', 'test')
DATASETS = ('kitti', 'nyu')
BRIGHTNESS_DEFAULT = {'kitti': (0.9, 1.1), 'nyu': (0.75, 1.25)}
_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_STD = np.asarray(IMAGENET_STD, np.float32)


@dataclass
class DataConfig:
    """Every data option of training and evaluation (the single source of their defaults).

    Attributes:
        dataset: ``'kitti'`` (KITTI Eigen / official / synthetic) or ``'nyu'``.
        data_path, gt_path: roots the split's image and GT paths are relative to.
        filenames_file: training split file; filenames_file_eval: eval/test split file.
        data_path_eval, gt_path_eval: roots for the eval split ('' = data_path / gt_path).
        input_height, input_width: training crop, px (KITTI 352 x 1120, NYU 480 x 640).
        max_depth: depth range, metres (KITTI 80, NYU 10); used by the trainer.
        do_kb_crop: KITTI benchmark crop of ``kb_crop_height`` x ``kb_crop_width`` (bottom
            rows, horizontally centred) before anything else, train and eval.
        do_random_rotate, degree: random rotation in [-degree, degree] degrees.
        cutflip_prob, flip_prob, color_aug_prob: probabilities of CutFlip, horizontal flip
            and colour augmentation.
        gamma_range, gain_range: colour augmentation ranges; brightness_range: None takes
            the data set default (KITTI 0.9-1.1, NYU 0.75-1.25).
        use_right: accepted for compatibility with the official options; ignored.
        num_workers: DataLoader worker processes. seed: base of the per-sample random streams.
        focal_default: focal length (px) for split lines without one; None = the data set
            default (KITTI 721.5377, NYU 518.8579).
    """

    dataset: str = 'kitti'
    data_path: str = ''
    gt_path: str = ''
    filenames_file: str = ''
    filenames_file_eval: str = ''
    data_path_eval: str = ''
    gt_path_eval: str = ''
    input_height: int = 352
    input_width: int = 1120
    max_depth: float = KITTI_MAX_DEPTH_M
    do_kb_crop: bool = True
    kb_crop_height: int = 352
    kb_crop_width: int = 1216
    do_random_rotate: bool = True
    degree: float = 1.0
    cutflip_prob: float = 0.5
    flip_prob: float = 0.5
    color_aug_prob: float = 0.5
    gamma_range: tuple[float, float] = (0.9, 1.1)
    brightness_range: tuple[float, float] | None = None
    gain_range: tuple[float, float] = (0.9, 1.1)
    use_right: bool = False
    num_workers: int = 0
    seed: int = 0
    focal_default: float | None = None

    def __post_init__(self) -> None:
        for name in ('gamma_range', 'gain_range', 'brightness_range'):
            value = getattr(self, name)
            if value is not None:
                try:
                    setattr(self, name, tuple(float(v) for v in value))
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f'{name}={value!r} must be two numbers (lo, hi)') from exc
        self.validate()

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> 'DataConfig':
        """Published defaults for ``'kitti'`` or ``'nyu'``, then ``overrides``."""
        if dataset not in DATASETS:
            raise ConfigError(f'dataset={dataset!r} is not one of {list(DATASETS)}')
        base: dict[str, Any] = {'dataset': dataset}
        if dataset == 'nyu':
            base.update(input_height=480, input_width=640, max_depth=10.0, do_kb_crop=False,
                        degree=2.5)
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> 'DataConfig':
        """Build from a dict (YAML); unknown keys raise ConfigError listing the known ones."""
        known = [f.name for f in fields(cls) if not f.name.startswith('_')]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f'unknown DataConfig keys {unknown!r}; known keys: {known}')
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML friendly: tuples become lists)."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith('_')}
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def resolved_brightness_range(self) -> tuple[float, float]:
        """brightness_range, or the data set's published default when None."""
        if self.brightness_range is not None:
            return self.brightness_range
        return BRIGHTNESS_DEFAULT[self.dataset]

    def validate(self) -> None:
        """Raise ConfigError naming the first bad option and the accepted values."""
        if self.dataset not in DATASETS:
            raise ConfigError(f'dataset={self.dataset!r} is not one of {list(DATASETS)}')
        for name in ('input_height', 'input_width', 'kb_crop_height', 'kb_crop_width'):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 16:
                raise ConfigError(f'{name}={v!r} must be an integer >= 16 (pixels)')
        if self.do_kb_crop and (self.input_height > self.kb_crop_height
                                or self.input_width > self.kb_crop_width):
            raise ConfigError(
                f'input size {self.input_height}x{self.input_width} is larger than the KB crop '
                f'{self.kb_crop_height}x{self.kb_crop_width}; lower input_height/input_width '
                'or raise kb_crop_height/kb_crop_width')
        if not (self.max_depth > 0):
            raise ConfigError(f'max_depth={self.max_depth!r} must be > 0 (metres)')
        if not (0 <= self.degree <= 45):
            raise ConfigError(f'degree={self.degree!r} must be in [0, 45] (degrees)')
        for name in ('cutflip_prob', 'flip_prob', 'color_aug_prob'):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise ConfigError(f'{name}={v!r} must be a probability in [0, 1]')
        for name in ('gamma_range', 'gain_range', 'brightness_range'):
            v = getattr(self, name)
            if v is None:
                continue
            if len(v) != 2 or not (0 < v[0] <= v[1]):
                raise ConfigError(f'{name}={v!r} must be (lo, hi) with 0 < lo <= hi')
        if not isinstance(self.num_workers, (int, np.integer)) or self.num_workers < 0:
            raise ConfigError(f'num_workers={self.num_workers!r} must be an integer >= 0')
        if self.focal_default is not None and not (self.focal_default > 0):
            raise ConfigError(f'focal_default={self.focal_default!r} must be > 0 px or None')


@dataclass(frozen=True)
class SplitEntry:
    """One split-file line: image / gt relative paths (gt None if absent), focal in px."""

    line_no: int
    image: str
    gt: str | None
    focal: float
    split: str


def parse_split(path: str, default_focal: float, require_gt: bool = False,
                errors: list[str] | None = None) -> list[SplitEntry]:
    """Parse a split file (format in the module docstring).

    Bad lines raise DataError naming the file and line; with ``errors`` given they are
    appended there instead and skipped (so every problem is reported at once).
    """
    def bad(msg: str) -> None:
        if errors is None:
            raise DataError(msg)
        errors.append(msg)

    if not path:
        bad('no split file configured (set filenames_file / filenames_file_eval)')
        return []
    if not os.path.isfile(path):
        bad(f'split file {path!r} does not exist; fix filenames_file / filenames_file_eval')
        return []
    entries = []
    with open(path) as f:
        for line_no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            tok = line.split()
            where = f'{path}:{line_no}'
            if len(tok) > 3:
                bad(f'{where}: {len(tok)} fields in {line!r}; expected "IMAGE [GT [FOCAL]]"')
                continue
            gt = tok[1] if len(tok) > 1 and tok[1] != 'None' else None
            focal = default_focal
            if len(tok) == 3:
                try:
                    focal = float(tok[2])
                except ValueError:
                    if not tok[2].lower().endswith(('.png', '.jpg', '.npy')):
                        bad(f'{where}: focal {tok[2]!r} is not a number in {line!r}')
                        continue
                if not (focal > 0):
                    bad(f'{where}: focal {tok[2]!r} must be > 0 px in {line!r}')
                    continue
            if require_gt and gt is None:
                bad(f'{where}: training line {line!r} has no GT path; training needs '
                    '"IMAGE GT FOCAL"')
                continue
            entries.append(SplitEntry(line_no, tok[0], gt, focal, path))
    if not entries and (errors is None or not errors):
        bad(f'split file {path!r} lists no samples')
    return entries


def read_rgb(path: str, entry: SplitEntry) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]; DataError naming the split line if unreadable."""
    if not os.path.isfile(path):
        raise DataError(f'{entry.split}:{entry.line_no}: image {path!r} does not exist; '
                        'check data_path and the split file')
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f'{entry.split}:{entry.line_no}: image {path!r} cannot be decoded '
                        '(corrupt or not an image); re-extract or drop the line')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def read_depth(path: str, entry: SplitEntry, scale: float) -> np.ndarray:
    """(H, W) float32 metres from a uint16 PNG (value / ``scale``; 0 = no data)."""
    if not os.path.isfile(path):
        raise DataError(f'{entry.split}:{entry.line_no}: depth {path!r} does not exist; '
                        'check gt_path and the split file')
    d = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if d is None:
        raise DataError(f'{entry.split}:{entry.line_no}: depth {path!r} cannot be decoded '
                        '(corrupt or not a PNG); re-extract or drop the line')
    if d.dtype != np.uint16 or d.ndim != 2:
        raise DataError(f'{entry.split}:{entry.line_no}: depth {path!r} is {d.dtype} with '
                        f'shape {d.shape}; expected a single-channel 16-bit PNG')
    return d.astype(np.float32) / np.float32(scale)


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) RGB [0, 1] -> (3, H, W) float32 ImageNet-normalised tensor."""
    x = (image - _MEAN) / _STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), np.float32))


def kb_crop_offsets(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(top, left) of the KITTI benchmark crop: bottom ``crop_h`` rows, centred columns."""
    return height - crop_h, (width - crop_w) // 2


class DepthDataset(Dataset):
    """Split-file driven depth data set; subclasses set the depth scale and crops.

    ``set_epoch(e)`` changes the augmentation streams (per sample: seed, epoch, index).
    """

    name = 'base'
    depth_scale = 256.0  # PNG value per metre
    default_focal = KITTI_FOCAL_PX

    def __init__(self, cfg: DataConfig, mode: str):
        if mode not in MODES:
            raise ConfigError(f'mode={mode!r} is not one of {list(MODES)}')
        cfg.validate()
        self.cfg = cfg
        self.mode = mode
        self.epoch = 0
        focal = cfg.focal_default or self.default_focal
        if mode == 'train':
            split, self.data_path, self.gt_path = (cfg.filenames_file, cfg.data_path,
                                                   cfg.gt_path)
        else:
            split = cfg.filenames_file_eval
            self.data_path = cfg.data_path_eval or cfg.data_path
            self.gt_path = cfg.gt_path_eval or cfg.gt_path
        self.entries = parse_split(split, focal, require_gt=mode == 'train')
        self.augment = TrainAugmentation(cfg) if mode == 'train' else None

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation random streams of ``epoch``."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.cfg.seed, self.epoch, index])

    def image_path(self, e: SplitEntry) -> str:
        """Absolute path of the entry's image."""
        return os.path.join(self.data_path, e.image)

    def gt_file(self, e: SplitEntry) -> str | None:
        """Absolute path of the entry's depth PNG, None when the line has no GT."""
        return os.path.join(self.gt_path, e.gt) if e.gt is not None else None

    # Hooks for subclasses -------------------------------------------------------------
    def train_crop(self, image, depth, e: SplitEntry):
        """Data set specific crop before augmentation (KB crop / NYU valid region)."""
        return image, depth

    def eval_crop(self, image, e: SplitEntry) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the network input inside the full frame."""
        h, w = image.shape[:2]
        return 0, 0, h, w

    # ----------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample as a dict; which keys it holds depends on the mode.

        ``h x w`` is the training input size, ``hc x wc`` the eval crop, ``H x W`` the full
        frame (sizes differ between KITTI drives: evaluate with batch 1)::

            key              train                          eval / test
            ---------------  -----------------------------  ---------------------------------
            image            (3, h, w) float32, ImageNet-   (3, hc, wc) float32 normalised:
                             normalised, augmented          KB crop (352 x 1216, bottom rows,
                                                            centred) when do_kb_crop, else
                                                            the whole frame
            depth            (1, h, w) float32 m, 0 = no    (1, H, W) float32 m of the FULL
                             GT, augmented with the image   frame, 0 = no GT; test: all 0
            focal            float, px                      float, px
            has_valid_depth  True                           eval: False when the frame has no
                                                            GT file (skipped); test: False
            path             str, image path of the split   str, as in train
            crop_top         -                              int px: the crop's row offset
            crop_left        -                              int px: the crop's column offset

        ``full[crop_top:crop_top + hc, crop_left:crop_left + wc] = prediction`` puts an eval
        prediction back in the full frame. Tensors are torch; the rest plain Python.
        """
        e = self.entries[index]
        image = read_rgb(self.image_path(e), e)
        if self.mode == 'train':
            depth = read_depth(self.gt_file(e), e, self.depth_scale)
            if depth.shape != image.shape[:2]:
                raise DataError(f'{e.split}:{e.line_no}: depth {e.gt!r} is {depth.shape} but '
                                f'image {e.image!r} is {image.shape[:2]}')
            image, depth = self.train_crop(image, depth, e)
            h, w = depth.shape
            if h < self.cfg.input_height or w < self.cfg.input_width:
                raise DataError(
                    f'{e.split}:{e.line_no}: {h}x{w} sample is smaller than the input size '
                    f'{self.cfg.input_height}x{self.cfg.input_width}; lower input_height/'
                    'input_width (or disable do_kb_crop)')
            image, depth = self.augment(image, depth, self.rng(index))
            return {'image': to_tensor_image(image),
                    'depth': torch.from_numpy(depth[None]),
                    'focal': float(e.focal), 'has_valid_depth': True, 'path': e.image}
        H, W = image.shape[:2]
        depth = np.zeros((H, W), np.float32)
        has_gt = False
        gt = self.gt_file(e)
        if self.mode == 'eval' and gt is not None and os.path.isfile(gt):
            depth = read_depth(gt, e, self.depth_scale)
            if depth.shape != (H, W):
                raise DataError(f'{e.split}:{e.line_no}: depth {e.gt!r} is {depth.shape} but '
                                f'image {e.image!r} is {(H, W)}')
            has_gt = True
        top, left, ch, cw = self.eval_crop(image, e)
        return {'image': to_tensor_image(image[top:top + ch, left:left + cw]),
                'depth': torch.from_numpy(depth[None]),
                'focal': float(e.focal), 'has_valid_depth': has_gt, 'path': e.image,
                'crop_top': int(top), 'crop_left': int(left)}
