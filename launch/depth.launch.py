"""Launch the URCDC-Depth node: ``ros2 launch urcdc_depth_ros depth.launch.py model_path:=...``.

Arguments: namespace, params_file (default: the installed config/depth.yaml), image_topic,
camera_info_topic, and backend, model_path, use_compressed, which override the params file only
when given. The node's relative topics ``image``,
``image/compressed`` and ``camera_info`` are remapped onto the given topics; outputs (``depth``,
``uncertainty``, ``depth/camera_info``, ``points``, ...) appear under the namespace.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'urcdc_depth_ros'
#: launch arguments that override the params file, and only when given (empty = the file's)
PARAM_ARGS = ('backend', 'model_path', 'use_compressed')


def _param_overrides(context) -> dict:
    """The PARAM_ARGS given on the command line, typed as the node declares them."""
    out = {}
    for name in PARAM_ARGS:
        value = context.launch_configurations.get(name, '')
        if value != '':
            out[name] = value.strip().lower() == 'true' if name == 'use_compressed' else value
    return out


def _node(context):
    image_topic = LaunchConfiguration('image_topic')
    return [Node(
        package=PACKAGE,
        executable='depth_node',
        name='depth_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
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
                              description='onnxruntime | torch | tensorrt; empty = the '
                                          'params file\'s'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='.onnx, .engine or checkpoint file; empty = the '
                                          'params file\'s'),
        DeclareLaunchArgument('use_compressed', default_value='',
                              description='true: subscribe to <image_topic>/compressed; '
                                          'empty = the params file\'s'),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
