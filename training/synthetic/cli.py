"""``urcdc-synth``: write a synthetic KITTI-format data set (layout: see the package doc)."""
from __future__ import annotations

import argparse
import logging
import time

from urcdc_depth_ros.errors import UrcdcDepthError

from .writer import DEFAULT_DATE, generate_dataset

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``urcdc-synth``."""
    p = argparse.ArgumentParser(
        prog='urcdc-synth',
        description='Generate synthetic street drives in the KITTI raw + annotated depth layout '
                    '(images, LiDAR scans, calibration, timestamps, GT depth, split files).')
    p.add_argument('--out', required=True, help='output root folder')
    p.add_argument('--drives', type=int, default=2, help='number of drives (default 2)')
    p.add_argument('--frames', type=int, default=10, help='frames per drive (default 10)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    p.add_argument('--width', type=int, default=1242, help='image width, px (default 1242)')
    p.add_argument('--height', type=int, default=375, help='image height, px (default 375)')
    p.add_argument('--test-drives', type=int, default=1,
                   help='the last K drives form synthetic_test.txt (default 1)')
    p.add_argument('--date', default=DEFAULT_DATE, help=f'date folder (default {DEFAULT_DATE})')
    p.add_argument('--lidar-azimuth-step', type=float, default=None,
                   help='LiDAR azimuth step, degrees (default 0.2 at full width, coarser '
                        'for smaller images)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a bad option)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    start = time.perf_counter()
    try:
        info = generate_dataset(args.out, drives=args.drives, frames=args.frames, seed=args.seed,
                                width=args.width, height=args.height,
                                test_drives=args.test_drives, date=args.date,
                                lidar_azimuth_step_deg=args.lidar_azimuth_step,
                                progress=not args.quiet)
    except UrcdcDepthError as exc:
        logger.error('%s', exc)
        return 2
    n = args.drives * args.frames
    elapsed = time.perf_counter() - start
    logger.info('%d frames in %.1f s (%.2f frames/s); train split %s, test split %s', n, elapsed,
                n / max(elapsed, 1e-9), info.train_split, info.test_split)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
