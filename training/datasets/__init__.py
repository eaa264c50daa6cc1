"""Depth data sets behind one interface: ``build_dataset(DataConfig, mode)``.

``DataConfig.dataset`` picks the loader: ``'kitti'`` (KITTI Eigen, KITTI official benchmark
lists, and the synthetic set written by ``urcdc_training.synthetic``) or ``'nyu'``
(NYU-Depth-v2). Modes ``'train'`` / ``'eval'`` / ``'test'``; the sample dict keys are listed
in :mod:`urcdc_training.datasets.base`.
"""
from __future__ import annotations

import os

from torch.utils.data import Dataset

from urcdc_depth_ros.errors import ConfigError

from .base import MODES, DataConfig, DepthDataset, SplitEntry, parse_split
from .kitti import KittiDataset
from .nyu import NyuDataset

DATASET_CLASSES = {'kitti': KittiDataset, 'nyu': NyuDataset}
SPLITS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'splits')


def split_path(name: str) -> str:
    """Absolute path of a bundled split list, e.g. ``'eigen_test_files_with_gt.txt'``."""
    return os.path.join(SPLITS_DIR, name)


def build_dataset(cfg: DataConfig, mode: str) -> Dataset:
    """The torch Dataset for ``cfg.dataset`` in ``mode`` ('train' | 'eval' | 'test')."""
    if mode not in MODES:
        raise ConfigError(f'mode={mode!r} is not one of {list(MODES)}')
    try:
        cls = DATASET_CLASSES[cfg.dataset]
    except KeyError:
        raise ConfigError(f'dataset={cfg.dataset!r} is not one of '
                          f'{sorted(DATASET_CLASSES)}') from None
    return cls(cfg, mode)


__all__ = ['DataConfig', 'DepthDataset', 'KittiDataset', 'NyuDataset', 'SplitEntry',
           'build_dataset', 'parse_split', 'split_path', 'DATASET_CLASSES', 'SPLITS_DIR']
