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
