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

A rig (several image topics): one multi-camera node is started with ``cameras`` named after
the topics (:func:`.per_camera.camera_label`), each camera gets its bag images and camera_info
on ``<cam>/image``/``<cam>/camera_info``, its outputs are recorded as ``/<cam>/depth``, ... in
one bag, and :func:`replay_and_evaluate_cameras` scores each camera like
:func:`.per_camera.evaluate_cameras` (one row per camera). With ``'max'`` a round (the next
image of every camera) is sent, then the node's answer for each of them is awaited.

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

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError, NodeError
from ..stamps import cdr_stamp_ns
from . import bag_io
from .bag_eval import evaluate_bag
from .bag_topics import (IMAGE_PREFER, bag_topics, camera_info_topic_for, open_bag, pick_topic,
                         require_topic)
from .per_camera import evaluate_cameras
from .report import write_metrics_json

logger = logging.getLogger(__name__)

OUTPUTS = {'depth': bag_io.IMAGE_TYPE, 'uncertainty': bag_io.IMAGE_TYPE,
           'depth/camera_info': bag_io.CAMERA_INFO_TYPE}
RATES = ('max', 'bag')


@dataclass
class ReplayCamera:
    """One camera played through the node: its bag topics and its camera_info messages.

    Attributes:
        name: the node's camera name (topic prefix); ``''`` for the single-camera node.
        info_stamps: (N,) int64 header stamps (ns) of ``infos``, the camera_info raw CDR.
    """

    name: str
    image_topic: str
    camera_info_topic: str
    info_stamps: np.ndarray
    infos: list[bytes]

    def topic(self, base: str) -> str:
        """The node's relative topic ``base`` of this camera (``<name>/<base>``, or ``base``)."""
        return f'{self.name}/{base}' if self.name else base

    def info_for(self, stamp_ns: int) -> bytes:
        """The camera_info (raw CDR) nearest in header stamp to ``stamp_ns``."""
        return self.infos[int(np.argmin(np.abs(self.info_stamps - stamp_ns)))]


def _node_command(node_cmd: str | Sequence[str] | None, params_file: str | None,
                  model_path: str | None, namespace: str,
                  cameras: Sequence[str] = ()) -> list[str]:
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
    if cameras:
        if params_file:
            _check_rig_overrides(params_file, cameras)
        ros_args += ['-p', f'cameras:=[{",".join(cameras)}]']
    return cmd + ros_args


def _check_rig_overrides(params_file: str, cameras: Sequence[str]) -> None:
    """ConfigError if the params file overrides a camera the replayed rig does not have.

    The replay names the node's cameras after the image topics, replacing the file's own
    ``cameras`` list; a ``<cam>: {setting: ...}`` block for another name would stop the node.
    """
    from ..cameras import check_override_names
    from ..config import load_node_params
    params = load_node_params(params_file)
    dotted = [f'{k}.{sub}' for k, v in params.items() if isinstance(v, dict) for sub in v]
    try:
        check_override_names(dotted, cameras)
    except ConfigError as exc:
        raise ConfigError(f'{params_file}: {exc} (the replay names the cameras after the '
                          'image topics; rename the override blocks or use a params file '
                          'without them)') from exc


def _bag_cdr(reader):
    """``cdr(conn, raw) -> bytes``: a bag message as ROS 2 CDR (ROS 1 bags re-serialised)."""
    ts = bag_io.get_ros2_typestore()

    def cdr(conn, raw):
        if getattr(conn.ext, 'serialization_format', None) == 'cdr':
            return bytes(raw)
        return bytes(ts.serialize_cdr(reader.deserialize(raw, conn.msgtype), conn.msgtype))
    return cdr


def _replay_cameras(reader, cdr, image_topic: str | Sequence[str] | None,
                    camera_info_topic: str | None) -> list[ReplayCamera]:
    """The cameras to play: one unnamed camera for a single (or auto) topic, else a rig.

    A rig's camera names are :func:`.per_camera.camera_labels` of its image topics; each
    camera's camera_info is the one beside its image (``camera_info_topic`` is refused).
    Raises:
        DataError: a topic is not in the bag, has no camera_info beside it, or it is empty.
        ConfigError: rig names that repeat or are not valid camera names.
    """
    topics = bag_topics(reader)
    image_topics = [image_topic] if image_topic is None or isinstance(image_topic, str) \
        else list(image_topic) or [None]
    names = ['']
    if len(image_topics) > 1:
        if camera_info_topic:
            raise ConfigError('several image topics take each camera\'s camera_info from '
                              f'beside its image; drop camera_info_topic={camera_info_topic!r}')
        from ..cameras import validate_camera_names
        from .per_camera import camera_labels
        names = list(validate_camera_names(camera_labels(image_topics)))
    cameras = []
    for name, topic in zip(names, image_topics):
        topic = (require_topic(topics, topic, bag_io.IMAGE_TYPE, '--image-topic') if topic else
                 pick_topic(topics, bag_io.IMAGE_TYPE, 'camera image', '--image-topic',
                            prefer=IMAGE_PREFER))
        info_topic = camera_info_topic or camera_info_topic_for(topics, topic)
        if info_topic is None:
            raise DataError(f'no camera_info beside {topic!r}; topics present: {topics}')
        infos = [cdr(conn, raw) for conn, _, raw in reader.messages(
            connections=[c for c in reader.connections if c.topic == info_topic])]
        if not infos:
            raise DataError(f'{info_topic!r} holds no message')
        stamps = np.array([cdr_stamp_ns(d) for d in infos], np.int64)
        cameras.append(ReplayCamera(name, topic, info_topic, stamps, infos))
    return cameras


