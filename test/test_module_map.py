"""The package maps stay true: the package docstring and docs/architecture.md name every module."""
import os
import re

import urcdc_depth_ros

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, 'urcdc_depth_ros')
CODE_INITS = ('inference/__init__.py', 'training/datasets/__init__.py')


def _top_level_modules():
    names = set()
    for entry in os.listdir(PKG):
        path = os.path.join(PKG, entry)
        if entry.endswith('.py') and entry != '__init__.py':
            names.add(entry[:-3])
        elif os.path.isfile(os.path.join(path, '__init__.py')):
            names.add(entry)
    return names


def test_package_docstring_names_every_top_level_module_and_only_real_ones():
    named = set(re.findall(r':mod:`\.(\w+)`', urcdc_depth_ros.__doc__))
    assert named == _top_level_modules()


def test_architecture_module_map_has_a_line_for_every_module():
    with open(os.path.join(ROOT, 'docs', 'architecture.md'), encoding='utf-8') as f:
        section = f.read().split('## Module map', 1)[1]
    rows = [line for line in section.splitlines() if line.startswith('| `')]
    missing = []
    for top in ('urcdc_depth_ros', 'training'):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                rel = rel.replace('urcdc_depth_ros/', '', 1)
                parent = os.path.basename(dirpath)
                if not name.endswith('.py') or (name == '__init__.py' and rel not in CODE_INITS):
                    continue  # other __init__ files hold a docstring and re-exports only
                hit = any(f'`{rel}`' in r or (name in r and f'{parent}/' in r) for r in rows)
                if not hit:
                    missing.append(rel)
    assert not missing, f'docs/architecture.md "Module map" lacks {missing}'
