"""Message header stamps as integer nanoseconds: from a message field and from raw CDR bytes.

Integer nanoseconds (``stamp_ns``) are the package's one time type: they compare exactly, where
float seconds lose the last digits of a 2011 epoch stamp. No ROS import: the node (rclpy
messages), the bag tools (``rosbags`` dataclasses) and the replay (raw CDR) share these.
"""
from __future__ import annotations

import struct

from .errors import InputError

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) or ROS 1 time -> integer ns."""
    sec = getattr(stamp, 'sec', None)
    if sec is None:  # ROS 1 time (``secs``, ``nsecs``), from bags built by other tools
        return int(stamp.secs) * NS_PER_S + int(stamp.nsecs)
    return int(sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """Integer ns -> ``(sec, nanosec)`` for a ``builtin_interfaces/Time``."""
    return divmod(int(stamp_ns), NS_PER_S)


def cdr_stamp_ns(raw: bytes) -> int:
    """``header.stamp`` of a CDR-serialised message whose first field is a ``std_msgs/Header``.

    Reads 4 bytes of encapsulation (byte 1: 1 = little endian), then ``int32 sec`` and
    ``uint32 nanosec``; no deserialisation. Image, CameraInfo and PointCloud2 all qualify.

    Raises:
        InputError: fewer than 12 bytes.
    """
    if len(raw) < 12:
        raise InputError(f'CDR message of {len(raw)} B is too short to hold a header stamp')
    sec, nsec = struct.unpack_from('<iI' if raw[1] == 1 else '>iI', raw, 4)
    return sec * NS_PER_S + nsec


__all__ = ['NS_PER_S', 'stamp_to_ns', 'ns_to_sec_nanosec', 'cdr_stamp_ns']
