"""URCDC-Depth for ROS 2: monocular metric depth with per-pixel uncertainty.

The runtime package (docs/architecture.md has one line per module):

* :mod:`.estimator` ``DepthEstimator``, camera image + K -> depth (m) + uncertainty, no ROS;
  it runs :mod:`.preprocessing`, a backend and :mod:`.postprocessing` (with :mod:`.tta`).
* :mod:`.inference` the backends behind one Protocol (torch, ONNX Runtime, TensorRT) and the
  TensorRT engine cache; :mod:`.model` the network (torch).
* :mod:`.node` the ROS 2 lifecycle node, with :mod:`.ros_io` (messages), :mod:`.pointcloud`,
  :mod:`.diagnostics`, :mod:`.frame_buffer` and :mod:`.cameras` (camera rigs: names,
  per-camera overrides and topics).
* :mod:`.evaluation` the rosbag tools (``urcdc-bag-eval``, replay through the node, report);
  :mod:`.kitti` KITTI calibration, raw drives and ``urcdc-kitti2bag``.
* :mod:`.geometry` intrinsics (validate, CameraInfo rule, resize, crop; one pixel-centre
  convention) and the LiDAR -> depth projection; :mod:`.encodings` the one image encoding
  table and Image buffer <-> numpy conversion; :mod:`.stamps` header stamps as integer ns.
* :mod:`.config` every default, :mod:`.errors` every exception, :mod:`.metrics` the one
  metrics implementation, :mod:`.calibration` the uncertainty calibration (head x depth ->
  expected |error| m), :mod:`.progress` progress bars that stay readable in logs.

Only ``node`` and ``ros_io`` import rclpy (and ``evaluation.replay``, inside its functions);
only the torch backend and ``model`` import torch; nothing here imports ``urcdc_training``.
"""

__version__ = '0.1.0'
__all__ = ['__version__']