def _rounds(reader, cdr, cameras: Sequence[ReplayCamera], max_rounds: int | None):
    """Yield the bag's images in log order as rounds: ``[(camera, log_ns, cdr), ...]``.

    A round holds the next image of each camera (a rig's cameras share a stamp, or nearly);
    it ends when a camera repeats. With one camera every image is a round.
    """
    by_topic = {c.image_topic: c for c in cameras}
    conns = [c for c in reader.connections if c.topic in by_topic]
    rounds = 0
    current: list = []
    for conn, log_ns, raw in reader.messages(connections=conns):
        cam = by_topic[conn.topic]
        if any(c is cam for c, _, _ in current):
            yield current
            rounds += 1
            current = []
        if max_rounds is not None and rounds >= max_rounds:
            return
        current.append((cam, log_ns, cdr(conn, raw)))
    if current:
        yield current


class _Probe:
    """The replay's rclpy side: each camera's image/camera_info publishers, output recorder.

    ``received[(camera name, output)]`` lists ``(receive wall ns, header stamp ns, raw CDR)``.
    """

    def __init__(self, namespace: str, cameras: Sequence[ReplayCamera]):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('urcdc_bag_replay', namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.received: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
        self.depth_subs, self.pubs = [], {}
        for cam in cameras:
            for key, msgtype in OUTPUTS.items():
                self.received[(cam.name, key)] = []
                sub = self.node.create_subscription(
                    Image if msgtype == bag_io.IMAGE_TYPE else CameraInfo, cam.topic(key),
                    self._recorder(self.received[(cam.name, key)]), qos, raw=True)
                if key == 'depth':
                    self.depth_subs.append(sub)
            self.pubs[cam.name] = (self.node.create_publisher(Image, cam.topic('image'), qos),
                                   self.node.create_publisher(CameraInfo,
                                                              cam.topic('camera_info'), qos))

    @staticmethod
    def _recorder(into: list):
        def cb(raw: bytes):
            into.append((time.time_ns(), cdr_stamp_ns(raw), bytes(raw)))
        return cb

    def ready(self) -> bool:
        """The node subscribes to every camera's inputs and publishes every camera's depth."""
        return (all(i.get_subscription_count() and c.get_subscription_count()
                    for i, c in self.pubs.values())
                and all(self.node.count_publishers(s.topic_name) for s in self.depth_subs))

    def publish(self, cam: ReplayCamera, image_cdr: bytes) -> None:
        """Publish the camera_info nearest the image's stamp, then the image (raw CDR)."""
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CameraInfo, Image
        pub_img, pub_info = self.pubs[cam.name]
        pub_info.publish(deserialize_message(cam.info_for(cdr_stamp_ns(image_cdr)), CameraInfo))
        self.spin(0.005)
        pub_img.publish(deserialize_message(image_cdr, Image))

    def answered(self) -> set[tuple[str, int]]:
        """``(camera name, stamp ns)`` of every depth received so far."""
        return {(name, st) for (name, key), msgs in self.received.items() if key == 'depth'
                for _, st, _ in msgs}

    def spin(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=max(timeout_s, 0.0))

    def __enter__(self) -> '_Probe':
        return self

    def __exit__(self, *exc) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@contextlib.contextmanager
def _node_process(cmd: list[str], log_path: str):
    """The node as a subprocess logging to ``log_path``; SIGINT on exit, SIGKILL after 20 s."""
    logger.info('starting node: %s', shlex.join(cmd))
    with open(log_path, 'w') as log_f:
        proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


def _wait(probe: _Probe, until, timeout_s: float, proc: subprocess.Popen | None = None,
          log_path: str = '') -> None:
    """Spin until ``until()`` or ``timeout_s``; NodeError if ``proc`` dies meanwhile."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not until():
        if proc is not None and proc.poll() is not None:
            raise NodeError(f'the node died (status {proc.returncode}); see {log_path}')
        probe.spin(0.02)


def _play(probe: _Probe, proc: subprocess.Popen, rounds, rate: str, frame_timeout_s: float,
          log_path: str) -> list[tuple[str, int, int]]:
    """Publish every round; returns ``(camera name, stamp ns, publish wall ns)`` per image.

    ``'max'`` waits after each round until every image of it was answered (or
    ``frame_timeout_s``); ``'bag'`` paces the images by their bag log times.
    """
    sent: list[tuple[str, int, int]] = []
    prev_log = prev_wall = None
    for images in rounds:
        for cam, log_ns, data in images:
            if rate == 'bag' and prev_log is not None:
                end = time.monotonic() + max(
                    (log_ns - prev_log) / 1e9 - (time.monotonic() - prev_wall), 0.0)
                while time.monotonic() < end:
                    probe.spin(end - time.monotonic())
            prev_log, prev_wall = log_ns, time.monotonic()
            sent.append((cam.name, cdr_stamp_ns(data), time.time_ns()))
            probe.publish(cam, data)
        if rate == 'max':
            keys = {(cam.name, cdr_stamp_ns(data)) for cam, _, data in images}
            _wait(probe, lambda: keys <= probe.answered(), frame_timeout_s, proc, log_path)
    _wait(probe, lambda: len(probe.answered()) >= len(sent),
          2.0 if rate == 'max' else frame_timeout_s)
    for _ in range(10):  # the last uncertainty/camera_info may trail the depth
        probe.spin(0.02)
    return sent


def _write_recording(out_bag: Path, probe: _Probe, cameras: Sequence[ReplayCamera],
                     sent: Sequence[tuple[str, int, int]], storage: str) -> None:
    """Write every received output at ``stamp + (receive - publish)`` ns to ``/<cam>/<output>``."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    sent_wall = {(name, st): wall for name, st, wall in sent}
    ts = bag_io.get_ros2_typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    rows = sorted((st + max(recv - sent_wall.get((name, st), recv), 0), name, key, data)
                  for (name, key), msgs in probe.received.items() for recv, st, data in msgs)
    with Writer(out_bag, version=8, storage_plugin=plugin) as writer:
        conns = {(cam.name, k): writer.add_connection(f'/{cam.topic(k)}', t, typestore=ts)
                 for cam in cameras for k, t in OUTPUTS.items()}
        for log_ns, name, key, data in rows:
            writer.write(conns[(name, key)], log_ns, data)


def replay_through_node(bag_path: str | os.PathLike, out_bag: str | os.PathLike,
                        node_cmd: str | Sequence[str] | None = None,
                        params_file: str | None = None, model_path: str | None = None,
                        rate: str = 'max', image_topic: str | Sequence[str] | None = None,
                        camera_info_topic: str | None = None,
                        namespace: str = '/urcdc_replay', startup_timeout_s: float = 120.0,
                        frame_timeout_s: float = 30.0, max_frames: int | None = None,
                        storage: str = 'mcap') -> dict:
    """Play ``bag_path``'s images through the node and record its outputs into ``out_bag``.

    Args:
        node_cmd: the node executable (``'depth_node'``) or a full command; default
            ``python -m urcdc_depth_ros.node``. ROS arguments (namespace, params file,
            ``model_path``, a rig's ``cameras``) are appended.
        params_file: node parameters YAML (e.g. ``config/depth.yaml``).
        model_path: sets the node's ``model_path`` parameter.
        rate: ``'max'`` (wait for each output) or ``'bag'`` (bag timing).
        image_topic: one topic (or None: the bag's only image) for the single-camera node,
            recorded as ``/depth``, ``/uncertainty``, ``/depth/camera_info``; a list of several
            starts one multi-camera node with ``cameras`` = their
            :func:`.per_camera.camera_label` and records ``/<cam>/depth``, ... for each.
        namespace: the node runs in it; its ``image``/``camera_info`` inputs and outputs
            resolve there, so nothing else on the machine is disturbed.
        max_frames: play only the first N images of each camera.
    Returns:
        summary: images sent, depth frames received, dropped, node log path, out_bag; a rig
        adds ``cameras`` (per camera: name, topics, sent, depth_received) and lists the topics.
    Raises:
        DataError: an unusable bag, or the node published no depth at all.
        NodeError: the node does not start, does not subscribe in time, or dies.
    """
    if rate not in RATES:
        raise ConfigError(f'rate={rate!r} is not one of {list(RATES)}')
    reader = open_bag([bag_path])
    try:
        cdr = _bag_cdr(reader)
        cameras = _replay_cameras(reader, cdr, image_topic, camera_info_topic)
        out_bag = Path(out_bag)
        if out_bag.exists():
            shutil.rmtree(out_bag)
        log_path = f'{out_bag}.node.log'
        cmd = _node_command(node_cmd, params_file, model_path, namespace,
                            [c.name for c in cameras if c.name])
        with _node_process(cmd, log_path) as proc, _Probe(namespace, cameras) as probe:
            _wait_for_node(probe, proc, startup_timeout_s, namespace, log_path)
            sent = _play(probe, proc, _rounds(reader, cdr, cameras, max_frames), rate,
                         frame_timeout_s, log_path)
    finally:
        reader.close()
    _write_recording(out_bag, probe, cameras, sent, storage)
    answered = probe.answered()
    got = len(answered)
    summary = {'out_bag': str(out_bag), 'sent': len(sent), 'depth_received': got,
               'dropped': len(sent) - got, 'node_log': log_path, 'rate': rate,
               'image_topic': cameras[0].image_topic,
               'camera_info_topic': cameras[0].camera_info_topic}
    if cameras[0].name:
        summary['image_topic'] = [c.image_topic for c in cameras]
        summary['camera_info_topic'] = [c.camera_info_topic for c in cameras]
        summary['cameras'] = [
            {'camera': c.name, 'image_topic': c.image_topic,
             'camera_info_topic': c.camera_info_topic,
             'sent': sum(n == c.name for n, _, _ in sent),
             'depth_received': sum(n == c.name for n, _ in answered)} for c in cameras]
    logger.info('replay: %d images sent, %d depth frames recorded into %s', len(sent), got,
                out_bag)
    if got == 0:
        raise DataError(f'the node published no depth for {sent} images; see {log_path}')
    return summary


def _wait_for_node(probe: _Probe, proc: subprocess.Popen, timeout_s: float, namespace: str,
                   log_path: str) -> None:
    """Spin until the node subscribed and publishes (:meth:`_Probe.ready`); NodeError if not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeError(f'the node exited with status {proc.returncode} during '
                            f'start-up; see {log_path}')
        if probe.ready():
            probe.spin(0.5)  # let discovery settle both ways
            return
        probe.spin(0.1)
    raise NodeError(f'the node did not subscribe to {namespace}/image within '
                    f'{timeout_s:g} s; see {log_path}')


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
    from .calibrate import model_calibration
    eval_kw.setdefault('calibration', model_calibration(model_path))  # overlap warning
    result = evaluate_bag([bag_path, out_bag], out_dir, depth_topic='/depth',
                          uncertainty_topic='/uncertainty',
                          depth_camera_info_topic='/depth/camera_info', **eval_kw)
    result['replay'] = summary
    write_metrics_json(os.path.join(out_dir, 'metrics.json'), result)
    return result


def replay_and_evaluate_cameras(bag_path: str | os.PathLike, out_dir: str | os.PathLike,
                                image_topics: Sequence[str],
                                node_cmd: str | Sequence[str] | None = None,
                                params_file: str | None = None, model_path: str | None = None,
                                rate: str = 'max', **eval_kw) -> list[dict]:
    """Replay a rig's cameras through one multi-camera node, then score each camera (mode b).

    The node's ``cameras`` are the :func:`.per_camera.camera_label` of ``image_topics``; its
    recording lands in ``out_dir/node_bag`` (``/<cam>/depth``, ``/<cam>/uncertainty``,
    ``/<cam>/depth/camera_info``; each depth keeps its image's header, so the bag's TF from
    that camera's frame to the LiDAR applies). Each camera is evaluated into
    ``out_dir/<cam>/``; ``out_dir/cameras.json``/``cameras.md`` get one row per camera (as
    :func:`.per_camera.evaluate_cameras`) and ``out_dir/replay.json`` the replay summary.
    ``eval_kw`` go to :func:`evaluate_bag` for every camera. Returns the rows.
    """
    os.makedirs(out_dir, exist_ok=True)
    out_bag = os.path.join(out_dir, 'node_bag')
    summary = replay_through_node(bag_path, out_bag, node_cmd=node_cmd,
                                  params_file=params_file, model_path=model_path, rate=rate,
                                  image_topic=list(image_topics),
                                  max_frames=eval_kw.get('max_frames'))
    from .calibrate import model_calibration
    eval_kw.setdefault('calibration', model_calibration(model_path))
    rows = evaluate_cameras([bag_path, out_bag], out_dir, image_topics, camera_kw=lambda cam: {
        'depth_topic': f'/{cam}/depth', 'uncertainty_topic': f'/{cam}/uncertainty',
        'depth_camera_info_topic': f'/{cam}/depth/camera_info'}, **eval_kw)
    write_metrics_json(os.path.join(out_dir, 'replay.json'), summary)
    return rows


__all__ = ['ReplayCamera', 'replay_through_node', 'replay_and_evaluate',
           'replay_and_evaluate_cameras']
