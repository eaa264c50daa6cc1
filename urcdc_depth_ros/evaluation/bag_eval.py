"""Evaluate monocular depth in a bag against LiDAR ground truth (``urcdc-bag-eval``'s engine).

Two modes, one protocol:

* (a) estimator: run a :class:`DepthEstimator` (``--model``) over the bag's camera images;
* (b) topic: evaluate a recorded depth topic (``--depth-topic``, 32FC1 metres, or 16UC1 mm)
  and optionally its uncertainty topic, as the running node published them, matched to the
  LiDAR by header stamp.

Ground truth per frame: the LiDAR cloud nearest in header stamp (within ``tolerance_ms``),
moved into the depth image's ``frame_id`` with the bag's ``/tf_static`` (and ``/tf``) chain
and projected with the CameraInfo intrinsics (nearest return per pixel; see
:mod:`.lidar_gt` for the stereo ``Tx`` rule). Metrics are the nine of the official
evaluation (:mod:`urcdc_depth_ros.metrics`; predictions clamped to [min_depth, max_depth], GT
valid in (min_depth, max_depth), Garg crop by default), averaged per image; per-range rows,
AUSE/AURG and calibration pool all valid pixels of all frames.

:func:`evaluate_bag` runs five named steps, each callable on its own (the replay, a sharded
evaluator and the tests do):

1. :func:`.bag_topics.resolve_topics`: which topics to read (:class:`.bag_topics.EvalTopics`);
2. :func:`collect_index` (pass 1): stamps of every frame, all camera_info, the TF tree;
3. :func:`match_frames`: one :class:`EvalFrame` per primary stamp, with its LiDAR scan;
4. :func:`score_frames` (pass 2): read each frame's messages, predict or take the recorded
   depth, project the LiDAR, score; per-frame rows land on the frames. Any subset of the
   frames can be scored alone, with the same rows as in a full run (deterministic);
5. :func:`summarize`: the metrics.json dict and the series the report draws.

Bags are read with ``rosbags`` (rosbag2 MCAP or sqlite3, ROS 1 ``.bag``); no ROS install is
needed. Several bag paths may be given together (e.g. the original bag with the LiDAR and a
bag recorded from the node): they are read as one.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..config import KITTI_MAX_DEPTH_M
from ..errors import ConfigError, DataError
from ..metrics import (METRIC_NAMES, MetricAccumulator, ause_aurg, calibration_bins,
                       depth_metrics, metrics_by_range, protocol_pairs, sparsification_curve,
                       valid_mask)
from ..stamps import stamp_to_ns
from . import bag_io
from .bag_topics import EvalTopics, bag_topics, open_bag, resolve_topics
from .lidar_gt import TX_MODES, depth_image_intrinsics, lidar_depth
from .report import headline

logger = logging.getLogger(__name__)

POOL_PER_FRAME = 50_000  # pooled pixels kept per frame (random subset beyond), bounds memory
CROPS = (None, 'garg', 'eigen')


# --- the steps' inputs and outputs ---------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """How frames are matched and scored: the ``protocol`` block of metrics.json.

    ``tolerance_ms``: largest |primary stamp - LiDAR stamp|, milliseconds; ``min_depth``,
    ``max_depth``: evaluation range, metres; ``crop``: ``'garg'``, ``'eigen'`` or None
    (``'none'`` is accepted); ``tx_mode``: the stereo ``P`` Tx rule of :mod:`.lidar_gt`.
    """

    tolerance_ms: float = 50.0
    min_depth: float = 1e-3
    max_depth: float = KITTI_MAX_DEPTH_M
    crop: str | None = 'garg'
    tx_mode: str = 'auto'

    def __post_init__(self) -> None:
        """Normalise ``crop='none'`` to None; ConfigError for an unknown crop or Tx rule."""
        if self.tx_mode not in TX_MODES:
            raise ConfigError(f'tx_mode={self.tx_mode!r} is not one of {list(TX_MODES)}')
        if self.crop not in (*CROPS, 'none'):
            raise ConfigError(f'crop={self.crop!r} is not one of garg, eigen, none')
        if self.crop == 'none':
            object.__setattr__(self, 'crop', None)

    def as_dict(self) -> dict:
        """The ``protocol`` block of metrics.json."""
        return {'min_depth_m': self.min_depth, 'max_depth_m': self.max_depth,
                'crop': self.crop or 'none', 'tolerance_ms': self.tolerance_ms,
                'tx_mode': self.tx_mode,
                'averaging': 'per-image mean (metrics); pooled pixels (by_range, uncertainty)'}


@dataclass
class BagIndex:
    """What pass 1 (:func:`collect_index`) learns from the bag before any image is decoded.

    ``stamps``: ``{topic: [(header stamp ns, log time ns), ...]}`` for the primary, LiDAR,
    image and uncertainty topics; ``infos``: every ``(stamp ns, CameraInfo)`` of the primary's
    camera_info; ``tree``: the TF tree; ``read_error``: why reading stopped early, if it did.
    """

    tree: bag_io.TransformTree
    infos: list[tuple[int, Any]]
    stamps: dict[str, list[tuple[int, int]]]
    read_error: str | None = None

    def __post_init__(self) -> None:
        """Index the camera_info stamps once."""
        self.info_stamps = np.array([s for s, _ in self.infos], np.int64)

    def camera_info_at(self, stamp_ns: int):
        """``(K, P, width, height)`` of the camera_info nearest in stamp to ``stamp_ns``."""
        i = int(np.argmin(np.abs(self.info_stamps - stamp_ns)))
        return bag_io.camera_info_to_numpy(self.infos[i][1])

    def stamp_set(self, topic: str | None) -> set[int]:
        """Header stamps (ns) seen on ``topic`` (empty for None)."""
        return {s for s, _ in self.stamps.get(topic, [])} if topic else set()

    def first_log_ns(self) -> dict[tuple[str, int], int]:
        """``{(topic, stamp ns): log time ns}`` of each message's first occurrence."""
        out: dict[tuple[str, int], int] = {}
        for topic, rows in self.stamps.items():
            for st, log_ns in rows:
                key = (topic, st)
                out[key] = min(out.get(key, log_ns), log_ns)
        return out


