"""Code style: flake8 (ament_flake8's settings: 99 columns) over every Python file we ship."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREES = ['urcdc_depth_ros', 'training', 'test', 'launch', 'bench', 'setup.py']


def test_flake8_finds_no_problem():
    proc = subprocess.run([sys.executable, '-m', 'flake8', *TREES], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f'flake8 problems:\n{proc.stdout}{proc.stderr}'
