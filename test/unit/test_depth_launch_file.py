"""launch/depth.launch.py agrees with setup.py, setup.cfg, config/ and the node: checked
statically (ast, no launch import) everywhere, and run for real where launch_ros imports.
"""
from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO, 'launch', 'depth.launch.py')
ARGS = {'namespace', 'params_file', 'image_topic', 'camera_info_topic', 'backend',
        'model_path', 'use_compressed', 'cameras', 'rviz', 'large_data'}


def _tree(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def _kw(call, key):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    raise AssertionError(f'{key!r} missing')


def _consts(node):
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]


def _assigns(node, name: str) -> bool:
    """``node`` is an assignment ``name = ...``."""
    return isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == name


def _param_args(tree) -> set:
    (node,) = [n for n in ast.walk(tree) if _assigns(n, 'PARAM_ARGS')]
    return set(_consts(node.value))


def _launch_function(name: str):
    """``name`` from the launch file, compiled alone (launch itself does not import here)."""
    tree = _tree(LAUNCH)

    def wanted(n) -> bool:
        if isinstance(n, ast.Import):  # os, shutil; not launch (absent here)
            return True
        if isinstance(n, ast.FunctionDef):
            return n.name in (name, '_typed')
        return _assigns(n, 'PARAM_ARGS') or _assigns(n, 'RVIZ_CONFIG') \
            or _assigns(n, 'DDS_PROFILE')
    keep = [n for n in tree.body if wanted(n)]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), LAUNCH, 'exec'), namespace)
    return namespace[name]


def test_launch_declares_exactly_the_documented_arguments():
    tree = _tree(LAUNCH)
    declared = {c.args[0].value for c in _calls(tree, 'DeclareLaunchArgument')}
    assert declared == ARGS
    used = {c.args[0].value for c in _calls(tree, 'LaunchConfiguration')}
    read = {c.args[0].value for c in _calls(tree, 'get')
            if c.args and isinstance(c.args[0], ast.Constant)}  # launch_configurations.get
    assert used | read | _param_args(tree) == ARGS


def test_only_the_parameter_arguments_given_override_the_params_file():
    from types import SimpleNamespace
    overrides = _launch_function('_param_overrides')

    def ctx(**given):
        return SimpleNamespace(launch_configurations={
            'backend': '', 'model_path': '', 'use_compressed': '', 'namespace': 'x', **given})
    assert overrides(ctx()) == {}  # nothing given: the params file decides
    assert overrides(ctx(model_path='/m.onnx')) == {'model_path': '/m.onnx'}
    assert overrides(ctx(backend='tensorrt', use_compressed='True')) == {
        'backend': 'tensorrt', 'use_compressed': True}
    assert overrides(ctx(use_compressed='false')) == {'use_compressed': False}
    assert overrides(ctx(cameras='cam_02, cam_03')) == {'cameras': ['cam_02', 'cam_03']}


def test_rviz_starts_only_when_asked_and_installed(monkeypatch):
    import shutil
    from types import SimpleNamespace
    rviz = _launch_function('_rviz')

    def ctx(value):
        return SimpleNamespace(launch_configurations={'rviz': value})
    assert rviz(ctx('false'), '/cfg') == []
    monkeypatch.setattr(shutil, 'which', lambda name: None)
    with pytest.raises(NameError, match='LogInfo'):  # the note needs launch, absent here
        rviz(ctx('true'), '/cfg')
    monkeypatch.setattr(shutil, 'which', lambda name: '/opt/ros/bin/rviz2')
    with pytest.raises(NameError, match='Node'):  # would start rviz2 (launch_ros absent)
        rviz(ctx('True'), '/cfg')
    tree = _tree(LAUNCH)
    rviz_node = [c for c in _calls(tree, 'Node') if 'rviz2' in _consts(c)]
    assert rviz_node and '-d' in _consts(rviz_node[0])
    assert os.path.isfile(os.path.join(REPO, 'config', 'depth.rviz'))
    assert 'config/*.rviz' in _consts(_tree(os.path.join(REPO, 'setup.py')))


