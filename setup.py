"""ament_python package: the runtime `urcdc_depth_ros` and, from `training/`, `urcdc_training`."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'urcdc_depth_ros'

runtime_packages = find_packages(include=[PACKAGE, f'{PACKAGE}.*'])
training_packages = ['urcdc_training'] + [
    'urcdc_training.' + p for p in find_packages(where='training')]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=runtime_packages + training_packages,
    package_dir={'urcdc_training': 'training'},
    package_data={'urcdc_training': ['splits/*.txt', 'splits/LICENSE*', 'splits/README.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.rviz')
         + glob('config/*.xml')),
    ],
    install_requires=['setuptools', 'numpy', 'pyyaml'],
    zip_safe=True,
    maintainer='urcdc_depth_ros maintainers',
    maintainer_email='maintainers@urcdc-depth-ros.invalid',
    description='URCDC-Depth monocular metric depth with uncertainty for ROS 2',
    license='MIT',
    python_requires='>=3.10',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'depth_node = urcdc_depth_ros.node:main',
            'urcdc-train = urcdc_training.cli:train_main',
            'urcdc-eval = urcdc_training.cli:eval_main',
            'urcdc-export = urcdc_training.export:main',
            'urcdc-synth = urcdc_training.synthetic.cli:main',
            'urcdc-kitti2bag = urcdc_depth_ros.kitti.to_bag:main',
            'urcdc-bag-eval = urcdc_depth_ros.evaluation.bag_eval_cli:main',
            'urcdc-calibrate = urcdc_depth_ros.evaluation.calibrate:main',
            'urcdc-fleet-eval = urcdc_depth_ros.evaluation.fleet:main',
        ],
    },
)
