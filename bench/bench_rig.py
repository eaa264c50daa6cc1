"""Camera rigs: one multi-camera depth_node against N single-camera nodes, same machine, same run.

    python bench/bench_rig.py [--quick] [--rounds N] [--cameras 1,2,4]

N cameras at 1242 x 375 rgb8 (KITTI intrinsics), nano07 with random weights exported to ONNX
with a dynamic batch (so the rig node runs one backend call per batch), ONNX Runtime on the
CPU (or on the GPU when onnxruntime-gpu sees one). Each node runs as launched
(``python -m urcdc_depth_ros.node`` with ``config/depth.yaml``) in its own process:

* rig: one node with ``cameras: [cam0 .. camN-1]``, ``sync: latest``, all cameras in one
  backend call; for N > 1 also with ``max_batch: 1`` (one call per camera: the memory of one);
* singles: N nodes, one per camera, each in its own namespace.

An rclpy probe publishes one frame per camera with a common stamp, waits until every camera's
``depth`` of that stamp arrived, then sends the next round (closed loop, reliable input QoS so
that DDS loss is not measured). Reported per setup: total frames/s (N x rounds / wall time),
p50 latency per frame (publish -> depth received), the total peak RSS of the node processes
(``VmHWM``), and how many rounds had to be resent (a node skipped a frame, e.g. because
its camera_info came later than ``camera_info_wait_s`` on a saturated machine; such a round
counts in frames/s but not in the latency). Goals: rig frames/s >= the singles';
rig peak RSS at N = 4 <= 1.3 x a single-camera node's. Every process runs with
``config/fastdds_large_data.xml`` as its Fast DDS profile (``--dds-defaults``: Fast DDS's
defaults, under which a lost camera_info costs a round a 10 s resend). ``--quick`` uses a
176 x 608 model and N = 1, 2 to prove the script works. Markdown goes to stdout.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'test'))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'test', 'ros'))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

from bench_inference import CAM_H, CAM_W, H, W, camera_image  # noqa: E402
from depth_node_helpers import DDS_PROFILE  # noqa: E402

FPS_GOAL, RSS_GOAL = 1.0, 1.3
NS = '/bench_rig'


def dynamic_batch_model(tmp: str, height: int, width: int) -> str:
    """Random-weight nano07 exported with a symbolic batch dimension."""
    from fixtures.models import make_model
    from urcdc_depth_ros.config import KITTI_FOCAL_PX, ModelMeta
    from urcdc_training.export import export_onnx
    path = os.path.join(tmp, f'nano07_{height}x{width}_dynamic.onnx')
    # trained at this scale of KITTI: the focal shrinks with the input (auto halves the image
    # for the 176 x 608 quick model, as for a model trained at half resolution)
    meta = ModelMeta(variant='nano07', input_height=height, input_width=width,
                     focal_px=KITTI_FOCAL_PX * width / W, dataset='random-weights')
    export_onnx(make_model('nano07'), meta, path, dynamic_batch=True)
    return path


def peak_rss_mb(pid: int) -> float:
    """``VmHWM`` (peak resident set) of a live process, MiB."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


class RigProbe:
    """Publishes frames to N cameras' ``image``/``camera_info`` and collects their ``depth``."""

    def __init__(self, topics: list[str]):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('rig_bench_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=4, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = [(self.node.create_publisher(Image, f'{t}/image', qos),
                      self.node.create_publisher(CameraInfo, f'{t}/camera_info', qos))
                     for t in topics]
        self.rx: list[dict[int, float]] = [{} for _ in topics]
        for i, t in enumerate(topics):
            self.node.create_subscription(Image, f'{t}/depth', self._keep(i), qos)

    def _keep(self, i: int):
        from urcdc_depth_ros.ros_io import stamp_to_ns

        def cb(msg):
            self.rx[i][stamp_to_ns(msg.header.stamp)] = time.perf_counter()
        return cb

    def send(self, msgs) -> float:
        """Publish (info, image) per camera; return the publish time (s)."""
        for (img_pub, info_pub), (info, img) in zip(self.pubs, msgs):
            info_pub.publish(info)
            img_pub.publish(img)
        return time.perf_counter()

    def wait(self, stamp_ns: int, timeout_s: float, procs) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(stamp_ns in r for r in self.rx):
                return True
            if any(p.poll() is not None for p in procs):
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return all(stamp_ns in r for r in self.rx)

    def close(self):
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_setup(model: str, n: int, rig: bool, rounds: int, tmp: str, max_batch: int = 0) -> dict:
    """Frames/s, per-frame latencies and peak RSS of one setup (rig node or n single nodes).

    ``max_batch``: the rig node's parameter (0 = all cameras in one backend call).
    """
    from depth_node_helpers import make_header, node_command, start_node, stop_node
    from urcdc_depth_ros.ros_io import build_camera_info, numpy_to_image
    cams = [f'cam{i}' for i in range(n)]
    common = ['-p', 'input_reliability:=reliable', '-p', 'camera_info_wait_s:=2.0',
              '-p', 'input_depth:=2']
    if rig:
        cmds = [node_command(model, '-r', f'__ns:={NS}', '-p', f'cameras:=[{",".join(cams)}]',
                             '-p', f'max_batch:={max_batch}', *common)]
        topics = [f'{NS}/{c}' for c in cams]
    else:
        cmds = [node_command(model, '-r', f'__ns:={NS}/{c}', *common) for c in cams]
        topics = [f'{NS}/{c}' for c in cams]
    procs = [start_node(cmd, os.path.join(tmp, f'node{i}.log')) for i, cmd in enumerate(cmds)]
    probe = RigProbe(topics)
    img, K = camera_image()
    latencies, t_first, resends = [], None, 0
    try:
        for r in range(rounds + 1):  # round 0 warms up (discovery, model load): not timed
            stamp = 1_000_000_000 * (r + 1)
            msgs = []
            for c in cams:
                h = make_header(stamp, f'{c}_optical_frame')
                msgs.append((build_camera_info(K, CAM_W, CAM_H, h),
                             numpy_to_image(img, 'rgb8', h)))
            for attempt in range(240):
                t_pub = probe.send(msgs)
                if probe.wait(stamp, 0.5 if r == 0 else 10.0, procs):
                    break
                resends += r > 0  # a frame skipped by a node (e.g. camera_info too late)
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError('a node exited:\n' + open(
                        os.path.join(tmp, 'node0.log')).read()[-3000:])
            else:
                raise RuntimeError('no depth from the nodes')
            if r == 0:
                probe.executor.spin_once(timeout_sec=1.0)  # drain the warm-up copies
                t_first = time.perf_counter()
                continue
            if not attempt:  # a resent round's latency would count the wait
                latencies += [(rx[stamp] - t_pub) * 1e3 for rx in probe.rx]
        wall_s = time.perf_counter() - t_first
        rss = sum(peak_rss_mb(p.pid) for p in procs)
    finally:
        probe.close()
        for p in procs:
            stop_node(p, signal.SIGINT)
    return {'fps': n * rounds / wall_s, 'p50_ms': statistics.median(latencies or [float('nan')]),
            'rss_mb': rss, 'resends': resends}


