"""URCDC-Depth for ROS 2: monocular metric depth with per-pixel uncertainty.

The runtime package. ``model`` holds the network (torch), ``inference`` the backends
(torch / ONNX Runtime / TensorRT) and the ROS-free :class:`DepthEstimator`, ``node`` the ROS 2
shell, ``evaluation`` the rosbag tools. Only ``node`` and ``ros_io`` import rclpy; nothing here
imports the training package ``urcdc_training``.
"""

__version__ = '0.1.0'
__all__ = ['__version__']
