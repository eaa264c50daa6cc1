"""Docstrings: pydocstyle (pep257 convention, setup.cfg) over the runtime and training packages."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pydocstyle_finds_no_problem():
    proc = subprocess.run([sys.executable, '-m', 'pydocstyle', 'urcdc_depth_ros', 'training'],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f'pydocstyle problems:\n{proc.stdout}{proc.stderr}'
