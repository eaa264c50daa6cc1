"""The fleet report: one self-contained HTML page (images inline, no network, no framework).

Sections: overall metrics and uncertainty, a per-bag table sortable by any column (click a
header), per-camera and per-range tables, TAE and flicker over time, the worst frames
(image / predicted depth / relative error panels), failed bags with their reasons, warnings.
"""
from __future__ import annotations

import base64
import glob
import html
import logging
import math
import os
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

COLUMNS = ('used', 'frames', 'abs_rel', 'rms', 'd1', 'silog', 'coverage', 'ause_abs_rel',
           'aurg_margin_abs_m', 'calibration_error', 'unc_mean_m', 'tae', 'flicker',
           'model_ms')
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-dir') !== 'asc';
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return '–' if not math.isfinite(v) else f'{v:.4f}'
    return html.escape(str(v))


def _png_uri(png: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')


def _table(rows: dict[str, dict], label: str, sortable: bool = False) -> str:
    if not rows:
        return '<p>none</p>'
    cls = ' class="sortable"' if sortable else ''
    head = ''.join(f'<th>{html.escape(c)}</th>' for c in (label,) + COLUMNS)
    body = []
    for name, r in rows.items():
        cells = [f'<td data-v="{html.escape(name)}">{html.escape(name)}</td>']
        for c in COLUMNS:
            v = r.get(c, float('nan'))
            v = float('nan') if v is None else v
            cells.append(f'<td data-v="{v}">{_fmt(v)}</td>')
        body.append('<tr>' + ''.join(cells) + '</tr>')
    return f'<table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _colour(depth: np.ndarray, lo: float, hi: float, cmap: int) -> np.ndarray:
    import cv2
    d = np.asarray(depth, np.float32)
    valid = d >= 0
    x = np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
    img = cv2.applyColorMap((255 * x).astype(np.uint8), cmap)
    img[~valid] = 0
    return img


def _panel_png(panel: dict) -> bytes:
    import cv2
    pred = panel['pred']
    hi = float(np.percentile(pred[pred >= 0], 98)) if (pred >= 0).any() else 1.0
    parts = []
    if 'image' in panel:
        parts.append(cv2.cvtColor(np.asarray(panel['image'], np.uint8), cv2.COLOR_RGB2BGR))
    parts.append(_colour(pred, 0.0, hi, cv2.COLORMAP_TURBO))
    err = _colour(panel['err'], 0.0, 0.5, cv2.COLORMAP_INFERNO)
    parts.append(cv2.dilate(err, np.ones((3, 3), np.uint8)))  # sparse LiDAR pixels visible
    ok, buf = cv2.imencode('.png', np.vstack(parts))
    if not ok:
        raise OSError('PNG encoding failed')
    return buf.tobytes()


def worst_panels(out_dir: str, n: int) -> list[dict]:
    """The ``n`` worst frames (AbsRel) over every shard's stored panels."""
    from .fleet_shards import read_panels
    panels = []
    for path in sorted(glob.glob(os.path.join(out_dir, 'shards', '*.panels.npz'))):
        shard = os.path.basename(path)[:-len('.panels.npz')]
        for p in read_panels(path):
            p['shard'] = shard
            panels.append(p)
    return sorted(panels, key=lambda p: -float(p['abs_rel']))[:n]


def _stability_png(out_dir: str) -> bytes | None:
    import pyarrow.parquet as pq
    path = os.path.join(out_dir, 'frames.parquet')
    table = pq.read_table(path)
    if 'tae' not in table.column_names or table.num_rows == 0:
        return None
    from .report import _plt
    plt = _plt()
    bags = np.asarray(table.column('bag').to_numpy(zero_copy_only=False))
    stamps = np.asarray(table.column('stamp_ns').to_numpy(), np.float64)
    fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
    for bag in sorted(set(bags.tolist())):
        sel = bags == bag
        t = (stamps[sel] - stamps[sel].min()) / 1e9
        for ax, name in zip(axes, ('tae', 'flicker')):
            v = np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float64)[sel]
            ax.plot(t, v, '.-', label=os.path.basename(bag), lw=1, ms=3)
    axes[0].set_ylabel('TAE')
    axes[1].set_ylabel('flicker')
    axes[1].set_xlabel('time in bag, s')
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _uncertainty_html(u: dict) -> str:
    """The bag report's uncertainty table and lines (:func:`.report.uncertainty_md`) as HTML."""
    if not u.get('available'):
        return '<p>no uncertainty in the evaluated frames</p>'
    from .report import uncertainty_md
    out, rows = [], []
    for line in uncertainty_md(u) + ['']:
        if line.startswith('|'):
            if not line.startswith('|---'):
                tag = 'th' if not rows else 'td'
                rows.append('<tr>' + ''.join(f'<{tag}>{html.escape(c.strip())}</{tag}>'
                                             for c in line.strip('|').split('|')) + '</tr>')
            continue
        if rows:
            out.append('<table>' + ''.join(rows) + '</table>')
            rows = []
        if line:
            out.append(f'<p>{html.escape(line)}</p>')
    if u.get('pooled_fraction', 1.0) < 1.0:
        out.append(f'<p>Pooled on a seeded {u["pooled_fraction"]:.3%} subset of the pixels.</p>')
    return '\n'.join(out)


