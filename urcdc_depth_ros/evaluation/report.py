"""Evaluation outputs: metrics.json, per_frame.csv, figures (PNG), report.md and report.html.

The HTML report is self-contained (figures embedded as base64 PNG) so it can be mailed or
attached to a CI run; report.md links the same PNG files beside it. Figures use matplotlib's
Agg backend (no display needed).
"""
from __future__ import annotations

import base64
import csv
import html
import json
import logging
import math
import os
from typing import Any

import numpy as np

from ..metrics import HIGHER_IS_BETTER, METRIC_NAMES

logger = logging.getLogger(__name__)

LABELS = {'silog': 'SILog', 'abs_rel': 'AbsRel', 'log10': 'log10', 'rms': 'RMSE (m)',
          'sq_rel': 'SqRel', 'log_rms': 'RMSElog', 'd1': 'δ<1.25', 'd2': 'δ<1.25²',
          'd3': 'δ<1.25³'}
CSV_COLUMNS = ['index', 'stamp_ns', 'status', 'reason', 'lidar_dt_ms', 'n', 'coverage',
               *METRIC_NAMES, 'read_ms', 'gt_ms', 'metrics_ms', 'model_ms',
               'latency_ms']
ACCENT = '#1f6feb'


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return '–'
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f'{v:.{nd}f}'


def write_metrics_json(path: str | os.PathLike, result: dict) -> None:
    """Write ``result`` as metrics.json (NaN/inf as null, strict JSON)."""
    with open(path, 'w') as f:
        json.dump(json_safe(result), f, indent=2, allow_nan=False)


