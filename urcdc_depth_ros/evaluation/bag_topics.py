"""Opening bags and choosing their topics: the first step of every bag tool.

:func:`open_bag` reads one or more bags as one (``rosbags.highlevel.AnyReader``);
:func:`pick_topic`, :func:`require_topic` and :func:`camera_info_topic_for` pick or check one
topic by message type with errors that list what the bag holds; :func:`resolve_topics` turns a
request (mode, optional topic names) into the :class:`EvalTopics` the bag evaluator reads.
Called by :mod:`.bag_eval`, :mod:`.replay` and ``urcdc_training.demo``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from . import bag_io

logger = logging.getLogger(__name__)

TF_TOPICS = ('/tf_static', '/tf')
MODES = ('estimator', 'topic')
IMAGE_PREFER = ('image_raw', 'image_rect', 'image')
LIDAR_PREFER = ('velo', 'lidar', 'points_raw')


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
        raise DataError(f'cannot open bag {[str(p) for p in ps]!r}: {type(exc).__name__}: '
                        f'{exc}. The file is corrupt, truncated or not a bag; re-record it, or '
                        'for a rosbag2 folder check that metadata.yaml matches the storage '
                        'files (`ros2 bag reindex` can rebuild it)') from exc
    return reader


def bag_topics(reader) -> dict[str, str]:
    """``{topic: msgtype}`` of every connection in the opened reader."""
    return {c.topic: c.msgtype for c in reader.connections}


def topics_text(topics: dict[str, str]) -> str:
    """``'/a [type], /b [type]'`` for error messages (``'(none)'`` when empty)."""
    return ', '.join(f'{t} [{m}]' for t, m in sorted(topics.items())) or '(none)'


def pick_topic(topics: dict[str, str], msgtype: str, what: str, flag: str,
               exclude: Sequence[str] = (), prefer: Sequence[str] = ()) -> str:
    """The one topic of ``msgtype`` (not in ``exclude``); DataError naming ``flag`` otherwise.

    With several candidates, the only one whose name contains a ``prefer`` token (tried in
    order) wins.
    """
    cands = [t for t, m in topics.items() if m == msgtype and t not in exclude]
    if len(cands) == 1:
        return cands[0]
    for token in prefer:
        hits = [t for t in cands if token in t]
        if len(hits) == 1:
            return hits[0]
    if not cands:
        raise DataError(f'the bag has no {what} topic ({msgtype}); topics present: '
                        f'{topics_text(topics)}')
    raise DataError(f'the bag has several {what} topics {sorted(cands)!r}; choose one with '
                    f'{flag}')


def require_topic(topics: dict[str, str], topic: str, msgtype: str, flag: str) -> str:
    """``topic`` if the bag holds it with ``msgtype``; DataError naming ``flag`` otherwise."""
    if topic not in topics:
        raise DataError(f'topic {topic!r} ({flag}) is not in the bag; topics present: '
                        f'{topics_text(topics)}')
    if topics[topic] != msgtype:
        raise DataError(f'topic {topic!r} ({flag}) carries {topics[topic]}, expected {msgtype}')
    return topic


def namespace_of(topic: str) -> str:
    """``'/ns/image_raw'`` -> ``'/ns'`` (``''`` for a top-level topic)."""
    return topic.rsplit('/', 1)[0]


def camera_info_topic_for(topics: dict[str, str], image_topic: str,
                          exclude: Sequence[str] = ()) -> str | None:
    """The camera_info beside ``image_topic`` (``<image>/camera_info``, then ``<ns>/...``).

    Falls back to the bag's only CameraInfo topic; None when that is ambiguous or absent.
    """
    for cand in (f'{image_topic}/camera_info', f'{namespace_of(image_topic)}/camera_info'):
        if topics.get(cand) == bag_io.CAMERA_INFO_TYPE and cand not in exclude:
            return cand
    infos = [t for t, m in topics.items() if m == bag_io.CAMERA_INFO_TYPE and t not in exclude]
    return infos[0] if len(infos) == 1 else None


@dataclass(frozen=True)
class EvalTopics:
    """The topics one evaluation reads, resolved against the bag.

    ``primary`` is the prediction source: the camera image (mode ``'estimator'``) or the
    recorded depth (mode ``'topic'``); ``camera_info`` holds the intrinsics of the primary.
    """

    mode: str
    primary: str
    image: str | None
    camera_info: str
    lidar: str
    uncertainty: str | None = None
    tf: tuple[str, ...] = ()

    def wanted(self) -> set[str]:
        """Every topic pass 1 reads."""
        return {t for t in (self.primary, self.lidar, self.camera_info, self.image,
                            self.uncertainty, *self.tf) if t}

    def as_dict(self) -> dict:
        """The ``topics`` block of metrics.json."""
        return {'primary': self.primary, 'image': self.image, 'camera_info': self.camera_info,
                'lidar': self.lidar, 'uncertainty': self.uncertainty, 'tf': list(self.tf)}


def resolve_topics(topics: dict[str, str], mode: str, depth_topic: str | None = None,
                   uncertainty_topic: str | None = None, image_topic: str | None = None,
                   camera_info_topic: str | None = None,
                   depth_camera_info_topic: str | None = None,
                   lidar_topic: str | None = None) -> EvalTopics:
    """Check the given topics and detect the rest (see :func:`.bag_eval.evaluate_bag`).

    Args:
        topics: ``{topic: msgtype}`` of the bag (:func:`bag_topics`).
        mode: ``'estimator'`` (the image is the primary) or ``'topic'`` (``depth_topic`` is).
    Raises:
        DataError: a named topic is missing or of the wrong type, a needed one cannot be
            detected, or the primary has no camera_info.
    """
    if mode == 'topic':
        depth_topic = require_topic(topics, depth_topic, bag_io.IMAGE_TYPE, '--depth-topic')
        if uncertainty_topic is not None:
            uncertainty_topic = require_topic(topics, uncertainty_topic, bag_io.IMAGE_TYPE,
                                              '--uncertainty-topic')
    derived = [t for t in (depth_topic, uncertainty_topic) if t]
    if image_topic is not None:
        image_topic = require_topic(topics, image_topic, bag_io.IMAGE_TYPE, '--image-topic')
    else:
        try:
            image_topic = pick_topic(topics, bag_io.IMAGE_TYPE, 'camera image',
                                     '--image-topic', exclude=derived, prefer=IMAGE_PREFER)
        except DataError:
            if mode == 'estimator':
                raise
            image_topic = None  # mode (b) needs the image only for panels and dropped frames
    lidar_topic = (require_topic(topics, lidar_topic, bag_io.POINTCLOUD_TYPE, '--lidar-topic')
                   if lidar_topic else
                   pick_topic(topics, bag_io.POINTCLOUD_TYPE, 'LiDAR point cloud',
                              '--lidar-topic', prefer=LIDAR_PREFER))
    if camera_info_topic is not None:
        camera_info_topic = require_topic(topics, camera_info_topic, bag_io.CAMERA_INFO_TYPE,
                                          '--camera-info-topic')
    elif image_topic is not None:
        excl = [f'{t}/camera_info' for t in derived]
        excl += [f'{namespace_of(t)}/camera_info' for t in derived if namespace_of(t)]
        camera_info_topic = camera_info_topic_for(topics, image_topic, exclude=excl)
    info_topic = camera_info_topic
    if mode == 'topic':
        if depth_camera_info_topic is not None:
            info_topic = require_topic(topics, depth_camera_info_topic,
                                       bag_io.CAMERA_INFO_TYPE, '--depth-camera-info-topic')
        else:
            for cand in (f'{depth_topic}/camera_info',
                         f'{namespace_of(depth_topic)}/camera_info'):
                if topics.get(cand) == bag_io.CAMERA_INFO_TYPE:
                    info_topic = cand
                    break
    if info_topic is None:
        raise DataError('the bag has no camera_info for the '
                        f'{"depth" if mode == "topic" else "image"} topic, so LiDAR points '
                        'cannot be projected; record the CameraInfo topic (or pass '
                        f'--camera-info-topic); topics present: {topics_text(topics)}')
    return EvalTopics(mode=mode, primary=depth_topic if mode == 'topic' else image_topic,
                      image=image_topic, camera_info=info_topic, lidar=lidar_topic,
                      uncertainty=uncertainty_topic,
                      tf=tuple(t for t in TF_TOPICS if topics.get(t) == bag_io.TF_TYPE))


__all__ = ['EvalTopics', 'TF_TOPICS', 'bag_topics', 'camera_info_topic_for', 'namespace_of',
           'open_bag', 'pick_topic', 'require_topic', 'resolve_topics', 'topics_text']
