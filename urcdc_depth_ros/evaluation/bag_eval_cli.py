"""``urcdc-bag-eval``: the command line of the bag evaluator (:mod:`.bag_eval`, :mod:`.replay`).

Modes: ``--model`` runs an estimator over the bag's images, ``--depth-topic`` scores a recorded
depth topic, ``--replay`` plays the bag through the real node first. Exit status 0 on success,
2 on a data, configuration or node error (the message is logged, no traceback).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import KITTI_MAX_DEPTH_M
from ..errors import ConfigError, UrcdcDepthError
from .bag_eval import evaluate_bag, load_baseline
from .lidar_gt import TX_MODES

logger = logging.getLogger(__name__)


def add_ground_truth_args(p: argparse.ArgumentParser, rig: bool = False) -> None:
    """Topics, LiDAR matching, GT range and crop (``urcdc-bag-eval``, ``urcdc-calibrate``).

    ``rig``: ``--image-topic`` may repeat, to score each camera of a rig (``urcdc-bag-eval``).
    """
    if rig:
        p.add_argument('--image-topic', action='append', default=None,
                       help='camera image topic (auto when unique); repeat it to score each '
                            'camera of a rig (--model, or --replay through one multi-camera '
                            'node): one report per camera and cameras.md')
    else:
        p.add_argument('--image-topic', help='camera image topic (auto when unique)')
    p.add_argument('--camera-info-topic', help='camera_info of the image (auto)')
    p.add_argument('--lidar-topic', help='PointCloud2 topic (auto when unique)')
    p.add_argument('--tolerance-ms', type=float, default=50.0,
                   help='max |camera - LiDAR| stamp difference, ms')
    p.add_argument('--min-depth', type=float, default=1e-3, help='evaluation minimum, m')
    p.add_argument('--max-depth', type=float, default=KITTI_MAX_DEPTH_M,
                   help='evaluation maximum, m')
    p.add_argument('--crop', choices=('garg', 'eigen', 'none'), default='garg')
    p.add_argument('--tx-mode', choices=TX_MODES, default='auto',
                   help='stereo P Tx rule (see lidar_gt): auto/tf = TF holds the baseline')
    p.add_argument('--max-frames', type=int, help='evaluate only the first N frames')


def ground_truth_kwargs(args: argparse.Namespace) -> dict:
    """The :func:`.bag_eval.evaluate_bag` keywords of :func:`add_ground_truth_args`' options."""
    image_topic = args.image_topic
    if isinstance(image_topic, list):  # the rig form: the first camera (see evaluate_cameras)
        image_topic = image_topic[0]
    return dict(image_topic=image_topic, camera_info_topic=args.camera_info_topic,
                lidar_topic=args.lidar_topic, tolerance_ms=args.tolerance_ms,
                min_depth=args.min_depth, max_depth=args.max_depth, crop=args.crop,
                tx_mode=args.tx_mode, max_frames=args.max_frames)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``urcdc-bag-eval``."""
    p = argparse.ArgumentParser(
        prog='urcdc-bag-eval',
        description='evaluate monocular depth in a bag against LiDAR ground truth',
        epilog='On a robot: `ros2 bag play BAG` + `ros2 launch urcdc_depth_ros '
               'depth.launch.py` + `ros2 bag record -o OUT /depth /uncertainty '
               '/depth/camera_info`, then `urcdc-bag-eval BAG OUT --depth-topic /depth '
               '--uncertainty-topic /uncertainty --out DIR`.')
    p.add_argument('bags', nargs='+', help='bag(s) read together (rosbag2 folder/.mcap/.db3 or '
                                           'ROS 1 .bag)')
    p.add_argument('--out', required=True, help='output folder for the report')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--model', help='mode (a): ONNX/checkpoint/engine to run over the images')
    src.add_argument('--depth-topic', help='mode (b): recorded depth topic (32FC1 m)')
    p.add_argument('--backend', default='onnxruntime', help='inference backend for --model')
    p.add_argument('--uncertainty-topic', help='mode (b): recorded uncertainty topic')
    p.add_argument('--depth-camera-info-topic', help='mode (b): camera_info of the depth')
    add_ground_truth_args(p, rig=True)
    p.add_argument('--flip-tta', action='store_true', help='mode (a): flip test-time aug.')
    p.add_argument('--panels', type=int, default=3, help='sample panels in the report')
    p.add_argument('--compare', action='append', default=[], metavar='LABEL=METRICS_JSON',
                   help='show an earlier run (its metrics.json) beside this one; repeatable')
    p.add_argument('--replay', action='store_true',
                   help='play the bag through the real node (--node-cmd) first, record its '
                        'outputs and evaluate them (mode b)')
    p.add_argument('--node-cmd', default=None,
                   help='replay: node command (default: python -m urcdc_depth_ros.node; '
                        'or depth_node); namespace, params file and --model are appended')
    p.add_argument('--params-file', help='node parameters file (config/depth.yaml): the '
                                         'node\'s settings in --replay, the estimator\'s '
                                         '(crop, focal rescale, ...) with --model')
    p.add_argument('--rate', choices=('bag', 'max'), default='max',
                   help='replay: publish at the bag rate or as fast as the node keeps up')
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success, 2 on a data/config error (message logged)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    image_topics = args.image_topic or [None]
    kw = dict(ground_truth_kwargs(args), n_panels=args.panels)
    try:
        kw['baselines'] = dict(load_baseline(spec) for spec in args.compare) or None
        if len(image_topics) > 1 and (not (args.model or args.replay)
                                      or args.camera_info_topic):
            raise ConfigError('several --image-topic need --model (mode a) or --replay, and '
                              'no --camera-info-topic (each camera\'s is found beside its '
                              'image)')
        if args.replay:
            if len(args.bags) > 1:
                raise ConfigError(f'--replay plays one bag, got {len(args.bags)}: '
                                  f'{args.bags!r}; replay each separately')
            from .replay import replay_and_evaluate, replay_and_evaluate_cameras
            if len(image_topics) > 1:
                kw.pop('image_topic')
                replay_and_evaluate_cameras(args.bags[0], args.out, image_topics,
                                            node_cmd=args.node_cmd,
                                            params_file=args.params_file,
                                            model_path=args.model, rate=args.rate, **kw)
                logger.info('one row per camera in %s', os.path.join(args.out, 'cameras.md'))
                return 0
            result = replay_and_evaluate(args.bags[0], args.out, node_cmd=args.node_cmd,
                                         params_file=args.params_file, model_path=args.model,
                                         rate=args.rate, **kw)
        elif args.model:
            from ..config import estimator_config_from_params, load_node_params
            from ..estimator import DepthEstimator
            params = load_node_params(args.params_file) if args.params_file else {}
            params['flip_tta'] = args.flip_tta or params.get('flip_tta', False)
            est = DepthEstimator.from_model(args.model, backend=args.backend,
                                            config=estimator_config_from_params(params))
            if len(image_topics) > 1:
                from .per_camera import evaluate_cameras
                kw.pop('image_topic')
                evaluate_cameras(args.bags, args.out, image_topics, estimator=est, **kw)
                logger.info('one row per camera in %s', os.path.join(args.out, 'cameras.md'))
                return 0
            result = evaluate_bag(args.bags, args.out, estimator=est, **kw)
        elif args.depth_topic:
            result = evaluate_bag(args.bags, args.out, depth_topic=args.depth_topic,
                                  uncertainty_topic=args.uncertainty_topic,
                                  depth_camera_info_topic=args.depth_camera_info_topic, **kw)
        else:
            raise ConfigError('choose a mode: --model M (run the estimator), --depth-topic T '
                              '(evaluate a recorded topic) or --replay (run the node)')
    except UrcdcDepthError as exc:
        logger.error('%s', exc)
        return 2
    m = result['metrics']
    logger.info('%d/%d frames: AbsRel %.4f RMSE %.3f d1 %.4f; report in %s',
                result['frames']['used'], result['frames']['total'], m['abs_rel'], m['rms'],
                m['d1'], os.path.join(args.out, 'report.html'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
