"""URCDC-Depth training tools, installed as ``urcdc_training``; never imported by the runtime.

Sub-packages: ``synthetic`` (KITTI-format synthetic data generator), ``datasets`` (KITTI / NYU
loaders), ``augmentation`` (training-time transforms) and ``check_data`` (data set checks).
"""