def render_fleet_html(out_dir: str, fleet: dict, n_panels: int = 6) -> str:
    """The report page as a string (every image a data: URI)."""
    o = fleet.get('overall') or {}
    parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>Fleet evaluation</title>',
             '<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;'
             'margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}'
             'th{cursor:pointer;background:#eee}img{max-width:100%}</style></head><body>',
             '<h1>Fleet evaluation</h1>',
             f'<p>{len(fleet.get("bags", []))} bags, {len(fleet.get("failed_bags", {}))} '
             f'failed; {o.get("used", 0)} of {o.get("frames", 0)} frames evaluated.</p>',
             '<h2>Overall</h2>', _table({'all bags': o} if o else {}, 'scope'),
             '<p>Metrics are per-image means over every evaluated frame; AUSE/AURG, margin '
             'and calibration error are on the pooled pixels (as urcdc-bag-eval); TAE and '
             'flicker are per consecutive frame pair (see temporal.py).</p>',
             '<h2>Uncertainty</h2>', _uncertainty_html(o.get('uncertainty') or {}),
             '<h2>Per bag</h2><p>Click a header to sort.</p>',
             _table({os.path.basename(k): v for k, v in fleet.get('per_bag', {}).items()},
                    'bag', sortable=True),
             '<h2>Per camera</h2>', _table(fleet.get('per_camera', {}), 'camera'),
             '<h2>Per depth range</h2><table><thead><tr><th>range (m)</th><th>pixels</th>'
             '<th>abs_rel</th><th>rms</th></tr></thead><tbody>']
    for name, r in fleet.get('by_range', {}).items():
        parts.append(f'<tr><td>{name}</td><td>{r["n"]}</td><td>{_fmt(r["abs_rel"])}</td>'
                     f'<td>{_fmt(r["rms"])}</td></tr>')
    parts.append('</tbody></table>')
    png = _stability_png(out_dir) if os.path.exists(os.path.join(out_dir, 'frames.parquet')) \
        else None
    parts.append('<h2>Temporal stability over time</h2>')
    parts.append(f'<img alt="TAE and flicker per bag over time" src="{_png_uri(png)}">'
                 if png else '<p>no frame pairs with ego-motion (the bags have no /tf)</p>')
    parts.append(f'<h2>Worst {n_panels} frames</h2><p>Rows: image, predicted depth, '
                 'relative error at the LiDAR pixels (0 to 0.5).</p>')
    for p in worst_panels(out_dir, n_panels):
        parts.append(f'<figure><img alt="frame {int(p["index"])}" '
                     f'src="{_png_uri(_panel_png(p))}"><figcaption>{html.escape(p["shard"])} '
                     f'frame {int(p["index"])}, AbsRel {float(p["abs_rel"]):.4f}'
                     '</figcaption></figure>')
    parts.append('<h2>Failed bags</h2>')
    fails = fleet.get('failed_bags', {})
    parts.append('<ul>' + ''.join(f'<li><b>{html.escape(os.path.basename(b))}</b>: '
                                  f'{html.escape(r)}</li>' for b, r in fails.items()) + '</ul>'
                 if fails else '<p>none</p>')
    warns = fleet.get('run', {}).get('warnings', [])
    items = ''.join(f'<li>{html.escape(w)}</li>' for w in warns)
    parts.append('<h2>Warnings</h2>' + (f'<ul>{items}</ul>' if warns else '<p>none</p>'))
    parts.append(f'<script>{_SORT_JS}</script></body></html>')
    return '\n'.join(parts)


def write_fleet_report(out_dir: str, fleet: dict, n_panels: int = 6) -> str:
    """Write ``out_dir/report.html``; returns its path."""
    path = os.path.join(out_dir, 'report.html')
    with open(path, 'w') as f:
        f.write(render_fleet_html(out_dir, fleet, n_panels))
    logger.info('fleet report written to %s', path)
    return path


__all__ = ['render_fleet_html', 'worst_panels', 'write_fleet_report']
