"""Fleet evaluation, the Ray-free part: bag lists, shards, one shard's evaluation, Parquet.

A **shard** is (bag, frame range). :func:`evaluate_shard` runs the bag evaluator's steps
(:mod:`.bag_eval`) on the shard's frames only, so its per-frame metrics are the sequential
evaluator's, bit for bit, and adds per frame: uncertainty statistics, pixel counts
per depth range, timings, and the temporal stability (:mod:`.temporal`) against the previous
frame (for the first frame of a shard, the frame just before it is predicted too, only for
that pair, so TAE does not depend on where a bag is cut into shards). The rows go to
``shards/<shard id>.parquet``, the pooled pixels the evaluator draws per frame (pred, LiDAR,
uncertainty) to ``shards/<shard id>.pixels.parquet``, from which the fleet's uncertainty
block is computed exactly as the sequential evaluator's. Both are written to a temporary name
and renamed, the rows last, so a shard is finished when both exist; a shard that cannot be
evaluated leaves ``shards/<shard id>.failed.json`` with the reason.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataError, UrcdcDepthError
from ..metrics import DEPTH_RANGES_M, METRIC_NAMES, ause_aurg, protocol_pairs, valid_mask
from .bag_eval import FrameScorer, Protocol, collect_index, match_frames, score_frames
from .bag_topics import bag_topics, open_bag, resolve_topics

logger = logging.getLogger(__name__)

PANEL_WIDTH_PX = 320  # worst-frame panels are stored downsampled to this width
EVAL_KEYS = ('tolerance_ms', 'min_depth', 'max_depth', 'crop', 'tx_mode')


def expand_bags(specs: Sequence[str]) -> list[str]:
    """Bag folders/files from folders, globs and ``@list.txt`` / ``*.txt`` files of paths.

    A folder that is not itself a bag (no metadata.yaml, .mcap, .db3 or .bag inside) is
    searched one level down for bags. Order: as given, duplicates removed.
    """
    out: list[str] = []

    def is_bag(p: str) -> bool:
        if os.path.isfile(p):
            return p.endswith(('.mcap', '.db3', '.bag'))
        return os.path.isdir(p) and any(
            glob.glob(os.path.join(glob.escape(p), pat))
            for pat in ('metadata.yaml', '*.mcap', '*.db3'))

    for spec in specs:
        if spec.startswith('@') or (spec.endswith('.txt') and os.path.isfile(spec)):
            path = spec.lstrip('@')
            try:
                with open(path) as f:
                    lines = [ln.strip() for ln in f]
            except OSError as exc:
                raise ConfigError(f'cannot read the bag list {path!r}: {exc}') from exc
            out += expand_bags([ln for ln in lines if ln and not ln.startswith('#')])
            continue
        hits = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        if not hits:
            raise ConfigError(f'{spec!r} matches no bag; give bag folders, globs or a text '
                              'file listing bags')
        for h in hits:
            if is_bag(h) or not os.path.isdir(h):
                out.append(h)
            else:
                out += sorted(p for p in (os.path.join(h, n) for n in os.listdir(h))
                              if is_bag(p))
    seen: set[str] = set()
    return [os.path.abspath(p) for p in out if not (p in seen or seen.add(p))]


@dataclass(frozen=True)
class Shard:
    """Frames ``[lo, hi)`` of one bag (``hi`` None: to the end).

    Attributes:
        bag: absolute bag path. lo, hi: frame indices (the evaluator's order: image stamps).
        key: identity of the model and settings (part of :attr:`shard_id`).
    """

    bag: str
    lo: int
    hi: int | None
    key: str

    @property
    def shard_id(self) -> str:
        """Stable file name stem: bag name + range + hash of everything that decides rows."""
        h = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        name = os.path.basename(self.bag.rstrip('/')) or 'bag'
        return f'{name}_{self.lo:06d}_{h}'


def count_frames(bag: str, image_topic: str | None = None) -> int | None:
    """Image messages in a bag (from its index); None when unknown. DataError if unreadable."""
    from . import bag_io
    reader = open_bag([bag])
    try:
        topics = bag_topics(reader)
        images = ([image_topic] if image_topic else
                  [t for t, m in topics.items() if m == bag_io.IMAGE_TYPE])
        counts = [c.msgcount for c in reader.connections if c.topic in images]
        return int(max(counts)) if counts and len(images) == 1 else None
    finally:
        reader.close()


def plan_shards(bags: Iterable[str], shard_frames: int, key: str,
                image_topic: str | None = None) -> tuple[list[Shard], dict[str, str]]:
    """Split every readable bag into shards of ``shard_frames`` frames.

    Returns (shards, {bag: reason} for bags that cannot be opened). A bag whose frame count
    is not known from its index (several cameras, a cut-off file) is one shard.
    """
    shards: list[Shard] = []
    bad: dict[str, str] = {}
    for bag in bags:
        try:
            n = count_frames(bag, image_topic)
        except UrcdcDepthError as exc:
            bad[bag] = str(exc)
            continue
        if n is None or n <= shard_frames:
            shards.append(Shard(bag, 0, None, key))
            continue
        for lo in range(0, n, shard_frames):
            hi = lo + shard_frames
            shards.append(Shard(bag, lo, hi if hi < n else None, key))
    return shards, bad


def shard_paths(out_dir: str, shard: Shard) -> tuple[str, str]:
    """(``shards/<id>.parquet``, ``shards/<id>.failed.json``) under ``out_dir``."""
    base = os.path.join(out_dir, 'shards', shard.shard_id)
    return base + '.parquet', base + '.failed.json'


def pixels_path(rows_path: str) -> str:
    """``shards/<id>.pixels.parquet`` beside a shard's rows file."""
    return rows_path[:-len('.parquet')] + '.pixels.parquet'


def shard_done(out_dir: str, shard: Shard) -> bool:
    """Both files of a finished shard exist (rows and pooled pixels)."""
    rows = shard_paths(out_dir, shard)[0]
    return os.path.exists(rows) and os.path.exists(pixels_path(rows))


def _range_columns(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    rel = np.abs(p - g) / g
    for lo, hi in DEPTH_RANGES_M:
        sel = (g >= lo) & (g < hi)
        name = f'{lo:g}-{hi:g}'
        out[f'range_{name}_n'] = int(np.count_nonzero(sel))
        out[f'range_{name}_abs_rel_sum'] = float(rel[sel].sum())
        out[f'range_{name}_sq_err_sum'] = float(((p[sel] - g[sel]) ** 2).sum())
    return out


class _ShardCollector:
    """Per scored frame: uncertainty, range and temporal columns; the shard's worst panels.

    Frames arrive as the bag is read (stamp order, as a recorder writes); a pair (t, t+1)
    is scored when both predictions have been seen, and only the last few are kept.
    """

    def __init__(self, protocol, track, n_panels: int, context: int | None = None) -> None:
        self.pr = protocol
        self.context = context  # index of the frame before the shard: a pair, not a row
        self.track = track
        self.extra: dict[int, dict[str, Any]] = {}
        self.preds: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        self.n_panels = n_panels
        self.panels: list[dict] = []

    def __call__(self, fr, pred, unc, gt, K, image) -> None:
        pr = self.pr
        mask = valid_mask(gt, pr.min_depth, pr.max_depth, pr.crop)
        sel, p, g = protocol_pairs(pred, gt, mask, pr.min_depth, pr.max_depth)
        p, g = p.astype(np.float64), g.astype(np.float64)
        row: dict[str, Any] = _range_columns(p, g)
        row.update(unc_mean_m=np.nan, abs_err_mean_m=float(np.mean(np.abs(p - g))),
                   ause=np.nan, aurg=np.nan, tae=np.nan, flicker=np.nan)
        if unc is not None and np.shape(unc) == np.shape(pred):
            u = np.asarray(unc, np.float64)[sel]
            ok = np.isfinite(u)
            if ok.any():
                rel = np.abs(p - g)[ok] / g[ok]
                row['unc_mean_m'] = float(u[ok].mean())
                row.update({k: float(v) for k, v in ause_aurg(rel, u[ok]).items()})
        self.extra[fr.index] = row
        if self.track is not None:
            from .temporal import DepthFrame
            # a DepthFrame: each frame's back-projection is computed once for both its pairs
            self.preds[fr.index] = (fr.stamp_ns, DepthFrame(np.asarray(pred, np.float32)),
                                    np.asarray(K))
            for a in (fr.index - 1, fr.index):
                self._pair(a)
            for k in [k for k in self.preds if k < fr.index - 2]:
                del self.preds[k]
        if self.n_panels and fr.index != self.context:
            self._keep_panel(fr, pred, gt, image)

    def _pair(self, a: int) -> None:
        """TAE/flicker of frames a and a+1, stored on the row of a+1."""
        from .temporal import ego_motion, pair_stability
        if a not in self.preds or a + 1 not in self.preds:
            return
        (st_a, d_a, _), (st_b, d_b, K) = self.preds[a], self.preds[a + 1]
        T = ego_motion(self.track, st_a, st_b)
        if T is not None and d_a.shape == d_b.shape:
            st = pair_stability(d_a, d_b, K, T)
            self.extra[a + 1]['tae'], self.extra[a + 1]['flicker'] = st.tae, st.flicker

    def _keep_panel(self, fr, pred, gt, image) -> None:
        worst = self.panels
        if len(worst) >= self.n_panels and fr.row['abs_rel'] <= worst[-1]['abs_rel']:
            return
        import cv2
        h, w = pred.shape
        size = (PANEL_WIDTH_PX, max(1, round(h * PANEL_WIDTH_PX / w)))
        gt_img = np.where(gt > 0, gt, np.nan).astype(np.float32)
        err = np.where(np.isfinite(gt_img), np.abs(pred - gt_img) / gt_img, np.nan)
        # nearest keeps the sparse LiDAR pixels as they are
        small = {k: cv2.resize(np.nan_to_num(v, nan=-1.0).astype(np.float32), size,
                               interpolation=cv2.INTER_NEAREST)
                 for k, v in (('pred', pred), ('err', err))}
        panel = {'index': fr.index, 'stamp_ns': fr.stamp_ns, 'abs_rel': fr.row['abs_rel'],
                 'pred': small['pred'], 'err': small['err']}
        if image is not None:
            panel['image'] = cv2.resize(np.asarray(image, np.uint8), size,
                                        interpolation=cv2.INTER_AREA)
        self.panels = sorted(worst + [panel], key=lambda q: -q['abs_rel'])[:self.n_panels]


@dataclass
class _HookedScorer(FrameScorer):
    """The evaluator's own :class:`.bag_eval.FrameScorer`, plus a per-frame hook.

    Each scored frame's arrays go to ``hook`` and are dropped at once (they ride on
    ``panel_data`` for one call), so a shard never holds more than a frame or two.
    """

    hook: Any = None
    _K: Any = None

    def _prediction(self, fr, store):
        got = super()._prediction(fr, store)
        if got is not None:
            self._K = got[2]
        return got

    def score(self, fr, store) -> None:
        """Score as the sequential evaluator does, then call the hook (ok frames)."""
        fr.panel = True
        super().score(fr, store)
        data, fr.panel_data = fr.panel_data, None
        if fr.status == 'ok' and data is not None:
            self.hook(fr, data['pred'], data['unc'], data['gt'], self._K, data['image'])


def evaluate_shard(shard: Shard, estimator, settings: dict, out_dir: str,
                   n_panels: int = 4) -> dict[str, Any]:
    """Evaluate one shard, write its Parquet (or failure marker); returns a small summary.

    The steps are :mod:`.bag_eval`'s (resolve_topics, collect_index, match_frames, then
    score_frames on the shard's frames only), so every per-frame metric equals the
    sequential evaluator's.

    Args:
        shard: what to evaluate. estimator: as for :func:`.bag_eval.evaluate_bag` mode (a).
        settings: evaluator settings (``EVAL_KEYS``, plus ``image_topic``, ``lidar_topic``).
        out_dir: the fleet ``--out``; files go to ``out_dir/shards/``.
        n_panels: the worst frames (AbsRel) of the shard kept as panels (``.panels.npz``).
    Returns:
        ``{'shard', 'bag', 'status': 'ok'|'failed', 'frames', 'reason', 'warnings', 'wall_s',
        'worker_pid'}``: no frame data, so the driver's memory stays small.
    """
    from .temporal import read_pose_track
    parquet, failed = shard_paths(out_dir, shard)
    os.makedirs(os.path.dirname(parquet), exist_ok=True)
    t0 = time.perf_counter()
    base = {'shard': shard.shard_id, 'bag': shard.bag, 'lo': shard.lo, 'hi': shard.hi,
            'worker_pid': os.getpid()}
    try:
        protocol = Protocol(**{k: settings[k] for k in EVAL_KEYS if k in settings})
        reader = open_bag([shard.bag])
        try:
            topics = resolve_topics(bag_topics(reader), 'estimator',
                                    image_topic=settings.get('image_topic'),
                                    lidar_topic=settings.get('lidar_topic'))
            index = collect_index(reader, topics)
            frames = match_frames(index, topics, protocol.tolerance_ms, n_panels=0)
            cam = _camera_frame(reader, topics.image)
            found = read_pose_track(reader, cam) if cam else None
            # with ego-motion, the frame before the shard is scored too, for the TAE pair only
            first = shard.lo - 1 if shard.lo > 0 and found else shard.lo
            scored = [f for f in frames
                      if first <= f.index and (shard.hi is None or f.index < shard.hi)]
            mine = [f for f in scored if f.index >= shard.lo]
            collector = _ShardCollector(protocol, found[0] if found else None, n_panels,
                                        context=first if first < shard.lo else None)
            scorer = _HookedScorer(index, topics, protocol, estimator=estimator,
                                   hook=collector)
            read_error = score_frames(reader, scored, scorer)
        finally:
            reader.close()
        if not any(f.status == 'ok' for f in mine):
            reasons = sorted({f.reason for f in mine})
            raise DataError(f'no frame of shard {shard.shard_id} could be evaluated: '
                            f'{reasons!r}')
    except UrcdcDepthError as exc:
        summary = {**base, 'status': 'failed', 'reason': str(exc), 'frames': 0,
                   'warnings': [], 'wall_s': time.perf_counter() - t0}
        _write_json(failed, summary)
        return summary
    warnings = [w for w in (getattr(reader, 'warning', ''), index.read_error, read_error) if w]
    rows = []
    for fr in mine:
        row: dict[str, Any] = {'bag': shard.bag, 'shard': shard.shard_id,
                               'camera': topics.image, 'index': fr.index,
                               'stamp_ns': fr.stamp_ns, 'status': fr.status,
                               'reason': fr.reason, 'lidar_dt_ms': fr.lidar_dt_ms}
        for k in METRIC_NAMES + ('n', 'coverage', 'read_ms', 'gt_ms', 'metrics_ms', 'model_ms'):
            row[k] = fr.row.get(k, np.nan)
        row.update(collector.extra.get(fr.index, {}))
        rows.append(row)
    kind = getattr(getattr(estimator, 'config', None), 'uncertainty', 'metres')
    write_pixels(pixels_path(parquet), [f for f in mine if f.status == 'ok'], kind)
    if collector.panels:
        _write_panels(parquet[:-len('.parquet')] + '.panels.npz', collector.panels)
    write_rows(parquet, rows)  # last: the rows file says the shard's other files are there
    if os.path.exists(failed):
        os.remove(failed)
    n_ok = sum(r['status'] == 'ok' for r in rows)
    return {**base, 'status': 'ok', 'reason': '', 'frames': n_ok, 'warnings': warnings,
            'wall_s': time.perf_counter() - t0}


def _camera_frame(reader, image_topic: str | None) -> str | None:
    """frame_id of the first camera image (for the pose track), None if none."""
    from . import bag_io
    conns = [c for c in reader.connections if c.msgtype == bag_io.IMAGE_TYPE
             and (image_topic is None or c.topic == image_topic)]
    if not conns:
        return None
    try:
        for conn, _, raw in reader.messages(connections=conns[:1]):
            return reader.deserialize(raw, conn.msgtype).header.frame_id
    except Exception:  # reason: an unreadable bag fails later with the evaluator's message
        return None
    return None


def _write_json(path: str, obj: dict) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def write_rows(path: str, rows: list[dict]) -> None:
    """Per-frame rows -> Parquet, atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    tmp = path + '.tmp'
    table = pa.Table.from_pylist(rows) if rows else pa.table({'index': pa.array([], pa.int64())})
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_pixels(path: str, frames: Sequence, kind: str) -> None:
    """The scored frames' pooled pixels -> Parquet, atomically, in frame order.

    Columns ``index``, ``pred_m``, ``gt_m``, ``unc`` (float32 as the evaluator pools them;
    ``unc`` NaN for a frame without uncertainty: the evaluator keeps finite values only).
    The schema metadata ``uncertainty_kind`` says what ``unc`` holds.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    def cat(arrays, dtype):
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays \
            else np.zeros(0, dtype)
    samples = [f.samples for f in frames]
    unc = [s[2] if s[2] is not None else np.full(s[0].shape, np.nan, np.float32)
           for s in samples]
    table = pa.table({
        'index': cat([np.full(s[0].shape, f.index, np.int64)
                      for f, s in zip(frames, samples)], np.int64),
        'pred_m': cat([s[0] for s in samples], np.float32),
        'gt_m': cat([s[1] for s in samples], np.float32),
        'unc': cat(unc, np.float32)}).replace_schema_metadata({'uncertainty_kind': kind})
    tmp = path + '.tmp'
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _write_panels(path: str, panels: list[dict]) -> None:
    arrays = {}
    for i, p in enumerate(panels):
        for k, v in p.items():
            arrays[f'{i}_{k}'] = np.asarray(v)
    tmp = path + '.tmp.npz'
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def read_panels(path: str) -> list[dict]:
    """Panels written by :func:`evaluate_shard` (image, pred, err, index, abs_rel ...)."""
    with np.load(path) as z:
        out: dict[int, dict] = {}
        for name in z.files:
            i, k = name.split('_', 1)
            out.setdefault(int(i), {})[k] = z[name]
    return [{k: (v.item() if v.ndim == 0 else v) for k, v in p.items()}
            for _, p in sorted(out.items())]


def estimator_from_model(model: str, backend: str = 'onnxruntime',
                         params_file: str | None = None, flip_tta: bool = False,
                         threads: int = 1) -> Callable[[], Any]:
    """A picklable factory that builds the :class:`DepthEstimator` inside each worker.

    ``threads``: CPU threads of the onnxruntime backend per worker (a worker holds one CPU
    of the Ray cluster; 0 = all cores, which oversubscribes when several share a machine).
    """
    return _ModelFactory(model, backend, params_file, flip_tta, threads)


@dataclass(frozen=True)
class _ModelFactory:
    model: str
    backend: str
    params_file: str | None
    flip_tta: bool
    threads: int = 1

    def __call__(self):
        from ..config import estimator_config_from_params, load_node_params
        from ..estimator import DepthEstimator
        params = load_node_params(self.params_file) if self.params_file else {}
        params['flip_tta'] = self.flip_tta or params.get('flip_tta', False)
        opts = {'intra_op_threads': self.threads} if self.backend == 'onnxruntime' else {}
        return DepthEstimator.from_model(self.model, backend=self.backend,
                                         config=estimator_config_from_params(params), **opts)

    def identity(self) -> str:
        """Model file (path, size, mtime) and settings: changes when the results would."""
        try:
            st = os.stat(self.model)
            stamp = f'{st.st_size}:{st.st_mtime_ns}'
        except OSError as exc:
            raise DataError(f'model {self.model!r} is not readable: {exc}') from exc
        return f'{os.path.abspath(self.model)}:{stamp}:{self.backend}:{self.params_file}:' \
               f'{self.flip_tta}'


__all__ = ['EVAL_KEYS', 'Shard', 'count_frames', 'estimator_from_model', 'evaluate_shard',
           'expand_bags', 'pixels_path', 'plan_shards', 'read_panels', 'shard_done',
           'shard_paths', 'write_pixels', 'write_rows']
