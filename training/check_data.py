"""Data set checks behind ``urcdc-train --check-data``: report every problem at once.

``check_dataset(cfg)`` validates the options, parses the train and eval split files (bad lines
are listed, not fatal), and checks that every referenced file exists and starts like a PNG/JPEG
(``decode=True`` also decodes each file, which reads the whole data set). Eval frames without
GT are normal for KITTI Eigen (45 of 697); only a split where *no* GT file exists is reported.
"""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from urcdc_depth_ros.errors import ConfigError

from .datasets import DATASET_CLASSES, DataConfig
from .datasets.base import parse_split

logger = logging.getLogger(__name__)

_SIGNATURES = (b'\x89PNG\r\n\x1a\n', b'\xff\xd8\xff')


def _file_problem(path: str, what: str, where: str, decode: bool, depth: bool) -> str | None:
    if not os.path.isfile(path):
        return f'{where}: {what} {path!r} does not exist'
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
    except OSError as exc:
        return f'{where}: {what} {path!r} cannot be read ({exc})'
    if not head.startswith(_SIGNATURES):
        return f'{where}: {what} {path!r} is not a PNG or JPEG file'
    if decode:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            return f'{where}: {what} {path!r} cannot be decoded'
        if depth and (img.dtype != np.uint16 or img.ndim != 2):
            return f'{where}: {what} {path!r} is {img.dtype} {img.shape}; expected 16-bit PNG'
    return None


def check_dataset(cfg: DataConfig, decode: bool = False,
                  modes: tuple[str, ...] = ('train', 'eval')) -> list[str]:
    """All problems found in ``cfg``'s data (empty list = fine).

    Args:
        decode: also decode every image and depth PNG (slow on the full data sets).
        modes: which splits to check: 'train' (filenames_file) and/or 'eval'
            (filenames_file_eval; skipped when not set).
    Returns:
        One message per problem, each naming the split file, line and path.
    """
    problems: list[str] = []
    try:
        cfg.validate()
    except ConfigError as exc:
        problems.append(f'config: {exc}')
    cls = DATASET_CLASSES.get(cfg.dataset)
    if cls is None:
        return problems
    focal = cfg.focal_default or cls.default_focal
    for mode in modes:
        if mode == 'train':
            split, data_path, gt_path = cfg.filenames_file, cfg.data_path, cfg.gt_path
        else:
            split = cfg.filenames_file_eval
            if not split:
                continue
            data_path = cfg.data_path_eval or cfg.data_path
            gt_path = cfg.gt_path_eval or cfg.gt_path
        errors: list[str] = []
        entries = parse_split(split, focal, require_gt=mode == 'train', errors=errors)
        problems.extend(errors)
        gt_missing = gt_listed = 0
        for e in entries:
            where = f'{e.split}:{e.line_no}'
            p = _file_problem(os.path.join(data_path, e.image), 'image', where, decode, False)
            if p:
                problems.append(p)
            if e.gt is None:
                continue
            gt_listed += 1
            gt = os.path.join(gt_path, e.gt)
            if mode != 'train' and not os.path.isfile(gt):
                gt_missing += 1  # frames without GT are skipped by the evaluation
                continue
            p = _file_problem(gt, 'depth', where, decode, True)
            if p:
                problems.append(p)
        if gt_listed and gt_missing == gt_listed:
            problems.append(f'{split}: none of the {gt_listed} GT files exist under gt_path '
                            f'{gt_path!r}; fix gt_path / gt_path_eval')
        elif gt_missing:
            logger.info('%s: %d of %d frames have no GT file (skipped in evaluation)', split,
                        gt_missing, gt_listed)
    return problems