def write_outputs(out_dir: str | os.PathLike, result: dict, series: dict) -> dict[str, str]:
    """Write every output file of one evaluation; returns {name: path}."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {'metrics': os.path.join(out_dir, 'metrics.json'),
             'per_frame': os.path.join(out_dir, 'per_frame.csv')}
    write_metrics_json(paths['metrics'], result)
    _write_csv(paths['per_frame'], series['frames'], result['mode'])
    figs = make_figures(out_dir, result, series)
    paths.update(figs)
    paths['report_md'] = os.path.join(out_dir, 'report.md')
    paths['report_html'] = os.path.join(out_dir, 'report.html')
    md = render_markdown(result, figs)
    with open(paths['report_md'], 'w') as f:
        f.write(md)
    with open(paths['report_html'], 'w') as f:
        f.write(render_html(result, figs))
    logger.info('report written to %s', paths['report_html'])
    return paths


def _write_csv(path: str, frames: list, mode: str) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for fr in frames:
            row = dict(fr.row)
            row.update(index=fr.index, stamp_ns=fr.stamp_ns, status=fr.status, reason=fr.reason,
                       lidar_dt_ms=fr.lidar_dt_ms)
            if mode == 'topic' and fr.receive_ns is not None:
                row['latency_ms'] = (fr.receive_ns - fr.stamp_ns) / 1e6
            w.writerow([_csv_value(row.get(c, '')) for c in CSV_COLUMNS])


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return '' if not math.isfinite(v) else f'{v:.6g}'
    return v


# --- figures -------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plt.rcParams.update({'figure.dpi': 110, 'font.size': 9, 'axes.spines.top': False,
                         'axes.spines.right': False, 'axes.grid': True, 'grid.alpha': 0.3})
    return plt


def make_figures(out_dir: str, result: dict, series: dict) -> dict[str, str]:
    """Render every figure that has data; returns {name: png path}."""
    plt = _plt()
    figs: dict[str, str] = {}
    makers = [('fig_metrics', _fig_metrics), ('fig_range', _fig_range),
              ('fig_frames', _fig_frames), ('fig_sparsification', _fig_sparsification),
              ('fig_calibration', _fig_calibration), ('fig_latency', _fig_latency),
              ('fig_compare', _fig_compare)]
    for name, maker in makers:
        fig = maker(plt, result, series)
        if fig is not None:
            path = os.path.join(out_dir, f'{name}.png')
            fig.savefig(path, bbox_inches='tight')
            plt.close(fig)
            figs[name] = path
    for i, panel in enumerate(series.get('panels', [])):
        fig = _fig_panel(plt, panel, result)
        path = os.path.join(out_dir, f'fig_sample_{i}.png')
        fig.savefig(path, bbox_inches='tight')
        plt.close(fig)
        figs[f'fig_sample_{i}'] = path
    return figs


def _fig_metrics(plt, result, series):
    m = result['metrics']
    rows = [['all', _fmt(m.get('n_pixels'), 0)] + [_fmt(m.get(k), 3) for k in METRIC_NAMES]]
    for band, r in result.get('by_range', {}).items():
        rows.append([f'{band} m', _fmt(r.get('n'), 0)] + [_fmt(r.get(k), 3)
                                                          for k in METRIC_NAMES])
    cols = ['range', 'pixels'] + [LABELS[k] for k in METRIC_NAMES]
    fig, ax = plt.subplots(figsize=(10, 0.45 * (len(rows) + 2)))
    ax.axis('off')
    tab = ax.table(cellText=rows, colLabels=cols, loc='center', cellLoc='center')
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1, 1.4)
    for (r, c), cell in tab.get_celld().items():
        cell.set_edgecolor('#d0d7de')
        if r == 0:
            cell.set_facecolor('#24292f')
            cell.set_text_props(color='white', weight='bold')
        elif r == 1:
            cell.set_facecolor('#ddf4ff')
            cell.set_text_props(weight='bold')
    f = result['frames']
    ax.set_title(f'Depth metrics, {f["used"]}/{f["total"]} frames '
                 '(first row: per-image mean; range rows: pooled pixels)', fontsize=10)
    return fig


def _fig_range(plt, result, series):
    g, p = series['gt'], series['pred']
    if g.size == 0:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    bands = list(result['by_range'])
    absrel = [result['by_range'][b]['abs_rel'] for b in bands]
    rmse = [result['by_range'][b]['rms'] for b in bands]
    x = np.arange(len(bands))
    a1.bar(x - 0.2, absrel, 0.4, color=ACCENT, label='AbsRel')
    a1b = a1.twinx()
    a1b.bar(x + 0.2, rmse, 0.4, color='#fb8f44', label='RMSE (m)')
    a1.set_xticks(x, [f'{b} m\n(n={result["by_range"][b]["n"]})' for b in bands])
    a1.set_ylabel('AbsRel', color=ACCENT)
    a1b.set_ylabel('RMSE (m)', color='#fb8f44')
    a1b.grid(False)
    a1.set_title('Error per depth band')
    edges = np.linspace(0, max(float(g.max()), 1.0), 21)
    idx = np.digitize(g, edges) - 1
    err = np.abs(p - g)
    centers, med, q1, q3 = [], [], [], []
    for i in range(len(edges) - 1):
        sel = idx == i
        if sel.sum() >= 5:
            centers.append(0.5 * (edges[i] + edges[i + 1]))
            med.append(np.median(err[sel]))
            q1.append(np.percentile(err[sel], 25))
            q3.append(np.percentile(err[sel], 75))
    if centers:
        a2.fill_between(centers, q1, q3, color=ACCENT, alpha=0.25, label='25–75 %')
        a2.plot(centers, med, color=ACCENT, marker='o', ms=3, label='median')
    a2.set_xlabel('LiDAR depth (m)')
    a2.set_ylabel('|pred − LiDAR| (m)')
    a2.set_title('Absolute error vs range')
    a2.legend(loc='upper left')
    fig.tight_layout()
    return fig


def _fig_frames(plt, result, series):
    frames = series['frames']
    if not frames:
        return None
    t0 = frames[0].stamp_ns
    ok = [f for f in frames if f.status == 'ok']
    bad = [f for f in frames if f.status != 'ok']
    fig, ax = plt.subplots(figsize=(11, 3.0))
    if ok:
        t = [(f.stamp_ns - t0) / 1e9 for f in ok]
        v = [f.row['abs_rel'] for f in ok]
        ax.plot(t, v, color=ACCENT, marker='o', ms=3, lw=1, label='AbsRel per frame')
        ax.axhline(result['metrics']['abs_rel'], color='#24292f', ls='--', lw=1,
                   label=f'mean {result["metrics"]["abs_rel"]:.4f}')
    if bad:
        tb = [(f.stamp_ns - t0) / 1e9 for f in bad]
        ax.plot(tb, np.zeros(len(tb)), '|', color='#cf222e', ms=14, mew=2,
                label=f'skipped ({len(bad)})')
    ax.set_xlabel('time since first frame (s)')
    ax.set_ylabel('AbsRel')
    ax.set_ylim(bottom=0)
    ax.set_title('Per-frame AbsRel over the bag')
    ax.legend(loc='upper right', ncols=3)
    return fig


def _fig_sparsification(plt, result, series):
    curves = series.get('curves', {})
    if 'sparsification' not in curves:
        return None
    frac, model, oracle = curves['sparsification']
    u = result['uncertainty']
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(frac, oracle, color='#2da44e', lw=2, label='oracle (sorted by true error)')
    ax.plot(frac, model, color=ACCENT, lw=2,
            label=f'uncertainty  AUSE {u["ause"]:.4f}  AURG {u["aurg"]:.4f}')
    ax.axhline(1.0, color='grey', ls=':', label='random')
    ax.fill_between(frac, oracle, model, color=ACCENT, alpha=0.12)
    ax.set_xlabel('fraction of pixels removed (most uncertain first)')
    ax.set_ylabel('AbsRel of the rest (normalised)')
    ax.set_title('Sparsification')
    ax.legend(loc='lower left', fontsize=8)
    return fig


def _fig_calibration(plt, result, series):
    curves = series.get('curves', {})
    if 'calibration' not in curves:
        return None
    pred, obs, cnt = curves['calibration']
    fig, ax = plt.subplots(figsize=(4.8, 4))
    hi = float(max(pred.max(), obs.max(), 1e-3)) * 1.1
    ax.plot([0, hi], [0, hi], color='grey', ls=':', label='perfectly calibrated')
    ax.plot(pred, obs, color=ACCENT, marker='o', label='equal-count bins')
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel('predicted uncertainty (mean per bin)')
    ax.set_ylabel('observed |pred − LiDAR| (m)')
    ax.set_title('Uncertainty calibration')
    ax.legend(loc='upper left', fontsize=8)
    return fig


def _fig_latency(plt, result, series):
    if result['mode'] != 'topic':
        return None
    frames = series['frames']
    lat = [(f.receive_ns - f.stamp_ns) / 1e6 for f in frames if f.receive_ns is not None]
    if not lat:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.2))
    a1.hist(lat, bins=min(30, max(5, len(lat) // 2)), color=ACCENT)
    st = result['latency_ms']
    a1.axvline(st['p50'], color='#24292f', ls='--', label=f'p50 {st["p50"]:.1f} ms')
    a1.axvline(st['p95'], color='#cf222e', ls='--', label=f'p95 {st["p95"]:.1f} ms')
    a1.set_xlabel('header stamp → bag receive time (ms)')
    a1.set_ylabel('frames')
    a1.set_title('Latency of the depth topic')
    a1.legend()
    drop = result.get('dropped')
    img_stamps = sorted({s for s, _ in series['stamps'].get(series.get('image_topic'), [])})
    if drop and img_stamps:
        depth_set = {f.stamp_ns for f in frames}
        t0 = img_stamps[0]
        t = np.array([(s - t0) / 1e9 for s in img_stamps])
        got = np.array([s in depth_set for s in img_stamps])
        a2.plot(t[got], np.ones(got.sum()), '|', color='#2da44e', ms=18, mew=2,
                label=f'depth published ({int(got.sum())})')
        a2.plot(t[~got], np.zeros((~got).sum()), '|', color='#cf222e', ms=18, mew=2,
                label=f'dropped ({int((~got).sum())})')
        a2.set_yticks([0, 1], ['dropped', 'published'])
        a2.set_ylim(-0.5, 1.5)
        a2.set_xlabel('image time since start (s)')
        a2.set_title(f'Dropped frames: {drop["dropped"]}/{drop["images"]} '
                     f'({100 * drop["drop_rate"]:.1f} %)')
        a2.legend(loc='center right', fontsize=8)
    else:
        a2.axis('off')
        a2.text(0.5, 0.5, 'no camera image topic in the bag:\ndropped frames unknown',
                ha='center', va='center')
    fig.tight_layout()
    return fig


COMPARE_KEYS = ('abs_rel', 'rms', 'd1', 'ause')  # headline figures of a comparison


def headline(result: dict) -> dict[str, Any]:
    """The figures a comparison shows: the nine metrics and AUSE/AURG (None when absent)."""
    m = result.get('metrics', {})
    u = result.get('uncertainty', {})
    out = {k: m.get(k) for k in METRIC_NAMES}
    out.update(ause=u.get('ause'), aurg=u.get('aurg'), frames=result.get('frames', {}).get('used'))
    return out


def _compare_rows(result: dict) -> list[tuple[str, dict]]:
    """[(label, headline)] with this run first, then result['baselines'] in order."""
    if not result.get('baselines'):
        return []
    return [('this run', headline(result))] + list(result['baselines'].items())


def _fig_compare(plt, result, series):
    rows = _compare_rows(result)
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(COMPARE_KEYS), figsize=(10, 2.6))
    colours = [ACCENT] + ['#8c959f'] * (len(rows) - 1)
    for ax, key in zip(axes, COMPARE_KEYS):
        vals = [r.get(key) for _, r in rows]
        vals = [np.nan if v is None else v for v in vals]
        bars = ax.bar(range(len(rows)), vals, color=colours)
        ax.bar_label(bars, fmt='%.3f', fontsize=8)
        ax.set_xticks(range(len(rows)), [label for label, _ in rows], rotation=15)
        arrow = '↑' if key in HIGHER_IS_BETTER else '↓'
        ax.set_title(f'{LABELS.get(key, key.upper())} {arrow}')
        ax.grid(axis='x', visible=False)
    fig.suptitle('This run against the baselines (same bag, same protocol)', y=1.02)
    fig.tight_layout()
    return fig


def _compare_md(result: dict) -> list[str]:
    rows = _compare_rows(result)
    if not rows:
        return []
    head = [LABELS.get(k, k.upper()) + (' ↑' if k in HIGHER_IS_BETTER else ' ↓')
            for k in COMPARE_KEYS]
    out = ['| run | ' + ' | '.join(head) + ' | AbsRel vs this run |',
           '|---' * (len(COMPARE_KEYS) + 2) + '|']
    base = rows[0][1].get('abs_rel')
    for i, (label, r) in enumerate(rows):
        ratio = ''
        if i and base and r.get('abs_rel') is not None:
            ratio = f'{r["abs_rel"] / base:.2f}×'
        name = f'**{label}**' if i == 0 else label
        out.append(f'| {name} | ' + ' | '.join(_fmt(r.get(k)) for k in COMPARE_KEYS)
                   + f' | {ratio} |')
    return out


def _fig_panel(plt, panel: dict, result: dict):
    pred, gt, unc, img = panel['pred'], panel['gt'], panel['unc'], panel['image']
    vmax = float(np.nanpercentile(np.where(gt > 0, gt, np.nan), 99)) if (gt > 0).any() else 80.0
    vmax = max(vmax, float(np.nanpercentile(pred, 95)) if np.isfinite(pred).any() else 1.0)
    vv, uu = np.nonzero(gt > 0)
    fig, axes = plt.subplots(2, 2, figsize=(12, 12 * pred.shape[0] / pred.shape[1] + 1.4))
    a = axes[0, 0]
    if img is not None:
        a.imshow(img if img.shape[:2] == pred.shape else _resize(img, pred.shape))
        a.set_title('image + LiDAR ground truth')
    else:
        a.imshow(np.zeros(pred.shape), cmap='gray')
        a.set_title('LiDAR ground truth (no image in the bag)')
    sc = a.scatter(uu, vv, c=gt[vv, uu], s=1.5, cmap='turbo', vmin=0, vmax=vmax)
    fig.colorbar(sc, ax=a, fraction=0.025, label='LiDAR depth (m)')
    im = axes[0, 1].imshow(pred, cmap='turbo', vmin=0, vmax=vmax)
    axes[0, 1].set_title('predicted depth')
    fig.colorbar(im, ax=axes[0, 1], fraction=0.025, label='m')
    a = axes[1, 0]
    if unc is not None:
        hi = float(np.nanpercentile(unc, 98)) if np.isfinite(unc).any() else 1.0
        im = a.imshow(unc, cmap='magma', vmin=0, vmax=max(hi, 1e-6))
        fig.colorbar(im, ax=a, fraction=0.025, label='predicted error (m)')
        a.set_title('uncertainty (brighter = less reliable)')
    else:
        a.axis('off')
        a.text(0.5, 0.5, 'no uncertainty', ha='center', va='center', transform=a.transAxes)
    a = axes[1, 1]
    err = np.abs(pred[vv, uu] - gt[vv, uu]) / gt[vv, uu]
    a.imshow(np.full(pred.shape, 0.92), cmap='gray', vmin=0, vmax=1)
    sc = a.scatter(uu, vv, c=err, s=2, cmap='RdYlGn_r', vmin=0, vmax=0.25)
    a.set_xlim(0, pred.shape[1])
    a.set_ylim(pred.shape[0], 0)
    fig.colorbar(sc, ax=a, fraction=0.025, label='|pred − gt| / gt')
    a.set_title(f'AbsRel at LiDAR pixels (frame mean {panel["abs_rel"]:.4f})')
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
        a.grid(False)
    fig.suptitle(f'frame {panel["index"]}  stamp {panel["stamp_ns"] / 1e9:.3f} s', y=0.99)
    fig.tight_layout()
    return fig


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


# --- text reports --------------------------------------------------------------------------

def _summary_lines(result: dict) -> list[str]:
    f = result['frames']
    m = result['metrics']
    lines = [f'- bag: `{", ".join(result.get("bag", []))}`',
             f'- mode: **{result["mode"]}** on `{result["topics"]["primary"]}`, LiDAR '
             f'`{result["topics"]["lidar"]}`, intrinsics `{result["topics"]["camera_info"]}`',
             f'- frames: **{f["used"]} used** / {f["total"]} '
             f'({f["skipped"]} skipped)',
             f'- headline: AbsRel **{_fmt(m["abs_rel"])}**, RMSE **{_fmt(m["rms"], 3)} m**, '
             f'δ<1.25 **{_fmt(m["d1"])}**, LiDAR pixels with a prediction '
             f'{_fmt(100 * m["coverage"] if m["coverage"] is not None else None, 1)} %']
    for reason, n in f['skip_reasons'].items():
        lines.append(f'  - skipped {n}: {reason}')
    p = result['protocol']
    lines.append(f'- protocol: depth in ({p["min_depth_m"]:g}, {p["max_depth_m"]:g}) m, '
                 f'crop {p["crop"]}, LiDAR match ≤ {p["tolerance_ms"]:g} ms, '
                 f'Tx rule `{p["tx_mode"]}`')
    return lines


def _tables_md(result: dict) -> list[str]:
    out = ['| range | pixels | ' + ' | '.join(LABELS[k] for k in METRIC_NAMES) + ' |',
           '|---' * (len(METRIC_NAMES) + 2) + '|']
    m = result['metrics']
    out.append('| **all (per-image mean)** | ' + _fmt(m.get('n_pixels'), 0) + ' | '
               + ' | '.join(_fmt(m[k]) for k in METRIC_NAMES) + ' |')
    for band, r in result.get('by_range', {}).items():
        out.append(f'| {band} m | {r["n"]} | ' + ' | '.join(_fmt(r[k]) for k in METRIC_NAMES)
                   + ' |')
    arrows = ', '.join(f'{LABELS[k]} ↑' for k in HIGHER_IS_BETTER)
    out.append('')
    out.append(f'Lower is better except {arrows}.')
    u = result['uncertainty']
    if u.get('available'):
        out += ['', '| uncertainty | AUSE ↓ | AURG ↑ |', '|---|---|---|',
                f'| AbsRel | {_fmt(u["ause_abs_rel"])} | {_fmt(u["aurg_abs_rel"])} |',
                f'| abs. error (m) | {_fmt(u["ause_abs_m"])} | {_fmt(u["aurg_abs_m"])} |', '',
                f'Mean predicted error {_fmt(u["mean_predicted_m"], 3)}, mean observed '
                f'|pred − LiDAR| {_fmt(u["mean_observed_abs_err_m"], 3)} m.']
    t = result['timings_ms']
    out += ['', '| per frame (ms) | mean | p50 | p95 |', '|---|---|---|---|']
    for key, label in (('read', 'bag read + decode'), ('gt_projection', 'LiDAR → GT'),
                       ('metrics', 'metrics'), ('overhead_total', '**evaluation overhead**'),
                       ('model', 'model (estimator)')):
        if key in t and t[key]['n']:
            out.append(f'| {label} | {_fmt(t[key]["mean"], 2)} | {_fmt(t[key]["p50"], 2)} | '
                       f'{_fmt(t[key]["p95"], 2)} |')
    if 'latency_ms' in result and result['latency_ms']['n']:
        lat = result['latency_ms']
        out += ['', f'Latency (header stamp → bag receive): mean {_fmt(lat["mean"], 1)} ms, '
                f'p95 {_fmt(lat["p95"], 1)} ms.']
    if result.get('dropped'):
        d = result['dropped']
        out.append(f'Dropped frames: {d["dropped"]} of {d["images"]} images got no depth.')
    return out


def render_markdown(result: dict, figs: dict[str, str]) -> str:
    """report.md: summary, tables and links to the PNG figures beside it."""
    out = ['# Depth evaluation report', '']
    out += _summary_lines(result)
    for w in result.get('warnings', []):
        out.append(f'\n> **Warning:** {w}')
    if result.get('baselines'):
        out += ['', '## Compared with', ''] + _compare_md(result)
    out += ['', '## Metrics', ''] + _tables_md(result) + ['', '## Figures', '']
    for name, path in figs.items():
        out.append(f'![{name}]({os.path.basename(path)})')
        out.append('')
    return '\n'.join(out) + '\n'


def _md_table_to_html(lines: list[str]) -> str:
    parts, rows = [], []

    def flush():
        if rows:
            head, body = rows[0], rows[2:]
            h = ''.join(f'<th>{_inline(c)}</th>' for c in head)
            b = ''.join('<tr>' + ''.join(f'<td>{_inline(c)}</td>' for c in r) + '</tr>'
                        for r in body)
            parts.append(f'<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>')
            rows.clear()

    for ln in lines:
        if ln.startswith('|'):
            rows.append([c.strip() for c in ln.strip('|').split('|')])
        else:
            flush()
            if ln.strip():
                parts.append(f'<p>{_inline(ln)}</p>')
    flush()
    return '\n'.join(parts)


def _inline(text: str) -> str:
    t = html.escape(text)
    while '**' in t:
        t = t.replace('**', '<b>', 1).replace('**', '</b>', 1)
    while t.count('`') >= 2:
        t = t.replace('`', '<code>', 1).replace('`', '</code>', 1)
    return t


def render_html(result: dict, figs: dict[str, str]) -> str:
    """report.html: one self-contained page (figures embedded as base64 PNG)."""
    def img(name):
        if name not in figs:
            return ''
        with open(figs[name], 'rb') as f:
            data = base64.b64encode(f.read()).decode('ascii')
        return f'<img src="data:image/png;base64,{data}" alt="{name}">'

    m = result['metrics']
    f = result['frames']
    u = result['uncertainty']
    cards = [('AbsRel', _fmt(m['abs_rel'])), ('RMSE', f'{_fmt(m["rms"], 3)} m'),
             ('δ<1.25', _fmt(m['d1'])), ('frames', f'{f["used"]} / {f["total"]}')]
    if u.get('available'):
        cards.append(('AUSE / AURG', f'{_fmt(u["ause"], 3)} / {_fmt(u["aurg"], 3)}'))
    oh = result['timings_ms'].get('overhead_total', {})
    if oh.get('n'):
        cards.append(('eval overhead', f'{_fmt(oh["mean"], 1)} ms/frame'))
    card_html = ''.join(f'<div class="card"><div class="v">{html.escape(v)}</div>'
                        f'<div class="k">{html.escape(k)}</div></div>' for k, v in cards)
    warn = ''.join(f'<div class="warn">⚠ {html.escape(w)}</div>'
                   for w in result.get('warnings', []))
    summary = '<ul>' + ''.join(f'<li>{_inline(ln.lstrip(" -"))}</li>'
                               for ln in _summary_lines(result)) + '</ul>'
    samples = ''.join(img(k) for k in figs if k.startswith('fig_sample_'))
    style = ('body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;'
             'max-width:1180px;color:#24292f}h1{margin-bottom:4px}'
             '.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}'
             '.card{background:#f6f8fa;border:1px solid #d0d7de;border-radius:8px;'
             'padding:10px 16px;min-width:120px}.card .v{font-size:22px;font-weight:600}'
             '.card .k{color:#57606a;font-size:12px}'
             '.warn{background:#fff8c5;border:1px solid #d4a72c;padding:8px;margin:8px 0;'
             'border-radius:6px}table{border-collapse:collapse;margin:8px 0;font-size:13px}'
             'td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:right}'
             'th{background:#f6f8fa}img{max-width:100%;margin:8px 0}'
             '.row{display:flex;gap:12px;flex-wrap:wrap}.row img{max-width:49%}'
             'code{background:#f6f8fa;padding:1px 4px;border-radius:4px}')
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Depth evaluation'
            f'</title><style>{style}</style></head><body>'
            f'<h1>Depth evaluation</h1><div class="cards">{card_html}</div>{warn}{summary}'
            + (f'<h2>Compared with</h2>{_md_table_to_html(_compare_md(result))}'
               f'{img("fig_compare")}' if result.get('baselines') else '')
            + f'<h2>Metrics</h2>{img("fig_metrics")}'
            f'{_md_table_to_html(_tables_md(result)[len(result.get("by_range", {})) + 3:])}'
            f'<h2>Error vs range</h2>{img("fig_range")}'
            f'<h2>Over time</h2>{img("fig_frames")}'
            f'<h2>Uncertainty</h2><div class="row">{img("fig_sparsification")}'
            f'{img("fig_calibration")}</div>'
            + (f'<h2>Latency and dropped frames</h2>{img("fig_latency")}'
               if 'fig_latency' in figs else '')
            + f'<h2>Samples</h2>{samples}</body></html>\n')


__all__ = ['headline', 'write_outputs', 'make_figures', 'render_markdown', 'render_html']
