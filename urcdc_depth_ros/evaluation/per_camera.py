"""One bag, several cameras: evaluate each camera's images against the LiDAR, one row each.

``urcdc-bag-eval BAG --model M --image-topic /kitti/camera_color_left/image_raw --image-topic
/kitti/camera_color_right/image_raw --out DIR`` runs :func:`.bag_eval.evaluate_bag` once per
image topic (its camera_info found beside it, its frame's TF to the LiDAR from the bag) into
``DIR/<camera>/`` and writes ``DIR/cameras.json`` and ``DIR/cameras.md`` with one row per camera.
With ``--replay`` the same rows score what one multi-camera node published for each camera
(:func:`.replay.replay_and_evaluate_cameras`, through ``camera_kw``).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Sequence

from ..errors import ConfigError
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


def camera_labels(image_topics: Sequence[str]) -> list[str]:
    """:func:`camera_label` of each topic; ConfigError when two topics give the same label."""
    labels = [camera_label(t) for t in image_topics]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        same = [t for t, x in zip(image_topics, labels) if x == label]
        raise ConfigError(f'image topics {same!r} all give camera name {label!r} (the topic\'s '
                          'namespace); each camera needs its own namespace')
    return labels


def camera_row(label: str, image_topic: str, result: dict) -> dict:
    """One table row from an :func:`evaluate_bag` result: frames, :data:`ROW_METRICS`, AUSE."""
    row = {'camera': label, 'image_topic': image_topic,
           'frames_used': result['frames']['used'], 'frames_total': result['frames']['total']}
    row.update({k: result['metrics'][k] for k in ROW_METRICS if k in result['metrics']})
    row['ause'] = result.get('uncertainty', {}).get('ause')
    return row


def write_camera_table(out_dir: str, rows: Sequence[dict]) -> None:
    """``out_dir/cameras.json`` (the rows) and ``out_dir/cameras.md`` (a markdown table)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'cameras.json'), 'w') as f:
        json.dump(list(rows), f, indent=2)
    cols = ['camera', 'frames_used'] + [k for k in ROW_METRICS if k in rows[0]] + ['ause']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for row in rows:
        lines.append('| ' + ' | '.join(_fmt(row.get(c)) for c in cols) + ' |')
    with open(os.path.join(out_dir, 'cameras.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def evaluate_cameras(bags: Sequence[str], out_dir: str, image_topics: Sequence[str],
                     camera_kw: Callable[[str], dict] | None = None, **kw: Any) -> list[dict]:
    """Evaluate each of ``image_topics`` with the same options; returns the table rows.

    Args:
        camera_kw: extra :func:`evaluate_bag` keywords of one camera from its label (mode b:
            that camera's recorded ``depth_topic``, ...); ``kw`` are shared by every camera.
    """
    rows = []
    for topic, label in zip(image_topics, camera_labels(image_topics)):
        extra = camera_kw(label) if camera_kw else {}
        result = evaluate_bag(bags, os.path.join(out_dir, label), image_topic=topic,
                              **kw, **extra)
        rows.append(camera_row(label, topic, result))
        logger.info('%s: %d frames, AbsRel %.4f', label, rows[-1]['frames_used'],
                    rows[-1]['abs_rel'])
    write_camera_table(out_dir, rows)
    return rows


def _fmt(value) -> str:
    return f'{value:.4f}' if isinstance(value, float) else str(value)


__all__ = ['ROW_METRICS', 'camera_label', 'camera_labels', 'camera_row', 'evaluate_cameras',
           'write_camera_table']
