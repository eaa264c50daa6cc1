"""Run every benchmark script (bench/bench_*.py) in turn and collect their markdown tables.

Usage: ``make bench`` or ``python bench/run_all.py [--quick] [--only model,inference] [--out F]``.
Each script runs in its own process (clean peak-memory figures, no shared thread pools) and
prints a markdown section; this collects them under a header giving machine and date, prints
the lot and writes it to ``--out`` (default ``bench_out/benchmarks.md``), for copying into
``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def machine_line() -> str:
    """One line naming the CPU, core count, Python and (when present) torch and the GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [f'{cpu}, {os.cpu_count()} cores', f'Python {platform.python_version()}']
    try:
        import torch
        parts.append(f'torch {torch.__version__}')
        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return '; '.join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='short runs of every benchmark')
    ap.add_argument('--only', default='', help='comma-separated names, e.g. model,inference')
    ap.add_argument('--out', default=os.path.join('bench_out', 'benchmarks.md'))
    args = ap.parse_args(argv)
    scripts = sorted(glob.glob(os.path.join(HERE, 'bench_*.py')))
    if args.only:
        wanted = {f'bench_{n.strip()}.py' for n in args.only.split(',')}
        scripts = [s for s in scripts if os.path.basename(s) in wanted]
    header = (f'# Benchmarks ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n'
              f'Machine: {machine_line()}\n')
    sections, failed = [header], []
    for script in scripts:
        cmd = [sys.executable, script] + (['--quick'] if args.quick else [])
        sys.stderr.write(f'== {" ".join(cmd)}\n')
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sections.append(f'\n<!-- {os.path.basename(script)} -->\n{proc.stdout.strip()}\n')
        if proc.returncode:
            failed.append(os.path.basename(script))
            sections.append(f'\n**{os.path.basename(script)} failed** (exit {proc.returncode}):'
                            f'\n```\n{proc.stderr.strip()[-2000:]}\n```\n')
    text = ''.join(sections)
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(text)
    sys.stderr.write(f'written to {args.out}\n')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
