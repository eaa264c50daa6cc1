"""`colcon build` of the package in a fresh workspace installs what ROS 2 tooling looks for.

``ros2 run`` finds executables in ``lib/<package>``, ``ros2 launch`` finds launch files in
``share/<package>/launch``, and the ament index marker makes the package discoverable.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = {'.git', '.venv', 'build', 'install', 'log', 'demo_out', 'bench_out', 'runs', 'data',
        '__pycache__', '.pytest_cache'}

pytestmark = pytest.mark.slow


def _colcon() -> list[str]:
    exe = shutil.which('colcon', path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip('colcon is not installed (requirements/dev.txt: colcon-common-extensions)')
    return [exe]


def test_colcon_build_installs_executable_launch_config_and_index_marker(tmp_path):
    colcon = _colcon()
    src = tmp_path / 'ws' / 'src' / 'urcdc_depth_ros'
    shutil.copytree(REPO, src, ignore=lambda d, names: [
        n for n in names if n in SKIP or n.endswith('.egg-info')])
    ws = tmp_path / 'ws'
    proc = subprocess.run(colcon + ['build', '--packages-select', 'urcdc_depth_ros'], cwd=ws,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = ws / 'install' / 'urcdc_depth_ros'
    share = prefix / 'share' / 'urcdc_depth_ros'
    for rel in ('launch/depth.launch.py', 'config/depth.yaml',
                'config/depth_generic_camera.yaml', 'config/train_kitti_eigen.yaml',
                'package.xml'):
        assert (share / rel).is_file(), rel
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
            / 'urcdc_depth_ros').is_file()
    for exe in ('depth_node', 'urcdc-train', 'urcdc-export', 'urcdc-bag-eval'):
        path = prefix / 'lib' / 'urcdc_depth_ros' / exe
        assert path.is_file() and os.access(path, os.X_OK), exe
    site = list(prefix.glob('lib/python3*/site-packages'))
    assert site and (site[0] / 'urcdc_depth_ros' / 'node.py').is_file()
    assert (site[0] / 'urcdc_training' / 'splits' / 'eigen_test_files_with_gt.txt').is_file()