@dataclass
class EvalFrame:
    """One evaluation frame: the primary (prediction source) message and what it needs.

    ``status`` is ``'pending'`` until scored, then ``'ok'``, ``'skipped'`` or
    ``'not evaluated'`` with a ``reason``; ``row`` holds the per-frame metrics and timings (ms)
    of per_frame.csv; ``samples`` the pooled ``(pred m, gt m, uncertainty or None)`` pixels;
    ``panel_data`` the arrays of a report panel when ``panel`` is set.
    """

    index: int
    stamp_ns: int
    keys: set = field(default_factory=set)     # (topic, stamp_ns) messages it needs
    lidar_key: tuple | None = None
    lidar_dt_ms: float = float('nan')
    unc_key: tuple | None = None
    image_key: tuple | None = None
    receive_ns: int | None = None
    panel: bool = False
    status: str = 'pending'
    reason: str = ''
    released: bool = False
    read_ms: float = 0.0
    model_ms: float | None = None
    row: dict = field(default_factory=dict)
    samples: tuple | None = None
    panel_data: dict | None = None

    def skip(self, reason: str, status: str = 'skipped') -> None:
        """Mark the frame as not scored, with the reason shown in the report."""
        self.status, self.reason = status, reason


def _stamp_of(reader, conn, raw):
    """``(header stamp ns, deserialised message or None)``; decodes only without CDR."""
    st = bag_io.connection_stamp_ns(conn, raw)
    if st is not None:
        return st, None
    msg = reader.deserialize(raw, conn.msgtype)
    return stamp_to_ns(msg.header.stamp), msg


# --- step 2: pass 1 ------------------------------------------------------------------------

