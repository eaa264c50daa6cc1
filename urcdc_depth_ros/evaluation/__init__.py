"""Offline evaluation against LiDAR ground truth, without a ROS install.

* :mod:`.bag_io` holds the message <-> numpy conversions and the small TF tree.
* :mod:`.lidar_gt` projects LiDAR clouds into a camera to make sparse ground truth.
* :mod:`.bag_topics` opens bags and resolves which topics an evaluation reads.
* :mod:`.bag_eval` evaluates an estimator or a recorded depth topic in named steps (pass 1,
  frame matching, pass 2 per shard of frames, summary); :mod:`.bag_eval_cli` is
  ``urcdc-bag-eval``.
* :mod:`.report` writes metrics.json, per_frame.csv, report.md/html and the figures.
* :mod:`.replay` plays a bag through the real ROS node and records its outputs (rclpy).

Only :mod:`.replay` imports rclpy, and only when it is used. KITTI drives and the KITTI -> bag
converter live in :mod:`urcdc_depth_ros.kitti`.
"""
from .bag_eval import evaluate_bag

__all__ = ['evaluate_bag']
