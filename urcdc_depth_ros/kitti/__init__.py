"""KITTI raw in one place: calibration files, the raw-drive reader and the drive -> bag writer.

* :mod:`.calib` reads and writes KITTI's ``calib_*.txt`` (:class:`~.calib.KittiCalib`).
* :mod:`.raw` reads a KITTI raw drive (frames, UTC stamps, Velodyne scans).
* :mod:`.to_bag` writes such a drive into a rosbag2 (``urcdc-kitti2bag``).

Only :mod:`.to_bag` needs ``rosbags``, and imports it when a bag is written.
"""