def test_large_data_sets_the_installed_fastdds_profile_for_the_node_only_when_asked():
    import xml.etree.ElementTree as ET
    from types import SimpleNamespace
    dds_env = _launch_function('_dds_env')

    def ctx(value):
        return SimpleNamespace(launch_configurations={'large_data': value})
    assert dds_env(ctx('false'), '/cfg') == {}
    env = dds_env(ctx('True'), '/share/urcdc_depth_ros/config')
    (path,) = env.values()
    assert list(env) == ['FASTDDS_DEFAULT_PROFILES_FILE']
    name = os.path.basename(path)
    assert os.path.dirname(path) == '/share/urcdc_depth_ros/config'
    (node,) = [c for c in _calls(_tree(LAUNCH), 'Node') if 'rviz2' not in _consts(c)]
    assert getattr(_kw(node, 'additional_env').func, 'id', '') == '_dds_env'
    assert 'config/*.xml' in _consts(_tree(os.path.join(REPO, 'setup.py')))  # installed
    ns = {'d': 'http://www.eprosima.com'}
    root = ET.parse(os.path.join(REPO, 'config', name)).getroot()
    shm = [t for t in root.iterfind('.//d:transport_descriptor', ns)
           if t.findtext('d:type', namespaces=ns) == 'SHM']
    assert shm and int(shm[0].findtext('d:maxMessageSize', namespaces=ns)) >= 16 << 20
    assert root.find('.//d:participant', ns).get('is_default_profile') == 'true'


def test_launch_runs_the_installed_executable_with_the_node_name_of_the_params_files():
    tree = _tree(LAUNCH)
    (node,) = [c for c in _calls(tree, 'Node') if 'rviz2' not in _consts(c)]
    package = {n.value.value for n in ast.walk(tree) if _assigns(n, 'PACKAGE')}
    setup_tree = _tree(os.path.join(REPO, 'setup.py'))
    setup_pkg = {n.value.value for n in ast.walk(setup_tree) if _assigns(n, 'PACKAGE')}
    assert package == setup_pkg == {'urcdc_depth_ros'}
    assert isinstance(_kw(node, 'package'), ast.Name)  # PACKAGE
    executable = _kw(node, 'executable').value
    scripts = [s for s in _consts(setup_tree) if isinstance(s, str) and ' = ' in s]
    assert f'{executable} = urcdc_depth_ros.node:main' in scripts
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, 'setup.cfg'))
    assert cfg['install']['install_scripts'] == '$base/lib/urcdc_depth_ros'  # ros2 run finds it
    name = _kw(node, 'name').value
    import yaml
    for yml in ('depth.yaml', 'depth_generic_camera.yaml', 'depth_surround.yaml'):
        with open(os.path.join(REPO, 'config', yml)) as f:
            (key,) = yaml.safe_load(f)
        assert key.rsplit('/', 1)[-1] == name, yml


def test_launch_parameters_and_remaps_name_real_node_parameters_and_topics():
    from urcdc_depth_ros.config import NodeConfig
    tree = _tree(LAUNCH)
    (node,) = [c for c in _calls(tree, 'Node') if 'rviz2' not in _consts(c)]
    params = _kw(node, 'parameters')
    assert [getattr(e.func, 'id', '') for e in params.elts] == [
        'LaunchConfiguration', '_param_overrides']  # the file first, given arguments over it
    keys = _param_args(tree)
    assert keys <= set(NodeConfig.__dataclass_fields__) and keys == {
        'backend', 'model_path', 'use_compressed', 'cameras'}
    default_params = [c for c in _calls(tree, 'join') if 'depth.yaml' in _consts(c)]
    assert default_params and 'config' in _consts(default_params[0])
    assert os.path.isfile(os.path.join(REPO, 'config', 'depth.yaml'))
    setup_consts = _consts(_tree(os.path.join(REPO, 'setup.py')))
    assert 'config/*.yaml' in setup_consts and 'launch/*.launch.py' in setup_consts
    remapped = {t.elts[0].value for t in _kw(node, 'remappings').elts}
    node_strings = set(_consts(_tree(os.path.join(REPO, 'urcdc_depth_ros', 'node.py'))))
    assert remapped == {'image', 'image/compressed', 'camera_info'}
    assert remapped <= node_strings  # the node subscribes to exactly these relative names


@pytest.mark.ros
@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None
                    or importlib.util.find_spec('ament_index_python') is None,
                    reason='needs launch_ros and an installed urcdc_depth_ros (a ROS install)')
def test_launch_file_starts_the_node_under_its_namespace(tmp_path):  # pragma: no cover
    import rclpy
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from fixtures.models import make_onnx_model
    model, _, _ = make_onnx_model(str(tmp_path))
    ls = LaunchService()
    ls.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(LAUNCH),
        launch_arguments={'namespace': 'launch_ut', 'model_path': model}.items())]))
    thread = threading.Thread(target=ls.run, daemon=True)
    thread.start()
    rclpy.init()
    probe = rclpy.create_node('launch_probe')
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ('depth_node', '/launch_ut') in probe.get_node_names_and_namespaces() and \
                    probe.count_publishers('/launch_ut/depth') == 1:
                break
            time.sleep(0.2)
        assert probe.count_publishers('/launch_ut/depth') == 1
        assert probe.count_subscribers('/launch_ut/image_raw') == 1
    finally:
        probe.destroy_node()
        rclpy.try_shutdown()
        ls.shutdown()
        thread.join(30)