def collect_index(reader, topics: EvalTopics) -> BagIndex:
    """Pass 1: header stamps of the frame topics, every camera_info, the TF tree.

    Only TF and camera_info messages are deserialised; other stamps come from the CDR header.
    A read error (truncated bag) ends the pass with ``read_error`` set.

    Raises:
        DataError: the camera_info topic or the primary topic holds no readable message.
    """
    tree = bag_io.TransformTree()
    infos: list[tuple[int, Any]] = []
    stamps: dict[str, list[tuple[int, int]]] = defaultdict(list)
    read_error = None
    conns = [c for c in reader.connections if c.topic in topics.wanted()]
    n_read = 0
    try:
        for conn, recv_ns, raw in reader.messages(connections=conns):
            n_read += 1
            if conn.topic in topics.tf:
                tree.add_message(reader.deserialize(raw, conn.msgtype))
                continue
            if conn.topic == topics.camera_info:
                msg = reader.deserialize(raw, conn.msgtype)
                infos.append((stamp_to_ns(msg.header.stamp), msg))
                if conn.topic not in (topics.primary, topics.image):
                    continue
            stamps[conn.topic].append((_stamp_of(reader, conn, raw)[0], recv_ns))
    except Exception as exc:  # reason: a truncated file surfaces as various rosbags errors
        read_error = (f'bag read stopped after {n_read} messages: {type(exc).__name__}: {exc} '
                      '(truncated or corrupt); frames after that point are missing')
        logger.warning('%s', read_error)
    if not infos:
        raise DataError(f'camera_info topic {topics.camera_info!r} holds no readable message; '
                        'the LiDAR cannot be projected without intrinsics')
    if not stamps.get(topics.primary):
        raise DataError(f'topic {topics.primary!r} holds no readable message'
                        + (f' ({read_error})' if read_error else ''))
    return BagIndex(tree=tree, infos=infos, stamps=dict(stamps), read_error=read_error)


# --- step 3: frames ------------------------------------------------------------------------

def match_frames(index: BagIndex, topics: EvalTopics, tolerance_ms: float = 50.0,
                 max_frames: int | None = None, n_panels: int = 3) -> list[EvalFrame]:
    """One frame per distinct primary stamp, matched to the LiDAR scan nearest in stamp.

    Uncertainty and image messages are matched by equal stamp. Frames with no scan within
    ``tolerance_ms`` are skipped, those beyond ``max_frames`` are ``'not evaluated'``;
    ``n_panels`` evenly spaced pending frames are marked as report panels (mode ``'topic'``:
    they also load the camera image, when the bag has it).
    """
    lidar_st = np.array(sorted(index.stamp_set(topics.lidar)), np.int64)
    unc_set = index.stamp_set(topics.uncertainty)
    seen: set[int] = set()
    frames: list[EvalFrame] = []
    tol_ns = int(tolerance_ms * 1e6)
    for st, recv in sorted(index.stamps[topics.primary]):
        if st in seen:
            continue
        seen.add(st)
        fr = EvalFrame(index=len(frames), stamp_ns=st, receive_ns=recv)
        fr.keys.add((topics.primary, st))
        frames.append(fr)
        if lidar_st.size == 0:
            fr.skip('no LiDAR scan in the bag')
            continue
        j = int(np.clip(np.searchsorted(lidar_st, st), 1, max(lidar_st.size - 1, 1)))
        cand = [k for k in (j - 1, j) if 0 <= k < lidar_st.size]
        k = min(cand, key=lambda k: abs(int(lidar_st[k]) - st))
        fr.lidar_dt_ms = (int(lidar_st[k]) - st) / 1e6
        if abs(int(lidar_st[k]) - st) > tol_ns:
            fr.skip(f'no LiDAR scan within {tolerance_ms:g} ms')
            continue
        fr.lidar_key = (topics.lidar, int(lidar_st[k]))
        fr.keys.add(fr.lidar_key)
        if topics.uncertainty and st in unc_set:
            fr.unc_key = (topics.uncertainty, st)
            fr.keys.add(fr.unc_key)
        if topics.mode == 'estimator':
            fr.image_key = (topics.image, st)
    if max_frames is not None:
        for fr in frames[int(max_frames):]:
            if fr.status == 'pending':
                fr.skip(f'beyond --max-frames {max_frames}', status='not evaluated')
    pending = [f for f in frames if f.status == 'pending']
    if pending and n_panels:
        picks = np.linspace(0, len(pending) - 1, min(n_panels, len(pending))).round()
        for i in picks:
            pending[int(i)].panel = True
    img_set = index.stamp_set(topics.image)
    if topics.mode == 'topic' and topics.image:
        for fr in pending:
            if fr.panel and fr.stamp_ns in img_set:
                fr.image_key = (topics.image, fr.stamp_ns)
                fr.keys.add(fr.image_key)
    return frames


# --- step 4: pass 2 ------------------------------------------------------------------------

def _decode(msgtype: str, msg) -> Any:
    if msgtype == bag_io.IMAGE_TYPE:
        return {'array': bag_io.image_to_numpy(msg), 'frame_id': msg.header.frame_id,
                'encoding': msg.encoding}
    if msgtype == bag_io.POINTCLOUD_TYPE:
        return {'xyz': bag_io.pointcloud_to_xyz(msg), 'frame_id': msg.header.frame_id}
    return msg


