r"""Replay a bag through the real ``depth_node`` and evaluate what it published (mode b).

:func:`replay_through_node` starts the node as a subprocess (the same executable and params
file a robot uses), publishes the bag's camera images and camera_info over rclpy, records the
node's ``depth``, ``uncertainty`` and ``depth/camera_info`` into a new rosbag2 (written with
rosbags, raw CDR as received), and :func:`replay_and_evaluate` scores that recording against the
original bag's LiDAR with :func:`~urcdc_depth_ros.evaluation.bag_eval.evaluate_bag`.

Rates: ``'max'`` sends the next image only after the node answered the previous one (or
``frame_timeout_s`` passed: counted as dropped), so no frame is lost to the node's depth-1
input queue; ``'bag'`` keeps the bag's inter-frame timing and lets the node drop what it
cannot keep up with, as on a robot.

Recorded log times are ``header stamp + (receive time - publish time)``: the node's own
latency on the bag's clock, so the report's latency figure means the same as for a live
recording.

The equivalent on a robot (ROS 2 installed)::

    ros2 launch urcdc_depth_ros depth.launch.py model_path:=model.onnx \\
        image_topic:=/kitti/camera_color_left/image_raw \\
        camera_info_topic:=/kitti/camera_color_left/camera_info &
    ros2 bag record -o node_out /depth /uncertainty /depth/camera_info &
    ros2 bag play kitti_bag
    urcdc-bag-eval kitti_bag node_out --depth-topic /depth --uncertainty-topic /uncertainty \\
        --out report/

This is the only evaluation module that imports rclpy (inside the functions).
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError, NodeError
from ..stamps import cdr_stamp_ns
from . import bag_io
from .bag_eval import evaluate_bag
from .bag_topics import (IMAGE_PREFER, bag_topics, camera_info_topic_for, open_bag, pick_topic,
                         require_topic)
from .report import write_metrics_json

logger = logging.getLogger(__name__)

OUTPUTS = {'depth': bag_io.IMAGE_TYPE, 'uncertainty': bag_io.IMAGE_TYPE,
           'depth/camera_info': bag_io.CAMERA_INFO_TYPE}
RATES = ('max', 'bag')


def _node_command(node_cmd: str | Sequence[str] | None, params_file: str | None,
                  model_path: str | None, namespace: str) -> list[str]:
    if node_cmd is None:
        cmd = [sys.executable, '-m', 'urcdc_depth_ros.node']
    elif isinstance(node_cmd, str):
        cmd = shlex.split(node_cmd)
    else:
        cmd = list(node_cmd)
    if cmd and shutil.which(cmd[0]) is None and not os.path.isfile(cmd[0]):
        raise ConfigError(f'node command {cmd[0]!r} is not on PATH; install the package '
                          '(colcon build / pip install -e .) or pass --node-cmd '
                          f'"{sys.executable} -m urcdc_depth_ros.node"')
    ros_args = ['--ros-args', '-r', f'__ns:={namespace}']
    if params_file:
        if not os.path.isfile(params_file):
            raise ConfigError(f'params file {params_file!r} does not exist')
        ros_args += ['--params-file', params_file]
    if model_path:
        model_path = os.path.abspath(model_path) if os.path.exists(model_path) else model_path
        ros_args += ['-p', f'model_path:={model_path}']
    return cmd + ros_args


def replay_through_node(bag_path: str | os.PathLike, out_bag: str | os.PathLike,
                        node_cmd: str | Sequence[str] | None = None,
                        params_file: str | None = None, model_path: str | None = None,
                        rate: str = 'max', image_topic: str | None = None,
                        camera_info_topic: str | None = None,
                        namespace: str = '/urcdc_replay', startup_timeout_s: float = 120.0,
                        frame_timeout_s: float = 30.0, max_frames: int | None = None,
                        storage: str = 'mcap') -> dict:
    """Play ``bag_path``'s images through the node and record its outputs into ``out_bag``.

    Args:
        node_cmd: the node executable (``'depth_node'``) or a full command; default
            ``python -m urcdc_depth_ros.node``. ROS arguments (namespace, params file,
            ``model_path``) are appended.
        params_file: node parameters YAML (e.g. ``config/depth.yaml``).
        model_path: sets the node's ``model_path`` parameter.
        rate: ``'max'`` (wait for each output) or ``'bag'`` (bag timing).
        namespace: the node runs in it; its ``image``/``camera_info`` inputs and outputs
            resolve there, so nothing else on the machine is disturbed.
    Returns:
        summary: frames sent, depth frames received, dropped, node log path, out_bag.
    Raises:
        DataError: an unusable bag, or the node published no depth at all.
        NodeError: the node does not start, does not subscribe in time, or dies.
    """
    if rate not in RATES:
        raise ConfigError(f'rate={rate!r} is not one of {list(RATES)}')
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from sensor_msgs.msg import CameraInfo, Image

    reader = open_bag([bag_path])
    try:
        topics = bag_topics(reader)
        image_topic = (require_topic(topics, image_topic, bag_io.IMAGE_TYPE, '--image-topic')
                       if image_topic else
                       pick_topic(topics, bag_io.IMAGE_TYPE, 'camera image', '--image-topic',
                                  prefer=IMAGE_PREFER))
        camera_info_topic = camera_info_topic or camera_info_topic_for(topics, image_topic)
        if camera_info_topic is None:
            raise DataError(f'no camera_info beside {image_topic!r}; topics present: {topics}')
        ts = bag_io.get_ros2_typestore()

        def cdr(conn, raw):
            if getattr(conn.ext, 'serialization_format', None) == 'cdr':
                return bytes(raw)
            return bytes(ts.serialize_cdr(reader.deserialize(raw, conn.msgtype), conn.msgtype))

        infos = []
        for conn, _, raw in reader.messages(
                connections=[c for c in reader.connections if c.topic == camera_info_topic]):
            data = cdr(conn, raw)
            infos.append((cdr_stamp_ns(data), data))
        if not infos:
            raise DataError(f'{camera_info_topic!r} holds no message')
        info_stamps = np.array([s for s, _ in infos], np.int64)
        img_conns = [c for c in reader.connections if c.topic == image_topic]

        out_bag = Path(out_bag)
        if out_bag.exists():
            shutil.rmtree(out_bag)
        log_path = f'{out_bag}.node.log'
        cmd = _node_command(node_cmd, params_file, model_path, namespace)
        logger.info('starting node: %s', shlex.join(cmd))
        log_f = open(log_path, 'w')
        proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node('urcdc_bag_replay', namespace=namespace, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE)
        received: dict[str, list[tuple[int, int, bytes]]] = {k: [] for k in OUTPUTS}
        sent_wall: dict[int, int] = {}

        def on_output(key):
            def cb(raw: bytes):
                received[key].append((time.time_ns(), cdr_stamp_ns(raw), bytes(raw)))
            return cb

        subs = [node.create_subscription(Image if t == bag_io.IMAGE_TYPE else CameraInfo,
                                         k, on_output(k), qos, raw=True)
                for k, t in OUTPUTS.items()]
        pub_img = node.create_publisher(Image, 'image', qos)
        pub_info = node.create_publisher(CameraInfo, 'camera_info', qos)
        sent = 0
        try:
            deadline = time.monotonic() + startup_timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise NodeError(f'the node exited with status {proc.returncode} during '
                                    f'start-up; see {log_path}')
                if (pub_img.get_subscription_count() and pub_info.get_subscription_count()
                        and all(node.count_publishers(s.topic_name) for s in subs[:1])):
                    break
                executor.spin_once(timeout_sec=0.1)
            else:
                raise NodeError(f'the node did not subscribe to {namespace}/image within '
                                f'{startup_timeout_s:g} s; see {log_path}')
            executor.spin_once(timeout_sec=0.5)  # let discovery settle both ways
            prev_log = prev_wall = None
            for conn, log_ns, raw in reader.messages(connections=img_conns):
                if max_frames is not None and sent >= max_frames:
                    break
                data = cdr(conn, raw)
                st = cdr_stamp_ns(data)
                if rate == 'bag' and prev_log is not None:
                    wait = (log_ns - prev_log) / 1e9 - (time.monotonic() - prev_wall)
                    end = time.monotonic() + max(wait, 0.0)
                    while time.monotonic() < end:
                        executor.spin_once(timeout_sec=max(end - time.monotonic(), 0.0))
                prev_log, prev_wall = log_ns, time.monotonic()
                k = int(np.argmin(np.abs(info_stamps - st)))
                pub_info.publish(deserialize_message(infos[k][1], CameraInfo))
                executor.spin_once(timeout_sec=0.005)
                sent_wall[st] = time.time_ns()
                pub_img.publish(deserialize_message(data, Image))
                sent += 1
                if rate == 'max':
                    end = time.monotonic() + frame_timeout_s
                    while time.monotonic() < end and not any(
                            s == st for _, s, _ in received['depth']):
                        if proc.poll() is not None:
                            raise NodeError(f'the node died (status {proc.returncode}); '
                                            f'see {log_path}')
                        executor.spin_once(timeout_sec=0.02)
            end = time.monotonic() + (2.0 if rate == 'max' else frame_timeout_s)
            while time.monotonic() < end and len({s for _, s, _ in received['depth']}) < sent:
                executor.spin_once(timeout_sec=0.05)
            for _ in range(10):  # the last uncertainty/camera_info may trail the depth
                executor.spin_once(timeout_sec=0.02)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=context)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            log_f.close()
    finally:
        reader.close()

    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    rows = sorted((st + max(recv - sent_wall.get(st, recv), 0), key, data)
                  for key, msgs in received.items() for recv, st, data in msgs)
    with Writer(out_bag, version=8, storage_plugin=plugin) as writer:
        conns = {k: writer.add_connection(f'/{k}', t, typestore=ts) for k, t in OUTPUTS.items()}
        for log_ns, key, data in rows:
            writer.write(conns[key], log_ns, data)
    got = len({s for _, s, _ in received['depth']})
    summary = {'out_bag': str(out_bag), 'sent': sent, 'depth_received': got,
               'dropped': sent - got, 'node_log': log_path, 'rate': rate,
               'image_topic': image_topic, 'camera_info_topic': camera_info_topic}
    logger.info('replay: %d images sent, %d depth frames recorded into %s', sent, got, out_bag)
    if got == 0:
        raise DataError(f'the node published no depth for {sent} images; see {log_path}')
    return summary


def replay_and_evaluate(bag_path: str | os.PathLike, out_dir: str | os.PathLike,
                        node_cmd: str | Sequence[str] | None = None,
                        params_file: str | None = None, model_path: str | None = None,
                        rate: str = 'max', **eval_kw) -> dict:
    """Replay through the node, then evaluate its recording against the bag's LiDAR.

    ``eval_kw`` go to :func:`evaluate_bag` (tolerance_ms, crop, ...). The recording lands in
    ``out_dir/node_bag``; the result gains a ``replay`` block.
    """
    os.makedirs(out_dir, exist_ok=True)
    out_bag = os.path.join(out_dir, 'node_bag')
    summary = replay_through_node(bag_path, out_bag, node_cmd=node_cmd,
                                  params_file=params_file, model_path=model_path, rate=rate,
                                  image_topic=eval_kw.get('image_topic'),
                                  camera_info_topic=eval_kw.get('camera_info_topic'),
                                  max_frames=eval_kw.get('max_frames'))
    result = evaluate_bag([bag_path, out_bag], out_dir, depth_topic='/depth',
                          uncertainty_topic='/uncertainty',
                          depth_camera_info_topic='/depth/camera_info', **eval_kw)
    result['replay'] = summary
    write_metrics_json(os.path.join(out_dir, 'metrics.json'), result)
    return result


__all__ = ['replay_through_node', 'replay_and_evaluate']
