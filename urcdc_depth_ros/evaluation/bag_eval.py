"""``urcdc-bag-eval``: evaluate monocular depth in a bag against LiDAR ground truth.

Two modes, one protocol:

* (a) estimator: run a :class:`DepthEstimator` (``--model``) over the bag's camera images;
* (b) topic: evaluate a recorded depth topic (``--depth-topic``, 32FC1 metres, or 16UC1 mm)
  and optionally its uncertainty topic, as the running node published them, matched to the
  LiDAR by header stamp.

Ground truth per frame: the LiDAR cloud nearest in header stamp (within ``tolerance_ms``),
moved into the depth image's ``frame_id`` with the bag's ``/tf_static`` (and ``/tf``) chain
and projected with the CameraInfo intrinsics (nearest return per pixel; see
:mod:`.lidar_gt` for the stereo ``Tx`` rule). Metrics are the nine of DESIGN.md section 5
(predictions clamped to [min_depth, max_depth], GT valid in (min_depth, max_depth), Garg crop
by default), averaged per image; per-range rows, AUSE/AURG and calibration pool all valid
pixels of all frames.

Bags are read with ``rosbags`` (rosbag2 MCAP or sqlite3, ROS 1 ``.bag``); no ROS install is
needed. Several bag paths may be given together (e.g. the original bag with the LiDAR and a
bag recorded from the node): they are read as one.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError, UrcdcDepthError
from ..metrics import (METRIC_NAMES, MetricAccumulator, ause_aurg, calibration_bins,
                       depth_metrics, metrics_by_range, protocol_pairs, sparsification_curve,
                       valid_mask)
from . import bag_io
from .lidar_gt import TX_MODES, lidar_depth, scale_intrinsics
from .report import headline

LOG = logging.getLogger(__name__)

TF_TOPICS = ('/tf_static', '/tf')
POOL_PER_FRAME = 50_000  # pooled pixels kept per frame (random subset beyond), bounds memory


# --- bag opening and topic resolution ------------------------------------------------------

def open_bag(paths: Sequence[str | os.PathLike]):
    """Open one or more bags with ``rosbags.highlevel.AnyReader``; DataError if unreadable.

    The returned reader is already opened; close it with ``reader.close()``.
    """
    from rosbags.highlevel import AnyReader
    ps = [Path(p) for p in paths]
    for p in ps:
        if not p.exists():
            raise DataError(f'bag {str(p)!r} does not exist; pass a rosbag2 folder, its '
                            '.mcap/.db3 file, or a ROS 1 .bag file')
    try:
        reader = AnyReader(ps, default_typestore=bag_io.get_ros2_typestore())
        reader.open()
    except Exception as exc:  # reason: rosbags raises several unrelated types here
        recovered = _recover_mcap(ps)
        if recovered is not None:
            return recovered
        raise DataError(f'cannot open bag {[str(p) for p in ps]!r}: {type(exc).__name__}: '
                        f'{exc}. The file is corrupt, truncated or not a bag; re-record it, or '
                        'for a rosbag2 folder check that metadata.yaml matches the storage '
                        'files (`ros2 bag reindex` can rebuild it)') from exc
    return reader


def _recover_mcap(paths: Sequence[Path]):
    """A cut-off MCAP read up to the cut (see :mod:`.mcap_recover`); None if not MCAP/empty."""
    from .mcap_recover import RecoveredReader, mcap_files
    if mcap_files(paths) is None:
        return None
    reader = RecoveredReader(paths, bag_io.get_ros2_typestore())
    if reader.message_count == 0 or not reader.connections:
        return None
    LOG.warning('%s', reader.warning)
    return reader


def bag_topics(reader) -> dict[str, str]:
    """``{topic: msgtype}`` of every connection in the opened reader."""
    return {c.topic: c.msgtype for c in reader.connections}


def _topics_text(topics: dict[str, str]) -> str:
    return ', '.join(f'{t} [{m}]' for t, m in sorted(topics.items())) or '(none)'


def _pick(topics: dict[str, str], msgtype: str, what: str, flag: str,
          exclude: Sequence[str] = (), prefer: Sequence[str] = ()) -> str:
    cands = [t for t, m in topics.items() if m == msgtype and t not in exclude]
    if len(cands) == 1:
        return cands[0]
    for token in prefer:
        hits = [t for t in cands if token in t]
        if len(hits) == 1:
            return hits[0]
    if not cands:
        raise DataError(f'the bag has no {what} topic ({msgtype}); topics present: '
                        f'{_topics_text(topics)}')
    raise DataError(f'the bag has several {what} topics {sorted(cands)!r}; choose one with '
                    f'{flag}')


def _require(topics: dict[str, str], topic: str, msgtype: str, flag: str) -> str:
    if topic not in topics:
        raise DataError(f'topic {topic!r} ({flag}) is not in the bag; topics present: '
                        f'{_topics_text(topics)}')
    if topics[topic] != msgtype:
        raise DataError(f'topic {topic!r} ({flag}) carries {topics[topic]}, expected {msgtype}')
    return topic


def _namespace(topic: str) -> str:
    return topic.rsplit('/', 1)[0]


def _camera_info_for(topics: dict[str, str], image_topic: str, exclude: Sequence[str] = ()
                     ) -> str | None:
    for cand in (f'{image_topic}/camera_info', f'{_namespace(image_topic)}/camera_info'):
        if topics.get(cand) == bag_io.CAMERA_INFO_TYPE and cand not in exclude:
            return cand
    infos = [t for t, m in topics.items() if m == bag_io.CAMERA_INFO_TYPE and t not in exclude]
    return infos[0] if len(infos) == 1 else None


# --- frames --------------------------------------------------------------------------------

@dataclass
class _Frame:
    """One evaluation frame: the primary (prediction source) message and what it needs."""

    index: int
    stamp_ns: int
    keys: set = field(default_factory=set)     # (topic, stamp_ns) messages it needs
    lidar_key: tuple | None = None
    lidar_dt_ms: float = float('nan')
    unc_key: tuple | None = None
    image_key: tuple | None = None
    receive_ns: int | None = None
    status: str = 'pending'
    reason: str = ''
    released: bool = False
    row: dict = field(default_factory=dict)


def _fast_stamp_ns(conn, raw) -> int | None:
    """Header stamp straight from CDR bytes (header is the first field); None if not CDR."""
    ext = getattr(conn, 'ext', None)
    if getattr(ext, 'serialization_format', None) != 'cdr' or len(raw) < 12:
        return None
    order = '<' if raw[1] == 1 else '>'
    sec = int(np.frombuffer(bytes(raw[4:8]), f'{order}i4')[0])
    nsec = int(np.frombuffer(bytes(raw[8:12]), f'{order}u4')[0])
    return sec * 1_000_000_000 + nsec


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return {'mean': float('nan'), 'p50': float('nan'), 'p95': float('nan'),
                'max': float('nan'), 'n': 0}
    return {'mean': float(v.mean()), 'p50': float(np.percentile(v, 50)),
            'p95': float(np.percentile(v, 95)), 'max': float(v.max()), 'n': int(v.size)}


# --- the evaluator -------------------------------------------------------------------------

def evaluate_bag(bag_path: str | os.PathLike | Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike | None = None, estimator: Any = None,
                 depth_topic: str | None = None, uncertainty_topic: str | None = None,
                 image_topic: str | None = None, camera_info_topic: str | None = None,
                 depth_camera_info_topic: str | None = None, lidar_topic: str | None = None,
                 tolerance_ms: float = 50.0, min_depth: float = 1e-3, max_depth: float = 80.0,
                 crop: str | None = 'garg', tx_mode: str = 'auto',
                 max_frames: int | None = None, n_panels: int = 3, write_report: bool = True,
                 seed: int = 0, baselines: Mapping[str, Mapping] | None = None,
                 frame_range: tuple[int, int | None] | None = None,
                 on_frame: Callable[..., None] | None = None,
                 frames_out: list | None = None) -> dict:
    """Evaluate depth in a bag against LiDAR ground truth and (optionally) write the report.

    Args:
        bag_path: rosbag2 folder / file, ROS 1 bag, or a list of them read together.
        out_dir: where metrics.json, per_frame.csv, report.md/html and figures go (None: none).
        estimator: mode (a): object with ``estimate(image uint8 (H, W, 3), K (3, 3),
            encoding='rgb8')`` returning ``.depth_m`` (H', W') metres (NaN invalid),
            ``.uncertainty`` (same shape, higher = less reliable; metres expected), ``.K``.
        depth_topic: mode (b): recorded depth image topic (32FC1 m or 16UC1 mm).
        uncertainty_topic: mode (b): recorded uncertainty topic (32FC1), optional.
        image_topic, camera_info_topic, lidar_topic: auto-detected when None (by type,
            preferring names with ``image_raw``/``image_rect``/``camera_info`` beside the image).
        depth_camera_info_topic: mode (b) intrinsics of the depth image; default
            ``<depth_topic>/camera_info``, else the image's camera_info (K rescaled to size).
        tolerance_ms: largest |image stamp - LiDAR stamp| accepted, milliseconds.
        min_depth, max_depth: evaluation range, metres. crop: 'garg', 'eigen' or None.
        tx_mode: stereo ``P`` Tx rule, see :mod:`.lidar_gt`.
        max_frames: evaluate at most this many frames (the first ones).
        baselines: {label: earlier result (or its metrics.json)} shown beside this run in
            the report (e.g. ``{'untrained': ...}``); see :func:`.report.headline`.
        frame_range: ``(lo, hi)``: evaluate only frames with index in [lo, hi) (hi None: to
            the end); the others are 'not evaluated'. A fleet shard (:mod:`.fleet`).
        on_frame: called for every evaluated frame as ``on_frame(frame, pred_m, unc, gt_m,
            K, image)`` (frame: its ``.index``, ``.stamp_ns``, ``.row`` of metrics).
        frames_out: when a list, every frame record (evaluated or not) is appended to it.
    Returns:
        the metrics dict also written to ``metrics.json`` (see docs in the report).
    Raises:
        DataError: unreadable bag, missing topic/TF/camera_info, or no usable frame.
        ConfigError: neither or both of ``estimator`` and ``depth_topic`` given.
    """
    if (estimator is None) == (depth_topic is None):
        raise ConfigError('give exactly one of estimator (mode a: --model) and depth_topic '
                          '(mode b: --depth-topic)')
    if tx_mode not in TX_MODES:
        raise ConfigError(f'tx_mode={tx_mode!r} is not one of {list(TX_MODES)}')
    if crop not in (None, 'none', 'garg', 'eigen'):
        raise ConfigError(f'crop={crop!r} is not one of garg, eigen, none')
    crop = None if crop == 'none' else crop
    paths = [bag_path] if isinstance(bag_path, (str, os.PathLike)) else list(bag_path)
    mode = 'estimator' if estimator is not None else 'topic'
    t_start = time.perf_counter()
    reader = open_bag(paths)
    try:
        result, series = _evaluate(reader, mode, estimator, depth_topic, uncertainty_topic,
                                   image_topic, camera_info_topic, depth_camera_info_topic,
                                   lidar_topic, tolerance_ms, min_depth, max_depth, crop,
                                   tx_mode, max_frames, n_panels, seed, frame_range, on_frame)
    finally:
        reader.close()
    if frames_out is not None:
        frames_out.extend(series['frames'])
    if getattr(reader, 'warning', ''):  # a cut-off MCAP, evaluated up to the cut
        result['warnings'].insert(0, reader.warning)
    result['bag'] = [str(p) for p in paths]
    result['wall_s'] = time.perf_counter() - t_start
    if baselines:
        result['baselines'] = {str(k): headline(v) for k, v in baselines.items()}
    if out_dir is not None and write_report:
        from .report import write_outputs
        write_outputs(out_dir, result, series)
    if result['frames']['used'] == 0:
        raise DataError(f'no frame of {result["bag"]!r} could be evaluated; skip reasons: '
                        f'{result["frames"]["skip_reasons"]!r}'
                        + (f' (partial report in {str(out_dir)!r})' if out_dir else ''))
    return result


def load_baseline(spec: str) -> tuple[str, dict]:
    """``LABEL=path/to/metrics.json`` -> (label, result); raises ConfigError when unusable."""
    label, sep, path = spec.partition('=')
    if not sep or not label or not path:
        raise ConfigError(f'--compare {spec!r}: expected LABEL=path/to/metrics.json')
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f'--compare {spec!r}: cannot read {path!r} ({exc}); give the '
                          'metrics.json of an earlier urcdc-bag-eval run') from exc
    if not isinstance(data, dict) or 'metrics' not in data:
        raise ConfigError(f'--compare {spec!r}: {path!r} has no "metrics" block; give the '
                          'metrics.json of an earlier urcdc-bag-eval run')
    return label, data


def _evaluate(reader, mode, estimator, depth_topic, uncertainty_topic, image_topic,
              camera_info_topic, depth_camera_info_topic, lidar_topic, tolerance_ms,
              min_depth, max_depth, crop, tx_mode, max_frames, n_panels, seed,
              frame_range=None, on_frame=None):
    topics = bag_topics(reader)
    warnings: list[str] = []
    # ---- topics
    if mode == 'topic':
        depth_topic = _require(topics, depth_topic, bag_io.IMAGE_TYPE, '--depth-topic')
        if uncertainty_topic is not None:
            uncertainty_topic = _require(topics, uncertainty_topic, bag_io.IMAGE_TYPE,
                                         '--uncertainty-topic')
    derived = [t for t in (depth_topic, uncertainty_topic) if t]
    if image_topic is not None:
        image_topic = _require(topics, image_topic, bag_io.IMAGE_TYPE, '--image-topic')
    else:
        try:
            image_topic = _pick(topics, bag_io.IMAGE_TYPE, 'camera image', '--image-topic',
                                exclude=derived, prefer=('image_raw', 'image_rect', 'image'))
        except DataError:
            if mode == 'estimator':
                raise
            image_topic = None  # mode (b) needs the image only for panels and dropped frames
    lidar_topic = (_require(topics, lidar_topic, bag_io.POINTCLOUD_TYPE, '--lidar-topic')
                   if lidar_topic else
                   _pick(topics, bag_io.POINTCLOUD_TYPE, 'LiDAR point cloud', '--lidar-topic',
                         prefer=('velo', 'lidar', 'points_raw')))
    if camera_info_topic is not None:
        camera_info_topic = _require(topics, camera_info_topic, bag_io.CAMERA_INFO_TYPE,
                                     '--camera-info-topic')
    elif image_topic is not None:
        excl = [f'{t}/camera_info' for t in derived]
        excl += [f'{_namespace(t)}/camera_info' for t in derived if _namespace(t)]
        camera_info_topic = _camera_info_for(topics, image_topic, exclude=excl)
    if mode == 'topic':
        if depth_camera_info_topic is not None:
            depth_camera_info_topic = _require(topics, depth_camera_info_topic,
                                               bag_io.CAMERA_INFO_TYPE,
                                               '--depth-camera-info-topic')
        else:
            for cand in (f'{depth_topic}/camera_info', f'{_namespace(depth_topic)}/camera_info'):
                if topics.get(cand) == bag_io.CAMERA_INFO_TYPE:
                    depth_camera_info_topic = cand
                    break
            else:
                depth_camera_info_topic = camera_info_topic
        info_topic = depth_camera_info_topic
    else:
        info_topic = camera_info_topic
    if info_topic is None:
        raise DataError('the bag has no camera_info for the '
                        f'{"depth" if mode == "topic" else "image"} topic, so LiDAR points '
                        'cannot be projected; record the CameraInfo topic (or pass '
                        f'--camera-info-topic); topics present: {_topics_text(topics)}')
    tf_topics = [t for t in TF_TOPICS if topics.get(t) == bag_io.TF_TYPE]
    primary = depth_topic if mode == 'topic' else image_topic
    used_topics = {'primary': primary, 'image': image_topic, 'camera_info': info_topic,
                   'lidar': lidar_topic, 'uncertainty': uncertainty_topic, 'tf': tf_topics}
    if not tf_topics:
        warnings.append('the bag has no /tf_static or /tf; LiDAR and camera must then share '
                        'one frame_id')
    LOG.info('evaluating %s on %s with LiDAR %s, intrinsics %s, TF %s', mode, primary,
             lidar_topic, info_topic, tf_topics or 'none')

    # ---- pass 1: stamps, camera_info, TF
    tree = bag_io.TransformTree()
    infos: list[tuple[int, Any]] = []
    stamps: dict[str, list[tuple[int, int]]] = defaultdict(list)  # topic -> (stamp, recv)
    read_error = None
    want = {primary, lidar_topic, info_topic, *tf_topics}
    if image_topic:
        want.add(image_topic)
    if uncertainty_topic:
        want.add(uncertainty_topic)
    conns = [c for c in reader.connections if c.topic in want]
    n_read = 0
    try:
        for conn, recv_ns, raw in reader.messages(connections=conns):
            n_read += 1
            if conn.topic in tf_topics:
                tree.add_message(reader.deserialize(raw, conn.msgtype))
                continue
            if conn.topic == info_topic:
                msg = reader.deserialize(raw, conn.msgtype)
                infos.append((bag_io.stamp_ns(msg), msg))
                if conn.topic not in (primary, image_topic):
                    continue
            st = _fast_stamp_ns(conn, raw)
            if st is None:
                st = bag_io.stamp_ns(reader.deserialize(raw, conn.msgtype))
            stamps[conn.topic].append((st, recv_ns))
    except Exception as exc:  # reason: a truncated file surfaces as various rosbags errors
        read_error = (f'bag read stopped after {n_read} messages: {type(exc).__name__}: {exc} '
                      '(truncated or corrupt); frames after that point are missing')
        LOG.warning('%s', read_error)
        warnings.append(read_error)
    if not infos:
        raise DataError(f'camera_info topic {info_topic!r} holds no readable message; the '
                        'LiDAR cannot be projected without intrinsics')
    info_stamps = np.array([s for s, _ in infos], np.int64)
    if not stamps.get(primary):
        raise DataError(f'topic {primary!r} holds no readable message'
                        + (f' ({read_error})' if read_error else ''))

    # ---- frames: match primary -> LiDAR (nearest stamp), uncertainty / image (same stamp)
    lidar_st = np.array(sorted({s for s, _ in stamps.get(lidar_topic, [])}), np.int64)
    unc_set = {s for s, _ in stamps.get(uncertainty_topic, [])} if uncertainty_topic else set()
    img_set = {s for s, _ in stamps.get(image_topic, [])} if image_topic else set()
    seen: set[int] = set()
    frames: list[_Frame] = []
    tol_ns = int(tolerance_ms * 1e6)
    for st, recv in sorted(stamps[primary]):
        if st in seen:
            continue
        seen.add(st)
        fr = _Frame(index=len(frames), stamp_ns=st, receive_ns=recv)
        fr.keys.add((primary, st))
        frames.append(fr)
        if lidar_st.size == 0:
            fr.status, fr.reason = 'skipped', 'no LiDAR scan in the bag'
            continue
        j = int(np.clip(np.searchsorted(lidar_st, st), 1, max(lidar_st.size - 1, 1)))
        cand = [k for k in (j - 1, j) if 0 <= k < lidar_st.size]
        k = min(cand, key=lambda k: abs(int(lidar_st[k]) - st))
        fr.lidar_dt_ms = (int(lidar_st[k]) - st) / 1e6
        if abs(int(lidar_st[k]) - st) > tol_ns:
            fr.status = 'skipped'
            fr.reason = f'no LiDAR scan within {tolerance_ms:g} ms'
            continue
        fr.lidar_key = (lidar_topic, int(lidar_st[k]))
        fr.keys.add(fr.lidar_key)
        if uncertainty_topic and st in unc_set:
            fr.unc_key = (uncertainty_topic, st)
            fr.keys.add(fr.unc_key)
        if mode == 'estimator':
            fr.image_key = (image_topic, st)
    if max_frames is not None:
        for fr in frames[int(max_frames):]:
            if fr.status == 'pending':
                fr.status, fr.reason = 'not evaluated', f'beyond --max-frames {max_frames}'
    if frame_range is not None:
        lo, hi = frame_range
        for fr in frames:
            if fr.status == 'pending' and not (lo <= fr.index and (hi is None or fr.index < hi)):
                fr.status, fr.reason = 'not evaluated', f'outside frame range [{lo}, {hi})'
    pending = [f for f in frames if f.status == 'pending']
    panel_ids = set()
    if pending and n_panels:
        picks = np.linspace(0, len(pending) - 1, min(n_panels, len(pending))).round()
        panel_ids = {pending[int(i)].index for i in picks}
    if mode == 'topic' and image_topic:
        for fr in pending:
            if fr.index in panel_ids and fr.stamp_ns in img_set:
                fr.image_key = (image_topic, fr.stamp_ns)
                fr.keys.add(fr.image_key)

    # ---- pass 2: load what each pending frame needs, evaluate as soon as it is complete
    waiting: dict[tuple, list[_Frame]] = defaultdict(list)
    for fr in pending:
        for key in fr.keys:
            waiting[key].append(fr)
    refs = {key: len(v) for key, v in waiting.items()}
    store: dict[tuple, Any] = {}
    read_ms: dict[int, float] = defaultdict(float)
    acc = MetricAccumulator()
    pooled: dict[str, list[np.ndarray]] = defaultdict(list)
    panels: list[dict] = []
    rng = np.random.default_rng(seed)
    tf_cache: dict[tuple[str, str], np.ndarray] = {}
    timing: dict[str, list[float]] = defaultdict(list)
    need_topics = {t for t, _ in waiting}
    conns = [c for c in reader.connections if c.topic in need_topics]
    ctx = dict(mode=mode, estimator=estimator, infos=infos, info_stamps=info_stamps,
               tree=tree, tf_cache=tf_cache, tx_mode=tx_mode, min_depth=min_depth,
               max_depth=max_depth, crop=crop, primary=primary, panel_ids=panel_ids,
               on_frame=on_frame)
    read_error2 = None
    it = reader.messages(connections=conns) if pending else iter(())
    while True:
        try:
            conn, _, raw = next(it)
        except StopIteration:
            break
        except Exception as exc:  # reason: truncation surfaces as various rosbags errors
            read_error2 = (f'bag read stopped: {type(exc).__name__}: {exc} (truncated or '
                           'corrupt); frames after that point are missing')
            LOG.warning('%s', read_error2)
            if read_error is None:
                warnings.append(read_error2)
            break
        t0 = time.perf_counter()
        st = _fast_stamp_ns(conn, raw)
        msg = None
        if st is None:
            msg = reader.deserialize(raw, conn.msgtype)
            st = bag_io.stamp_ns(msg)
        key = (conn.topic, st)
        if key not in waiting or key in store:
            continue
        if refs.get(key, 0) <= 0:  # every frame needing it is already done (skipped)
            waiting.pop(key, None)
            continue
        try:
            msg = msg if msg is not None else reader.deserialize(raw, conn.msgtype)
            store[key] = _convert(conn.msgtype, msg)
        except Exception as exc:  # reason: one bad message drops its frames, not the run
            for fr in waiting[key]:
                fr.status = 'skipped'
                fr.reason = f'unreadable {conn.topic} message ({type(exc).__name__})'
            store[key] = None
        dt_ms = (time.perf_counter() - t0) * 1e3
        for fr in waiting[key]:
            read_ms[fr.index] += dt_ms / len(waiting[key])
        for fr in waiting.pop(key):
            if fr.status == 'pending' and all(k in store for k in fr.keys):
                fr.row['read_ms'] = read_ms[fr.index]
                _process(fr, store, ctx, acc, pooled, panels, timing, rng)
            if fr.status != 'pending' and not fr.released:
                fr.released = True
                for k in fr.keys:
                    refs[k] -= 1
                    if refs[k] <= 0:
                        store.pop(k, None)
    for fr in frames:
        if fr.status == 'pending':
            missing = [k[0] for k in fr.keys if k not in store] or ['a message']
            fr.status = 'skipped'
            fr.reason = ('bag ended before ' + ', '.join(sorted(set(missing))) + ' was read'
                         if (read_error or read_error2) else
                         'message unreadable: ' + ', '.join(sorted(set(missing))))

    # ---- summary
    used = [f for f in frames if f.status == 'ok']
    reasons = Counter(f.reason for f in frames if f.status != 'ok')
    result: dict[str, Any] = {
        'mode': mode, 'topics': used_topics,
        'protocol': {'min_depth_m': min_depth, 'max_depth_m': max_depth, 'crop': crop or 'none',
                     'tolerance_ms': tolerance_ms, 'tx_mode': tx_mode,
                     'averaging': 'per-image mean (metrics); pooled pixels (by_range, '
                                  'uncertainty)'},
        'frames': {'total': len(frames), 'used': len(used),
                   'skipped': len(frames) - len(used), 'skip_reasons': dict(reasons)},
        'warnings': warnings,
    }
    result['metrics'] = acc.mean()
    result['metrics']['coverage'] = float(np.nanmean([f.row['coverage'] for f in used])) \
        if used else float('nan')
    result['metrics']['n_pixels'] = int(sum(f.row['n'] for f in used))
    p = np.concatenate(pooled['pred']) if pooled['pred'] else np.zeros(0)
    g = np.concatenate(pooled['gt']) if pooled['gt'] else np.zeros(0)
    u = np.concatenate(pooled['unc']) if pooled['unc'] else np.zeros(0)
    result['by_range'] = metrics_by_range(p, g) if p.size else {}
    unc_block: dict[str, Any] = {'available': bool(u.size)}
    curves: dict[str, Any] = {}
    if unc_block['available']:
        up, ug = np.concatenate(pooled['unc_pred']), np.concatenate(pooled['unc_gt'])
        abs_err = np.abs(up - ug)
        rel_err = abs_err / ug
        unc_block.update({f'{k}_abs_rel': v for k, v in ause_aurg(rel_err, u).items()})
        unc_block.update({f'{k}_abs_m': v for k, v in ause_aurg(abs_err, u).items()})
        unc_block['ause'] = unc_block['ause_abs_rel']
        unc_block['aurg'] = unc_block['aurg_abs_rel']
        unc_block['mean_predicted_m'] = float(np.mean(u))
        unc_block['mean_observed_abs_err_m'] = float(np.mean(abs_err))
        curves['sparsification'] = sparsification_curve(rel_err, u)
        curves['calibration'] = calibration_bins(abs_err, u, bins=12)
    result['uncertainty'] = unc_block
    tm = {name: _stats(vals) for name, vals in timing.items()}
    tm['read'] = _stats([f.row.get('read_ms', np.nan) for f in used])
    overhead = [f.row.get('read_ms', 0) + f.row.get('gt_ms', 0) + f.row.get('metrics_ms', 0)
                for f in used]
    tm['overhead_total'] = _stats(overhead)
    result['timings_ms'] = tm
    if mode == 'topic':
        lat = [(f.receive_ns - f.stamp_ns) / 1e6 for f in frames if f.receive_ns is not None]
        result['latency_ms'] = _stats(lat)
        if image_topic:
            depth_set = {f.stamp_ns for f in frames}
            n_img = len(img_set)
            result['dropped'] = {'images': n_img, 'depth_frames': len(depth_set & img_set),
                                 'dropped': len(img_set - depth_set),
                                 'drop_rate': (len(img_set - depth_set) / n_img) if n_img
                                 else float('nan')}
    m = result['metrics']
    if used and (m['abs_rel'] > 0.5 or m['d1'] < 0.5):
        w = (f'predictions and LiDAR disagree grossly (AbsRel {m["abs_rel"]:.3f}, d1 '
             f'{m["d1"]:.3f}): check the TF between {lidar_topic} and the camera frame, the '
             'camera_info intrinsics, the depth unit and the Tx rule (--tx-mode)')
        LOG.warning('%s', w)
        warnings.append(w)
    series = {'frames': frames, 'pred': p, 'gt': g, 'unc': u, 'curves': curves,
              'panels': panels, 'stamps': stamps, 'image_topic': image_topic}
    return result, series


def _convert(msgtype: str, msg) -> Any:
    if msgtype == bag_io.IMAGE_TYPE:
        return {'array': bag_io.image_to_numpy(msg), 'frame_id': msg.header.frame_id,
                'encoding': msg.encoding}
    if msgtype == bag_io.POINTCLOUD_TYPE:
        return {'xyz': bag_io.pointcloud_to_xyz(msg), 'frame_id': msg.header.frame_id}
    return msg


def _nearest_info(ctx, stamp_ns: int):
    i = int(np.argmin(np.abs(ctx['info_stamps'] - stamp_ns)))
    return bag_io.camera_info_to_numpy(ctx['infos'][i][1])


def _process(fr: _Frame, store, ctx, acc, pooled, panels, timing, rng) -> None:
    """Predict (mode a) or take the recorded depth (mode b), build GT, compute metrics."""
    K_info, P_info, w_info, h_info = _nearest_info(ctx, fr.stamp_ns)
    unc = None
    image = None
    if ctx['mode'] == 'estimator':
        img = store[fr.image_key]
        image = img['array']
        if image.ndim != 3:
            image = np.repeat(image[..., None], 3, axis=2).astype(np.uint8)
        frame_id = img['frame_id']
        t0 = time.perf_counter()
        res = ctx['estimator'].estimate(image, K_info, encoding='rgb8')
        timing['model'].append((time.perf_counter() - t0) * 1e3)
        pred = np.asarray(res.depth_m, np.float32)
        unc = getattr(res, 'uncertainty', None)
        K = np.asarray(getattr(res, 'K', K_info), np.float64)
    else:
        d = store[(ctx['primary'], fr.stamp_ns)]
        pred = d['array'].astype(np.float32, copy=False)
        if pred.ndim != 2:
            fr.status = 'skipped'
            fr.reason = f'depth image is not single-channel ({d["encoding"]})'
            return
        frame_id = d['frame_id']
        if fr.unc_key is not None:
            unc = store[fr.unc_key]['array']
        if fr.image_key is not None:
            image = store[fr.image_key]['array']
        h, w = pred.shape
        K = (K_info if (w, h) == (w_info, h_info)
             else scale_intrinsics(K_info, (w_info, h_info), (w, h)))
    h, w = pred.shape
    cloud = store[fr.lidar_key]
    t0 = time.perf_counter()
    key = (frame_id, cloud['frame_id'])
    if key not in ctx['tf_cache']:
        if not frame_id or not cloud['frame_id']:
            raise DataError(f'empty frame_id (camera {frame_id!r}, LiDAR '
                            f'{cloud["frame_id"]!r}); the bag cannot be georeferenced')
        ctx['tf_cache'][key] = ctx['tree'].lookup(frame_id, cloud['frame_id'])
    gt = lidar_depth(cloud['xyz'], ctx['tf_cache'][key], K, w, h, P=P_info,
                     tx_mode=ctx['tx_mode'])
    gt_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    mask = valid_mask(gt, ctx['min_depth'], ctx['max_depth'], ctx['crop'])
    if not mask.any():
        fr.status = 'skipped'
        fr.reason = 'no LiDAR return inside the image' + (
            f' ({ctx["crop"]} crop)' if ctx['crop'] else '')
        return
    sel, p, g = protocol_pairs(pred, gt, mask, ctx['min_depth'], ctx['max_depth'])
    if p.size == 0:
        fr.status, fr.reason = 'skipped', 'prediction is invalid (NaN) on every LiDAR pixel'
        return
    m = depth_metrics(p, g)
    m['n'] = int(p.size)
    m['coverage'] = p.size / int(np.count_nonzero(mask))
    p, g = p.astype(np.float32), g.astype(np.float32)  # pooled for the report
    u = None
    if unc is not None and np.shape(unc) == pred.shape:
        u = np.asarray(unc, np.float32)[sel]
        ok = np.isfinite(u)
        if not ok.all():
            p, g, u = p[ok], g[ok], u[ok]
    if p.size > POOL_PER_FRAME:
        idx = rng.choice(p.size, POOL_PER_FRAME, replace=False)
        p, g = p[idx], g[idx]
        u = u[idx] if u is not None else None
    pooled['pred'].append(p)
    pooled['gt'].append(g)
    if u is not None:  # pooled separately: frames without uncertainty still count above
        pooled['unc'].append(u)
        pooled['unc_pred'].append(p)
        pooled['unc_gt'].append(g)
    metrics_ms = (time.perf_counter() - t0) * 1e3
    acc.add(m)
    timing['gt_projection'].append(gt_ms)
    timing['metrics'].append(metrics_ms)
    fr.row.update({k: m[k] for k in METRIC_NAMES})
    fr.row.update({'n': m['n'], 'coverage': m['coverage'], 'gt_ms': gt_ms,
                   'metrics_ms': metrics_ms})
    if ctx['mode'] == 'estimator':
        fr.row['model_ms'] = timing['model'][-1]
    fr.status = 'ok'
    if ctx['on_frame'] is not None:
        ctx['on_frame'](fr, pred, unc, gt, K, image)
    if fr.index in ctx['panel_ids']:
        panels.append({'index': fr.index, 'stamp_ns': fr.stamp_ns, 'image': image,
                       'pred': pred, 'unc': None if unc is None else np.asarray(unc, np.float32),
                       'gt': gt, 'abs_rel': m['abs_rel']})


# --- command line --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``urcdc-bag-eval``."""
    p = argparse.ArgumentParser(
        prog='urcdc-bag-eval', description=__doc__.split('\n')[0],
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
    p.add_argument('--image-topic', help='camera image topic (auto when unique)')
    p.add_argument('--camera-info-topic', help='camera_info of the image (auto)')
    p.add_argument('--depth-camera-info-topic', help='mode (b): camera_info of the depth')
    p.add_argument('--lidar-topic', help='PointCloud2 topic (auto when unique)')
    p.add_argument('--tolerance-ms', type=float, default=50.0,
                   help='max |camera - LiDAR| stamp difference, ms')
    p.add_argument('--min-depth', type=float, default=1e-3, help='evaluation minimum, m')
    p.add_argument('--max-depth', type=float, default=80.0, help='evaluation maximum, m')
    p.add_argument('--crop', choices=('garg', 'eigen', 'none'), default='garg')
    p.add_argument('--flip-tta', action='store_true', help='mode (a): flip test-time aug.')
    p.add_argument('--tx-mode', choices=TX_MODES, default='auto',
                   help='stereo P Tx rule (see lidar_gt): auto/tf = TF holds the baseline')
    p.add_argument('--max-frames', type=int, help='evaluate only the first N frames')
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
    kw = dict(image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
              lidar_topic=args.lidar_topic, tolerance_ms=args.tolerance_ms,
              min_depth=args.min_depth, max_depth=args.max_depth, crop=args.crop,
              tx_mode=args.tx_mode, max_frames=args.max_frames, n_panels=args.panels)
    try:
        kw['baselines'] = dict(load_baseline(spec) for spec in args.compare) or None
        if args.replay:
            if len(args.bags) > 1:
                raise ConfigError(f'--replay plays one bag, got {len(args.bags)}: '
                                  f'{args.bags!r}; replay each separately')
            from .replay import replay_and_evaluate
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
            result = evaluate_bag(args.bags, args.out, estimator=est, **kw)
        elif args.depth_topic:
            result = evaluate_bag(args.bags, args.out, depth_topic=args.depth_topic,
                                  uncertainty_topic=args.uncertainty_topic,
                                  depth_camera_info_topic=args.depth_camera_info_topic, **kw)
        else:
            raise ConfigError('choose a mode: --model M (run the estimator), --depth-topic T '
                              '(evaluate a recorded topic) or --replay (run the node)')
    except UrcdcDepthError as exc:
        LOG.error('%s', exc)
        return 2
    m = result['metrics']
    LOG.info('%d/%d frames: AbsRel %.4f RMSE %.3f d1 %.4f; report in %s',
             result['frames']['used'], result['frames']['total'], m['abs_rel'], m['rms'],
             m['d1'], os.path.join(args.out, 'report.html'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