@dataclass
class FrameScorer:
    """Scores one complete frame: everything that needs beyond the frame's own messages.

    ``estimator`` (mode ``'estimator'``) has ``estimate(image uint8 (H, W, 3), K (3, 3),
    encoding='rgb8')`` returning ``.depth_m`` (metres, NaN invalid), ``.uncertainty`` and
    ``.K``. The pooled-pixel subset of a frame is drawn from ``seed`` and the frame index, so
    a frame's samples do not depend on which other frames are scored with it.
    """

    index: BagIndex
    topics: EvalTopics
    protocol: Protocol
    estimator: Any = None
    seed: int = 0
    tf_cache: dict = field(default_factory=dict)

    def _prediction(self, fr: EvalFrame, store: dict):
        """``(pred m, uncertainty, K, P, frame_id, image)``; None when the depth is unusable."""
        K_info, P_info, w_info, h_info = self.index.camera_info_at(fr.stamp_ns)
        unc = image = None
        if self.topics.mode == 'estimator':
            img = store[fr.image_key]
            image = img['array']
            if image.ndim != 3:
                image = np.repeat(image[..., None], 3, axis=2).astype(np.uint8)
            t0 = time.perf_counter()
            res = self.estimator.estimate(image, K_info, encoding='rgb8')
            fr.model_ms = (time.perf_counter() - t0) * 1e3
            pred = np.asarray(res.depth_m, np.float32)
            unc = getattr(res, 'uncertainty', None)
            K = np.asarray(getattr(res, 'K', K_info), np.float64)
            return pred, unc, K, P_info, img['frame_id'], image
        d = store[(self.topics.primary, fr.stamp_ns)]
        pred = d['array'].astype(np.float32, copy=False)
        if pred.ndim != 2:
            fr.skip(f'depth image is not single-channel ({d["encoding"]})')
            return None
        if fr.unc_key is not None:
            unc = store[fr.unc_key]['array']
        if fr.image_key is not None:
            image = store[fr.image_key]['array']
        h, w = pred.shape
        K = depth_image_intrinsics(K_info, (w_info, h_info), (w, h))
        return pred, unc, K, P_info, d['frame_id'], image

    def _ground_truth(self, cloud: dict, frame_id: str, K, P, shape) -> np.ndarray:
        """Sparse LiDAR depth (H, W) metres in ``frame_id`` (0 = no return)."""
        key = (frame_id, cloud['frame_id'])
        if key not in self.tf_cache:
            if not frame_id or not cloud['frame_id']:
                raise DataError(f'empty frame_id (camera {frame_id!r}, LiDAR '
                                f'{cloud["frame_id"]!r}); the bag cannot be georeferenced')
            self.tf_cache[key] = self.index.tree.lookup(frame_id, cloud['frame_id'])
        h, w = shape
        return lidar_depth(cloud['xyz'], self.tf_cache[key], K, w, h, P=P,
                           tx_mode=self.protocol.tx_mode)

    def score(self, fr: EvalFrame, store: dict) -> None:
        """Predict or take the recorded depth, build GT, score; sets ``fr.status``/``row``."""
        pr = self.protocol
        got = self._prediction(fr, store)
        if got is None:
            return
        pred, unc, K, P, frame_id, image = got
        t0 = time.perf_counter()
        gt = self._ground_truth(store[fr.lidar_key], frame_id, K, P, pred.shape)
        gt_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        mask = valid_mask(gt, pr.min_depth, pr.max_depth, pr.crop)
        if not mask.any():
            fr.skip('no LiDAR return inside the image' + (f' ({pr.crop} crop)' if pr.crop
                                                          else ''))
            return
        sel, p, g = protocol_pairs(pred, gt, mask, pr.min_depth, pr.max_depth)
        if p.size == 0:
            fr.skip('prediction is invalid (NaN) on every LiDAR pixel')
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
            idx = np.random.default_rng([self.seed, fr.index]).choice(
                p.size, POOL_PER_FRAME, replace=False)
            p, g = p[idx], g[idx]
            u = u[idx] if u is not None else None
        fr.samples = (p, g, u)
        metrics_ms = (time.perf_counter() - t0) * 1e3
        fr.row.update({k: m[k] for k in METRIC_NAMES})
        fr.row.update({'n': m['n'], 'coverage': m['coverage'], 'gt_ms': gt_ms,
                       'metrics_ms': metrics_ms})
        if fr.model_ms is not None:
            fr.row['model_ms'] = fr.model_ms
        fr.status = 'ok'
        if fr.panel:
            fr.panel_data = {'index': fr.index, 'stamp_ns': fr.stamp_ns, 'image': image,
                             'pred': pred, 'gt': gt, 'abs_rel': m['abs_rel'],
                             'unc': None if unc is None else np.asarray(unc, np.float32)}


