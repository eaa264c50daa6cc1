"""Offline evaluation against LiDAR ground truth, without a ROS install.

* :mod:`.bag_io` holds the message <-> numpy conversions and the small TF tree.
* :mod:`.lidar_gt` projects LiDAR clouds into a camera to make sparse ground truth.
* :mod:`.bag_eval` evaluates an estimator or a recorded depth topic (``urcdc-bag-eval``).
* :mod:`.report` writes metrics.json, per_frame.csv, report.md/html and the figures.
* :mod:`.replay` plays a bag through the real ROS node and records its outputs (rclpy).

Only :mod:`.replay` imports rclpy, and only when it is used. KITTI drives and the KITTI -> bag
converter live in :mod:`urcdc_depth_ros.kitti`.
"""
from .bag_eval import evaluate_bag

__all__ = ['evaluate_bag']
