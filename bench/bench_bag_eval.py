"""Bag evaluation overhead besides the model, per full KITTI frame (375 x 1242).

    python bench/bench_bag_eval.py [--quick] [--frames N]

A synthetic drive (``urcdc_training.synthetic``, ~115k LiDAR points per scan like a
HDL-64E) is written to an MCAP bag with ``urcdc-kitti2bag``; the generator's dense depth
stands in for the node's output (``/depth`` + ``/uncertainty`` 32FC1). ``evaluate_bag`` in
topic mode then reports, per frame: bag read + CDR decode + message -> numpy, LiDAR -> TF ->
z-buffered ground truth, and the metrics (nine metrics, pooling). Mode (a) adds
only the model's own time. Target: overhead <= 20 ms per frame. Markdown goes to stdout.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from urcdc_depth_ros.evaluation import bag_io, evaluate_bag  # noqa: E402
from urcdc_depth_ros.kitti.to_bag import CAMERA_FRAME, convert_drive  # noqa: E402
from urcdc_depth_ros.kitti.raw import KittiDrive  # noqa: E402
from urcdc_training.synthetic import generate_dataset  # noqa: E402

logger = logging.getLogger(__name__)
TARGET_MS = 20.0


def write_depth_bag(path: str, drive: KittiDrive, dense_paths: list[str]) -> None:
    """The node's outputs for every frame: dense depth (m) and 5 % uncertainty, 32FC1."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = bag_io.get_ros2_typestore()
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c_d = w.add_connection('/depth', bag_io.IMAGE_TYPE, typestore=ts)
        c_u = w.add_connection('/uncertainty', bag_io.IMAGE_TYPE, typestore=ts)
        c_i = w.add_connection('/depth/camera_info', bag_io.CAMERA_INFO_TYPE, typestore=ts)
        for i, p in enumerate(dense_paths):
            t = int(drive.image_stamps_ns[i])
            d = cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(np.float32) / 256.0
            d[d == 0] = np.nan
            h, wd = d.shape
            for conn, msg, typ in (
                    (c_d, bag_io.image_msg(ts, d, t, CAMERA_FRAME, '32FC1'), bag_io.IMAGE_TYPE),
                    (c_u, bag_io.image_msg(ts, 0.05 * d, t, CAMERA_FRAME, '32FC1'),
                     bag_io.IMAGE_TYPE),
                    (c_i, bag_io.camera_info_msg(ts, drive.calib.K, wd, h, t, CAMERA_FRAME),
                     bag_io.CAMERA_INFO_TYPE)):
                w.write(conn, t + 40_000_000, ts.serialize_cdr(msg, typ))


def main(argv=None) -> int:
    """Run the benchmark; markdown on stdout, progress on stderr."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='4 frames instead of 20')
    p.add_argument('--frames', type=int, default=None, help='frames to evaluate')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    frames = args.frames or (4 if args.quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        info = generate_dataset(os.path.join(tmp, 'synth'), drives=1, frames=frames, seed=0,
                                test_drives=0)
        drive_dir = os.path.join(info.raw_path, info.date, info.drives[0])
        drive = KittiDrive(drive_dir)
        t0 = time.perf_counter()
        convert_drive(drive_dir, os.path.join(tmp, 'bag'), progress=False)
        convert_s = time.perf_counter() - t0
        dense = sorted(glob.glob(os.path.join(drive_dir, 'dense_depth', 'image_02', '*.png')))
        write_depth_bag(os.path.join(tmp, 'node'), drive, dense)
        n_points = int(np.mean([len(drive.read_scan(i)) for i in range(frames)]))
        bags = [os.path.join(tmp, 'bag'), os.path.join(tmp, 'node')]
        evaluate_bag(bags, None, depth_topic='/depth', uncertainty_topic='/uncertainty',
                     max_frames=1)  # warm-up: imports, first allocations
        res = evaluate_bag(bags, None, depth_topic='/depth', uncertainty_topic='/uncertainty')
        t0 = time.perf_counter()
        evaluate_bag(bags, os.path.join(tmp, 'report'), depth_topic='/depth',
                     uncertainty_topic='/uncertainty', n_panels=1)
        report_s = time.perf_counter() - t0 - res['wall_s']
    t = res['timings_ms']
    rows = [('bag read + decode (image/depth, uncertainty, cloud)', t['read']),
            ('LiDAR -> TF -> ground truth (z-buffer)', t['gt_projection']),
            ('metrics (9 metrics, pooling)', t['metrics']),
            ('**total overhead**', t['overhead_total'])]
    ok = t['overhead_total']['mean'] <= TARGET_MS
    lines = [f'### Bag evaluation overhead per frame ({info.width} x {info.height}, '
             f'{n_points} LiDAR points, {res["frames"]["used"]} frames, MCAP)', '',
             '| stage | mean (ms) | p50 (ms) | p95 (ms) |', '|---|---|---|---|']
    lines += [f'| {name} | {s["mean"]:.2f} | {s["p50"]:.2f} | {s["p95"]:.2f} |'
              for name, s in rows]
    lines += ['', f'Target <= {TARGET_MS:g} ms per frame besides the model: '
              f'**{"met" if ok else "missed"}**. Whole evaluation '
              f'{1e3 * res["wall_s"] / res["frames"]["used"]:.1f} ms/frame wall (two passes '
              f'over the bag); report figures and HTML once: {report_s:.2f} s; kitti2bag '
              f'{1e3 * convert_s / frames:.1f} ms/frame.', '']
    sys.stdout.write('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