def main(argv=None) -> int:
    """Run the benchmark; markdown on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='176 x 608 model, N = 1, 2, 3 rounds')
    p.add_argument('--rounds', type=int, default=0, help='timed rounds (default 8)')
    p.add_argument('--cameras', default='', help='comma-separated N (default 1,2,4)')
    p.add_argument('--dds-defaults', action='store_true',
                   help="Fast DDS's default transports instead of config/fastdds_large_data.xml")
    args = p.parse_args(argv)
    if not args.dds_defaults:  # read when the probe's and the nodes' participants start
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = DDS_PROFILE
    transport = 'Fast DDS defaults' if args.dds_defaults else 'config/fastdds_large_data.xml'

    rounds = args.rounds or (3 if args.quick else 8)
    ns = [int(x) for x in args.cameras.split(',') if x] or ([1, 2] if args.quick else [1, 2, 4])
    h, w = (176, 608) if args.quick else (H, W)
    lines = [f'### Camera rig: one multi-camera node vs N single-camera nodes (nano07 {h} x {w}, '
             f'cameras {CAM_W} x {CAM_H} rgb8, ONNX Runtime, {rounds} rounds, {transport})', '',
             '| N | setup | frames/s (total) | p50 latency per frame (ms) | '
             'peak RSS, all node processes (MiB) | rounds resent |', '|---|---|---|---|---|---|']
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = dynamic_batch_model(tmp, h, w)
        for n in ns:
            setups = [('rig', 0), ('singles', 0)] + ([('rig', 1)] if n > 1 else [])
            for kind, max_batch in setups:
                r = run_setup(model, n, kind == 'rig', rounds, tmp, max_batch)
                results[n, kind, max_batch] = r
                setup = (f'{n} single node(s)' if kind == 'singles' else
                         'rig node (1 process), one call per batch' if not max_batch else
                         f'rig node (1 process), max_batch {max_batch}')
                lines.append(f'| {n} | {setup} | {r["fps"]:.2f} | {r["p50_ms"]:.0f} | '
                             f'{r["rss_mb"]:.0f} | {r["resends"]} |')
    lines.append('')
    single1 = results.get((1, 'singles', 0))
    for n in ns:
        single = results[n, 'singles', 0]
        for max_batch in (0, 1):
            rig = results.get((n, 'rig', max_batch))
            if rig is None:
                continue
            how = 'one call per batch' if not max_batch else f'max_batch {max_batch}'
            ok = rig['fps'] >= FPS_GOAL * single['fps']
            line = (f'- N = {n}, rig ({how}): frames/s {rig["fps"] / single["fps"]:.2f}x the '
                    f'singles\' (goal >= {FPS_GOAL:.2f}: **{"met" if ok else "missed"}**)')
            if single1 is not None and n == max(ns):
                ratio = rig['rss_mb'] / single1['rss_mb']
                verdict = 'met' if ratio <= RSS_GOAL else 'missed'
                line += (f'; peak RSS {ratio:.2f}x one single-camera node (goal <= '
                         f'{RSS_GOAL:.1f} at N = 4: **{verdict}**)')
            lines.append(line)
    sys.stdout.write('\n'.join(lines) + '\n\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