def _read_window(frames: Sequence[EvalFrame], index: BagIndex) -> tuple[int | None, int | None]:
    """Log-time ``[start, stop)`` (ns) that holds the first copy of every message needed."""
    first = index.first_log_ns()
    times = [first[k] for fr in frames for k in fr.keys if k in first]
    return (min(times), max(times) + 1) if times else (None, None)


def score_frames(reader, frames: Sequence[EvalFrame], scorer: FrameScorer) -> str | None:
    """Pass 2: read what each pending frame needs and score it as soon as it is complete.

    ``frames`` may be any subset of :func:`match_frames`' list (a shard): only their messages
    are decoded, only the log-time window that holds them is read, and each frame gets the
    same ``row``/``samples`` as in a full run. Messages are freed once no frame needs them.
    Frames left pending when the bag ends are skipped with the reason.

    Returns:
        why reading stopped early (truncated bag), or None.
    """
    pending = [f for f in frames if f.status == 'pending']
    waiting: dict[tuple, list[EvalFrame]] = defaultdict(list)
    for fr in pending:
        for key in fr.keys:
            waiting[key].append(fr)
    refs = {key: len(v) for key, v in waiting.items()}
    store: dict[tuple, Any] = {}
    need_topics = {t for t, _ in waiting}
    conns = [c for c in reader.connections if c.topic in need_topics]
    start, stop = _read_window(pending, scorer.index)
    read_error = None
    it = reader.messages(connections=conns, start=start, stop=stop) if pending else iter(())
    while True:
        try:
            conn, _, raw = next(it)
        except StopIteration:
            break
        except Exception as exc:  # reason: truncation surfaces as various rosbags errors
            read_error = (f'bag read stopped: {type(exc).__name__}: {exc} (truncated or '
                          'corrupt); frames after that point are missing')
            logger.warning('%s', read_error)
            break
        t0 = time.perf_counter()
        st, msg = _stamp_of(reader, conn, raw)
        key = (conn.topic, st)
        if key not in waiting or key in store:
            continue
        if refs.get(key, 0) <= 0:  # every frame needing it is already done (skipped)
            waiting.pop(key, None)
            continue
        try:
            msg = msg if msg is not None else reader.deserialize(raw, conn.msgtype)
            store[key] = _decode(conn.msgtype, msg)
        except Exception as exc:  # reason: one bad message drops its frames, not the run
            for fr in waiting[key]:
                fr.skip(f'unreadable {conn.topic} message ({type(exc).__name__})')
            store[key] = None
        dt_ms = (time.perf_counter() - t0) * 1e3
        for fr in waiting[key]:
            fr.read_ms += dt_ms / len(waiting[key])
        for fr in waiting.pop(key):
            if fr.status == 'pending' and all(k in store for k in fr.keys):
                fr.row['read_ms'] = fr.read_ms
                scorer.score(fr, store)
            if fr.status != 'pending' and not fr.released:
                fr.released = True
                for k in fr.keys:
                    refs[k] -= 1
                    if refs[k] <= 0:
                        store.pop(k, None)
    truncated = read_error or scorer.index.read_error
    for fr in pending:
        if fr.status == 'pending':
            missing = sorted({k[0] for k in fr.keys if k not in store} or {'a message'})
            fr.skip('bag ended before ' + ', '.join(missing) + ' was read' if truncated
                    else 'message unreadable: ' + ', '.join(missing))
    return read_error


# --- step 5: summary -----------------------------------------------------------------------

def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return {'mean': float('nan'), 'p50': float('nan'), 'p95': float('nan'),
                'max': float('nan'), 'n': 0}
    return {'mean': float(v.mean()), 'p50': float(np.percentile(v, 50)),
            'p95': float(np.percentile(v, 95)), 'max': float(v.max()), 'n': int(v.size)}


