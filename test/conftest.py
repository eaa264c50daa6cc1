"""Suite-wide set-up: resource markers skip cleanly, DDS stays on loopback, threads stay few."""
from __future__ import annotations

import importlib.util
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # test/fixtures importable as `fixtures`

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
# One DDS domain per test session, so parallel runs on one machine never hear each other.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault('OMP_NUM_THREADS', '2')


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    if not _has('torch'):
        return False
    import torch
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """Skip resource-marked tests with the reason, instead of failing on a missing import."""
    skips = {
        'tensorrt': (not (_has('tensorrt') and _has('pycuda')),
                     'needs the TensorRT Python API and pycuda (a Jetson or a TensorRT install)'),
        'gpu': (not _cuda_available(), 'needs a CUDA GPU'),
        'ros': (not _has('rclpy'), 'needs rclpy and the ROS 2 message packages'),
    }
    for item in items:
        for marker, (skip, why) in skips.items():
            if skip and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))
