"""Licence and copyright: stated once, in LICENSE, and nowhere contradicted.

Source files carry no per-file header (the ROS ``ament_copyright`` convention is optional);
the copyright notice lives in LICENSE alone. This check keeps that decision true: package.xml
and setup.py name the same licence, any file that mentions a licence names a compatible one, and
every file "Adapted from" another project names that project's (MIT) licence, as README says.
"""
import os
import re
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ('urcdc_depth_ros', 'training', 'test', 'bench', 'launch')
SPDX = 'SPDX-' + 'License-Identifier'  # split, so this file does not match itself
LICENCE_LINE = re.compile(SPDX + r':\s*(\S+)|^#\s*' + 'Copy' + r'right\b.*', re.M)


def test_license_file_package_xml_and_setup_py_agree_on_mit():
    with open(os.path.join(ROOT, 'LICENSE')) as f:
        text = f.read()
    assert text.startswith('MIT License') and re.search(r'^Copyright \(c\) \d{4} ', text, re.M)
    manifest = ET.parse(os.path.join(ROOT, 'package.xml')).getroot()
    assert [e.text for e in manifest.findall('license')] == ['MIT']
    with open(os.path.join(ROOT, 'setup.py')) as f:
        assert "license='MIT'" in f.read()


def test_no_source_file_states_another_licence():
    offenders = []
    for top in SOURCES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding='utf-8') as f:
                    for m in LICENCE_LINE.finditer(f.read()):
                        spdx = m.group(1)
                        if (spdx and spdx != 'MIT') or (not spdx and 'MIT' not in m.group(0)):
                            offenders.append(f'{os.path.relpath(path, ROOT)}: {m.group(0)}')
    assert not offenders, offenders


def test_every_adapted_file_names_its_source_licence():
    """README: adapted parts keep their (MIT) notice in the file that adapts them."""
    unnamed = []
    for top in ('urcdc_depth_ros', 'training'):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in (n for n in files if n.endswith('.py')):
                path = os.path.join(dirpath, name)
                with open(path, encoding='utf-8') as f:
                    head = f.read(1500)
                m = re.search(r'Adapted from (.*?)(?:\n\n|""")', head, re.S)
                if m and 'MIT' not in m.group(1):
                    unnamed.append(os.path.relpath(path, ROOT))
    assert not unnamed, f'adapted without naming the licence: {unnamed}'