def _pooled(used: Sequence[EvalFrame]) -> dict[str, np.ndarray]:
    """Pixels of all scored frames, in frame order; ``unc_*`` only where uncertainty exists."""
    def cat(arrays):
        return np.concatenate(arrays) if arrays else np.zeros(0)
    with_u = [f.samples for f in used if f.samples[2] is not None]
    return {'pred': cat([f.samples[0] for f in used]), 'gt': cat([f.samples[1] for f in used]),
            'unc': cat([s[2] for s in with_u]), 'unc_pred': cat([s[0] for s in with_u]),
            'unc_gt': cat([s[1] for s in with_u])}


def _uncertainty_block(pooled: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """The ``uncertainty`` block (AUSE/AURG on rel. and abs. error) and the report curves."""
    u = pooled['unc']
    block: dict[str, Any] = {'available': bool(u.size)}
    curves: dict[str, Any] = {}
    if not u.size:
        return block, curves
    up, ug = pooled['unc_pred'], pooled['unc_gt']
    abs_err = np.abs(up - ug)
    rel_err = abs_err / ug
    block.update({f'{k}_abs_rel': v for k, v in ause_aurg(rel_err, u).items()})
    block.update({f'{k}_abs_m': v for k, v in ause_aurg(abs_err, u).items()})
    block['ause'] = block['ause_abs_rel']
    block['aurg'] = block['aurg_abs_rel']
    block['mean_predicted_m'] = float(np.mean(u))
    block['mean_observed_abs_err_m'] = float(np.mean(abs_err))
    curves['sparsification'] = sparsification_curve(rel_err, u)
    curves['calibration'] = calibration_bins(abs_err, u, bins=12)
    return block, curves


def _timings(frames: Sequence[EvalFrame], used: Sequence[EvalFrame]) -> dict[str, dict]:
    """Per-stage timing statistics (ms): model, GT projection, metrics, read, their sum."""
    tm: dict[str, dict] = {}
    model = [f.model_ms for f in frames if f.model_ms is not None]
    if model:
        tm['model'] = _stats(model)
    if used:
        tm['gt_projection'] = _stats([f.row['gt_ms'] for f in used])
        tm['metrics'] = _stats([f.row['metrics_ms'] for f in used])
    tm['read'] = _stats([f.row.get('read_ms', np.nan) for f in used])
    tm['overhead_total'] = _stats([f.row.get('read_ms', 0) + f.row.get('gt_ms', 0)
                                   + f.row.get('metrics_ms', 0) for f in used])
    return tm


def summarize(frames: Sequence[EvalFrame], index: BagIndex, topics: EvalTopics,
              protocol: Protocol, read_error: str | None = None) -> tuple[dict, dict]:
    """The metrics.json dict and the report's series from scored frames (in frame order).

    Args:
        frames: every frame of :func:`match_frames`, scored by :func:`score_frames`.
        read_error: what :func:`score_frames` returned (shown when pass 1 read to the end).
    Returns:
        ``(result, series)``: ``result`` is what metrics.json holds (without ``bag`` and
        ``wall_s``); ``series`` the frames, pooled arrays, curves and panels
        :func:`.report.write_outputs` draws.
    """
    used = [f for f in frames if f.status == 'ok']
    warnings: list[str] = []
    if not topics.tf:
        warnings.append('the bag has no /tf_static or /tf; LiDAR and camera must then share '
                        'one frame_id')
    if index.read_error or read_error:
        warnings.append(index.read_error or read_error)
    reasons = Counter(f.reason for f in frames if f.status != 'ok')
    result: dict[str, Any] = {
        'mode': topics.mode, 'topics': topics.as_dict(), 'protocol': protocol.as_dict(),
        'frames': {'total': len(frames), 'used': len(used),
                   'skipped': len(frames) - len(used), 'skip_reasons': dict(reasons)},
        'warnings': warnings,
    }
    acc = MetricAccumulator()
    for f in used:
        acc.add(f.row)
    m = result['metrics'] = acc.mean()
    m['coverage'] = float(np.nanmean([f.row['coverage'] for f in used])) if used \
        else float('nan')
    m['n_pixels'] = int(sum(f.row['n'] for f in used))
    pooled = _pooled(used)
    result['by_range'] = metrics_by_range(pooled['pred'], pooled['gt']) \
        if pooled['pred'].size else {}
    result['uncertainty'], curves = _uncertainty_block(pooled)
    result['timings_ms'] = _timings(frames, used)
    if topics.mode == 'topic':
        result['latency_ms'] = _stats([(f.receive_ns - f.stamp_ns) / 1e6 for f in frames
                                       if f.receive_ns is not None])
        if topics.image:
            img_set = index.stamp_set(topics.image)
            depth_set = {f.stamp_ns for f in frames}
            n_img = len(img_set)
            result['dropped'] = {'images': n_img, 'depth_frames': len(depth_set & img_set),
                                 'dropped': len(img_set - depth_set),
                                 'drop_rate': (len(img_set - depth_set) / n_img) if n_img
                                 else float('nan')}
    if used and (m['abs_rel'] > 0.5 or m['d1'] < 0.5):
        w = (f'predictions and LiDAR disagree grossly (AbsRel {m["abs_rel"]:.3f}, d1 '
             f'{m["d1"]:.3f}): check the TF between {topics.lidar} and the camera frame, the '
             'camera_info intrinsics, the depth unit and the Tx rule (--tx-mode)')
        logger.warning('%s', w)
        warnings.append(w)
    series = {'frames': list(frames), 'pred': pooled['pred'], 'gt': pooled['gt'],
              'unc': pooled['unc'], 'curves': curves,
              'panels': [f.panel_data for f in frames if f.panel_data is not None],
              'stamps': index.stamps, 'image_topic': topics.image}
    return result, series


# --- all steps -----------------------------------------------------------------------------

def evaluate_bag(bag_path: str | os.PathLike | Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike | None = None, estimator: Any = None,
                 depth_topic: str | None = None, uncertainty_topic: str | None = None,
                 image_topic: str | None = None, camera_info_topic: str | None = None,
                 depth_camera_info_topic: str | None = None, lidar_topic: str | None = None,
                 tolerance_ms: float = 50.0, min_depth: float = 1e-3,
                 max_depth: float = KITTI_MAX_DEPTH_M,
                 crop: str | None = 'garg', tx_mode: str = 'auto',
                 max_frames: int | None = None, n_panels: int = 3, write_report: bool = True,
                 seed: int = 0, baselines: Mapping[str, Mapping] | None = None) -> dict:
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
        seed: draws the pooled-pixel subset of frames with more than ``POOL_PER_FRAME``.
        baselines: {label: earlier result (or its metrics.json)} shown beside this run in
            the report (e.g. ``{'untrained': ...}``); see :func:`.report.headline`.
    Returns:
        the metrics dict also written to ``metrics.json`` (see docs in the report).
    Raises:
        DataError: unreadable bag, missing topic/TF/camera_info, or no usable frame.
        ConfigError: neither or both of ``estimator`` and ``depth_topic`` given.
    """
    if (estimator is None) == (depth_topic is None):
        raise ConfigError('give exactly one of estimator (mode a: --model) and depth_topic '
                          '(mode b: --depth-topic)')
    protocol = Protocol(tolerance_ms=tolerance_ms, min_depth=min_depth, max_depth=max_depth,
                        crop=crop, tx_mode=tx_mode)
    paths = [bag_path] if isinstance(bag_path, (str, os.PathLike)) else list(bag_path)
    mode = 'estimator' if estimator is not None else 'topic'
    t_start = time.perf_counter()
    reader = open_bag(paths)
    try:
        topics = resolve_topics(bag_topics(reader), mode, depth_topic=depth_topic,
                                uncertainty_topic=uncertainty_topic, image_topic=image_topic,
                                camera_info_topic=camera_info_topic,
                                depth_camera_info_topic=depth_camera_info_topic,
                                lidar_topic=lidar_topic)
        logger.info('evaluating %s on %s with LiDAR %s, intrinsics %s, TF %s', mode,
                    topics.primary, topics.lidar, topics.camera_info, list(topics.tf) or 'none')
        index = collect_index(reader, topics)
        frames = match_frames(index, topics, protocol.tolerance_ms, max_frames, n_panels)
        scorer = FrameScorer(index, topics, protocol, estimator=estimator, seed=seed)
        read_error = score_frames(reader, frames, scorer)
    finally:
        reader.close()
    result, series = summarize(frames, index, topics, protocol, read_error)
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


__all__ = ['BagIndex', 'EvalFrame', 'FrameScorer', 'POOL_PER_FRAME', 'Protocol',
           'collect_index', 'evaluate_bag', 'load_baseline', 'match_frames', 'score_frames',
           'summarize']
