"""One bag, several cameras: evaluate each camera's images against the LiDAR, one row each.

``urcdc-bag-eval BAG --model M --image-topic /kitti/camera_color_left/image_raw --image-topic
/kitti/camera_color_right/image_raw --out DIR`` runs :func:`.bag_eval.evaluate_bag` once per
image topic (its camera_info found beside it, its frame's TF to the LiDAR from the bag) into
``DIR/<camera>/`` and writes ``DIR/cameras.json`` and ``DIR/cameras.md`` with one row per camera.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Sequence

from .bag_eval import evaluate_bag
from .bag_topics import namespace_of

logger = logging.getLogger(__name__)

#: metrics shown in the per-camera table (keys of ``result['metrics']``)
ROW_METRICS = ('abs_rel', 'rms', 'd1', 'coverage')


def camera_label(image_topic: str) -> str:
    """A folder-safe camera name from its image topic.

    ``/kitti/camera_color_left/image_raw`` -> ``kitti_camera_color_left``.
    """
    return namespace_of(image_topic).strip('/').replace('/', '_') or 'camera'


def evaluate_cameras(bags: Sequence[str], out_dir: str, image_topics: Sequence[str],
                     **kw: Any) -> list[dict]:
    """Evaluate each of ``image_topics`` with the same options; returns the table rows."""
    rows = []
    for topic in image_topics:
        label = camera_label(topic)
        result = evaluate_bag(bags, os.path.join(out_dir, label), image_topic=topic, **kw)
        row = {'camera': label, 'image_topic': topic,
               'frames_used': result['frames']['used'],
               'frames_total': result['frames']['total']}
        row.update({k: result['metrics'][k] for k in ROW_METRICS if k in result['metrics']})
        row['ause'] = result.get('uncertainty', {}).get('ause')
        rows.append(row)
        logger.info('%s: %d frames, AbsRel %.4f', label, row['frames_used'], row['abs_rel'])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'cameras.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    cols = ['camera', 'frames_used'] + [k for k in ROW_METRICS if k in rows[0]] + ['ause']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for row in rows:
        lines.append('| ' + ' | '.join(_fmt(row.get(c)) for c in cols) + ' |')
    with open(os.path.join(out_dir, 'cameras.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return rows


def _fmt(value) -> str:
    return f'{value:.4f}' if isinstance(value, float) else str(value)


__all__ = ['ROW_METRICS', 'camera_label', 'evaluate_cameras']
