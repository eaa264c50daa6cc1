"""package.xml: well-formed format 3, ament_python, and declares what the node imports."""
import os
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _manifest():
    return ET.parse(os.path.join(ROOT, 'package.xml')).getroot()


def test_package_xml_is_format_3_ament_python_named_like_setup_py():
    root = _manifest()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'urcdc_depth_ros'
    assert root.find('export/build_type').text == 'ament_python'


def test_package_xml_exec_depends_cover_the_node_imports():
    deps = {e.text for e in _manifest().findall('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'sensor_msgs_py', 'cv_bridge', 'std_msgs',
                'diagnostic_msgs', 'lifecycle_msgs', 'launch_ros', 'python3-numpy',
                'python3-opencv'):
        assert dep in deps, f'package.xml lacks <exec_depend>{dep}</exec_depend>'


def test_package_xml_version_matches_setup_py():
    with open(os.path.join(ROOT, 'setup.py')) as f:
        assert f"version='{_manifest().findtext('version')}'" in f.read()


def test_changelog_is_ros_style_and_its_newest_release_is_the_package_version():
    with open(os.path.join(ROOT, 'CHANGELOG.rst')) as f:
        lines = f.read().splitlines()
    assert lines[1] == 'Changelog for package urcdc_depth_ros'
    releases = [lines[i].split()[0] for i in range(3, len(lines) - 1)
                if lines[i + 1].startswith('---') and lines[i] != 'Forthcoming']
    assert releases and releases[0] == _manifest().findtext('version')
