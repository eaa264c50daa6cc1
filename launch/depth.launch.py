"""Launch the URCDC-Depth node: ``ros2 launch urcdc_depth_ros depth.launch.py model_path:=...``.

Arguments: namespace, params_file (default: the installed config/depth.yaml), image_topic,
camera_info_topic, backend, model_path, use_compressed. The node's relative topics ``image``,
``image/compressed`` and ``camera_info`` are remapped onto the given topics; outputs (``depth``,
``uncertainty``, ``depth/camera_info``, ``points``, ...) appear under the namespace.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

PACKAGE = 'urcdc_depth_ros'


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
        DeclareLaunchArgument('backend', default_value='onnxruntime',
                              description='onnxruntime | torch | tensorrt'),
        DeclareLaunchArgument('model_path', description='.onnx, .engine or checkpoint file'),
        DeclareLaunchArgument('use_compressed', default_value='false',
                              description='subscribe to <image_topic>/compressed instead'),
    ]
    image_topic = LaunchConfiguration('image_topic')
    node = Node(
        package=PACKAGE,
        executable='depth_node',
        name='depth_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'backend': LaunchConfiguration('backend'),
                'model_path': LaunchConfiguration('model_path'),
                'use_compressed': PythonExpression(
                    ["'", LaunchConfiguration('use_compressed'), "'.lower() == 'true'"]),
            },
        ],
        remappings=[
            ('image', image_topic),
            ('image/compressed', [image_topic, '/compressed']),
            ('camera_info', LaunchConfiguration('camera_info_topic')),
        ],
    )
    return LaunchDescription(args + [node])
