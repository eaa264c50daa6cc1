"""Synthetic street scenes written in the KITTI raw + annotated-depth layout.

``generate_dataset(out_dir, drives, frames, seed, width, height, test_drives)`` (and the
``urcdc-synth`` command) renders procedural streets (road with lane markings, sidewalks,
building facades with windows, cars, poles, trees, sky) by analytic ray casting and writes::

    OUT/
      raw/                                  # = KITTI raw; the loaders' data_path
        DATE/                               # DATE = 2011_09_26 by default
          calib_cam_to_cam.txt              # KITTI's intrinsics scaled to W x H
          calib_velo_to_cam.txt             # KITTI's Velodyne mounting (T_cam_velo)
          calib_imu_to_velo.txt
          DATE_drive_XXXX_sync/             # XXXX = 0001, 0002, ...
            image_02/data/0000000000.png    # RGB uint8, W x H (default 1242 x 375)
            image_02/timestamps.txt         # 2011-09-26 13:02:25.964389445, ~9.65 Hz
            image_03/data/0000000000.png    # the right colour camera (P_rect_03, 0.53 m)
            image_03/timestamps.txt         # triggered with image_02: the same stamps
            velodyne_points/data/0000000000.bin   # float32 (N, 4): x, y, z [m], intensity
            velodyne_points/timestamps.txt  # (+ timestamps_start.txt, timestamps_end.txt)
            dense_depth/image_02/0000000000.png   # NOT in KITTI: exact dense z-depth
            oxts/data/0000000000.txt        # KITTI OXTS line: the exact vehicle pose
            oxts/timestamps.txt             # = the camera stamps
      depth_annotated/                      # = KITTI depth annotated; the loaders' gt_path
        DATE_drive_XXXX_sync/proj_depth/groundtruth/image_02/0000000000.png
      splits/synthetic_train.txt            # Eigen-format lines (the last K drives are in
      splits/synthetic_test.txt             #   synthetic_test.txt)
      synthetic_info.json                   # the DatasetInfo fields and generator settings

Depth PNGs are uint16 metres x 256 with 0 = no data. The annotated GT is the single LiDAR sweep
of that frame projected into image_02 (``kitti.calib.velodyne_to_depth``; sparser than KITTI's
11-frame accumulation). ``dense_depth`` is the exact per-pixel z-depth of the rendered image
(0 = sky or beyond 255.99 m), an extra for oracle tests. Split lines read
``DATE/DRIVE/image_02/data/N.png DRIVE/proj_depth/groundtruth/image_02/N.png FX`` with FX the
focal length in pixels (721.5377 at full size).

Scene frame: the camera is 1.65 m above a flat road, looks along the road and moves forward
6-12 m/s with a slight sideways sway, never rotating; the LiDAR sits at KITTI's mounting relative
to it (64 beams, +2 deg to -24.8 deg, 0.2 deg azimuth steps at full size, 120 m range). Output is
a deterministic function of (seed, drives, frames, width, height).
"""
from .writer import DatasetInfo, encode_depth_png, generate_dataset

__all__ = ['DatasetInfo', 'generate_dataset', 'encode_depth_png']
