"""Launch the URCDC-Depth node: ``ros2 launch urcdc_depth_ros depth.launch.py model_path:=...``.

Arguments: namespace, params_file (default: the installed config/depth.yaml), image_topic,
camera_info_topic, and backend, model_path, use_compressed, cameras (comma-separated names, e.g.
``cameras:=cam_02,cam_03``), which override the params file only when given; rviz (``true``
also starts ``rviz2`` with the installed config/depth.rviz, when rviz2 is installed);
large_data (``true`` runs the node with the installed config/fastdds_large_data.xml as its
Fast DDS profile: shared memory with 64 MB segments, so clouds and depth images reach
processes on the same host whole instead of as UDP fragments; rmw_fastrtps_cpp only). The node's
relative topics ``image``, ``image/compressed`` and ``camera_info`` are remapped onto the given
topics; outputs (``depth``, ``uncertainty``, ``depth/camera_info``, ``points``, ...) appear
under the namespace. A rig's topics are per camera (``<cam>/image``, ``<cam>/depth``, ...) and
are not remapped: give each camera driver those names, or remap in your own launch file.
"""
import os
import shutil

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'urcdc_depth_ros'
#: launch arguments that override the params file, and only when given (empty = the file's)
PARAM_ARGS = ('backend', 'model_path', 'use_compressed', 'cameras')
RVIZ_CONFIG = 'depth.rviz'
DDS_PROFILE = 'fastdds_large_data.xml'


def _typed(name: str, value: str):
    """A launch argument's string as the node declares the parameter."""
    if name == 'use_compressed':
        return value.strip().lower() == 'true'
    if name == 'cameras':
        return [c.strip() for c in value.split(',') if c.strip()]
    return value


def _param_overrides(context) -> dict:
    """The PARAM_ARGS given on the command line, typed as the node declares them."""
    out = {}
    for name in PARAM_ARGS:
        value = context.launch_configurations.get(name, '')
        if value != '':
            out[name] = _typed(name, value)
    return out


def _rviz(context, config_dir: str) -> list:
    """``rviz2 -d depth.rviz`` when ``rviz:=true`` and rviz2 is installed, else a note."""
    if context.launch_configurations.get('rviz', 'false').strip().lower() != 'true':
        return []
    if shutil.which('rviz2') is None:
        return [LogInfo(msg='rviz:=true but rviz2 is not installed (apt install '
                            'ros-$ROS_DISTRO-rviz2); starting the node alone')]
    return [Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                 namespace=LaunchConfiguration('namespace'),
                 arguments=['-d', os.path.join(config_dir, RVIZ_CONFIG)])]


def _dds_env(context, config_dir: str) -> dict:
    """The node's extra environment: the large-data Fast DDS profile when ``large_data:=true``."""
    if context.launch_configurations.get('large_data', 'false').strip().lower() != 'true':
        return {}
    return {'FASTDDS_DEFAULT_PROFILES_FILE': os.path.join(config_dir, DDS_PROFILE)}


def _node(context):
    image_topic = LaunchConfiguration('image_topic')
    config_dir = os.path.join(get_package_share_directory(PACKAGE), 'config')
    return _rviz(context, config_dir) + [Node(
        package=PACKAGE,
        executable='depth_node',
        name='depth_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        additional_env=_dds_env(context, config_dir),
        parameters=[LaunchConfiguration('params_file'), _param_overrides(context)],
        remappings=[
            ('image', image_topic),
            ('image/compressed', [image_topic, '/compressed']),
            ('camera_info', LaunchConfiguration('camera_info_topic')),
        ],
    )]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the lifecycle depth node (autostart on by default)."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', 'depth.yaml')
    args = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its outputs'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML with depth_node ros__parameters'),
        DeclareLaunchArgument('image_topic', default_value='image_raw',
                              description='camera image (sensor_msgs/Image)'),
        DeclareLaunchArgument('camera_info_topic', default_value='camera_info',
                              description='camera intrinsics (sensor_msgs/CameraInfo)'),
        DeclareLaunchArgument('backend', default_value='',
                              description='onnxruntime | openvino | tensorrt | torch | auto; '
                                          'empty = the params file\'s'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='.onnx, .engine or checkpoint file; empty = the '
                                          'params file\'s'),
        DeclareLaunchArgument('use_compressed', default_value='',
                              description='true: subscribe to <image_topic>/compressed; '
                                          'empty = the params file\'s'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='comma-separated camera names of a rig (one node, '
                                          'topics <cam>/...); empty = the params file\'s'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='true: also start rviz2 with config/depth.rviz'),
        DeclareLaunchArgument('large_data', default_value='false',
                              description='true: Fast DDS profile config/' + DDS_PROFILE
                                          + ' (whole large messages over shared memory)'),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
