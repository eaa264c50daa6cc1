"""The bag evaluator's steps one by one: topics, pass 1, matching, shards of pass 2, summary."""
import pickle
import sys

import numpy as np
import pytest
from fixtures.tiny_kitti import make_tiny_drive, write_depth_bag

from urcdc_depth_ros.errors import ConfigError, DataError
from urcdc_depth_ros.evaluation import bag_eval, bag_eval_cli, bag_io, evaluate_bag
from urcdc_depth_ros.evaluation.bag_eval import (BagIndex, EvalFrame, FrameScorer, Protocol,
                                                 collect_index, match_frames, score_frames,
                                                 summarize)
from urcdc_depth_ros.evaluation.bag_topics import (EvalTopics, bag_topics, open_bag,
                                                   resolve_topics)
from urcdc_depth_ros.kitti.to_bag import convert_drive
from urcdc_depth_ros.kitti.raw import KittiDrive

FRAMES = 6
IMG, INFO, PC, TF = (bag_io.IMAGE_TYPE, bag_io.CAMERA_INFO_TYPE, bag_io.POINTCLOUD_TYPE,
                     bag_io.TF_TYPE)
KITTI_TOPICS = {'/cam/image_raw': IMG, '/cam/camera_info': INFO, '/velo/points': PC,
                '/tf_static': TF}


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """A KITTI-style bag plus a recorded depth bag with 10 % noise (so metrics are not 0)."""
    root = tmp_path_factory.mktemp('steps')
    drive_dir, calib, depths = make_tiny_drive(str(root), frames=FRAMES)
    kd = KittiDrive(drive_dir)
    mcap = convert_drive(drive_dir, str(root / 'kitti'), progress=False)['path']
    rng = np.random.default_rng(3)
    noisy = [d * (1 + 0.1 * rng.standard_normal(d.shape)).astype(np.float32) for d in depths]
    pred = write_depth_bag(str(root / 'pred'), kd.image_stamps_ns, noisy, calib.K,
                           uncertainties=[np.abs(n - d) for n, d in zip(noisy, depths)])
    return [mcap, pred]


def _steps(paths, **protocol):
    """Run steps 1-3 and return (reader, topics, index, frames, protocol)."""
    reader = open_bag(paths)
    topics = resolve_topics(bag_topics(reader), 'topic', depth_topic='/depth',
                            uncertainty_topic='/uncertainty')
    index = collect_index(reader, topics)
    pr = Protocol(**protocol)
    return reader, topics, index, match_frames(index, topics, pr.tolerance_ms), pr


# --- step 1: topics ------------------------------------------------------------------------

def test_resolve_topics_detects_each_topic_by_type_and_finds_the_depth_camera_info():
    topics = dict(KITTI_TOPICS, **{'/depth': IMG, '/uncertainty': IMG,
                                   '/depth/camera_info': INFO})
    est = resolve_topics(topics, 'estimator')
    assert (est.primary, est.image, est.camera_info, est.lidar, est.tf) == (
        '/cam/image_raw', '/cam/image_raw', '/cam/camera_info', '/velo/points', ('/tf_static',))
    rec = resolve_topics(topics, 'topic', depth_topic='/depth', uncertainty_topic='/uncertainty')
    assert (rec.primary, rec.image, rec.camera_info) == ('/depth', '/cam/image_raw',
                                                         '/depth/camera_info')
    assert rec.wanted() == {'/depth', '/uncertainty', '/cam/image_raw', '/depth/camera_info',
                            '/velo/points', '/tf_static'}


def test_resolve_topics_errors_name_the_flag_and_list_what_the_bag_holds():
    with pytest.raises(DataError, match=r"'/depth' \(--depth-topic\) is not in the bag.*"
                                        r'/velo/points'):
        resolve_topics(KITTI_TOPICS, 'topic', depth_topic='/depth')
    two = dict(KITTI_TOPICS, **{'/cam2/left': IMG})
    with pytest.raises(DataError, match='several camera image topics.*--image-topic'):
        resolve_topics({'/cam2/left': IMG, '/cam3/right': IMG, '/velo/points': PC},
                       'estimator')
    assert resolve_topics(two, 'estimator').image == '/cam/image_raw'  # 'image_raw' preferred
    with pytest.raises(DataError, match='no camera_info for the image'):
        resolve_topics({'/cam/image_raw': IMG, '/velo/points': PC}, 'estimator')


# --- step 2 and 3: pass 1 and frame matching -----------------------------------------------

def _index(primary_ns, lidar_ns, unc_ns=()):
    stamps = {'/depth': [(s, s + 5) for s in primary_ns], '/velo': [(s, s) for s in lidar_ns],
              '/unc': [(s, s + 5) for s in unc_ns]}
    return BagIndex(tree=bag_io.TransformTree(), infos=[(0, None)], stamps=stamps)


def test_match_frames_takes_the_nearest_scan_within_the_tolerance_and_marks_panels():
    ms = 1_000_000
    topics = EvalTopics(mode='topic', primary='/depth', image=None, camera_info='/info',
                        lidar='/velo', uncertainty='/unc')
    index = _index([100 * ms, 200 * ms, 200 * ms, 300 * ms, 400 * ms, 500 * ms],
                   [95 * ms, 230 * ms, 290 * ms, 410 * ms, 480 * ms], unc_ns=[300 * ms])
    frames = match_frames(index, topics, tolerance_ms=25, max_frames=4, n_panels=2)
    assert [f.stamp_ns // ms for f in frames] == [100, 200, 300, 400, 500]  # duplicate dropped
    assert [f.status for f in frames] == ['pending', 'skipped', 'pending', 'pending',
                                          'not evaluated']
    assert frames[1].reason == 'no LiDAR scan within 25 ms' and frames[1].lidar_dt_ms == 30
    assert frames[4].reason == 'beyond --max-frames 4'
    assert [f.lidar_key[1] // ms for f in frames if f.lidar_key] == [95, 290, 410, 480]
    assert frames[2].unc_key == ('/unc', 300 * ms) and frames[0].unc_key is None
    assert frames[2].keys == {('/depth', 300 * ms), ('/velo', 290 * ms), ('/unc', 300 * ms)}
    assert [f.index for f in frames if f.panel] == [0, 3]  # first and last pending frame
    assert frames[0].receive_ns == 100 * ms + 5


def test_collect_index_reads_every_stamp_without_decoding_images(bags):
    reader, topics, index, frames, _ = _steps(bags)
    reader.close()
    assert len(index.stamps['/depth']) == FRAMES and len(index.infos) == FRAMES
    assert index.stamp_set('/depth') == index.stamp_set('/uncertainty')
    assert index.read_error is None
    T = index.tree.lookup('kitti_camera_color_left_optical', 'kitti_velo')  # from /tf_static
    assert not np.allclose(T, np.eye(4))
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)
    assert [f.status for f in frames] == ['pending'] * FRAMES


# --- step 4 and 5: pass 2 in shards, summary -----------------------------------------------

def _score(paths, shard_of=None, **protocol):
    """Frames scored in one pass (shard_of None) or in shards of ``shard_of`` frames."""
    reader, topics, index, frames, pr = _steps(paths, **protocol)
    read = []  # messages read per shard
    messages = reader.messages

    def counting(**kw):
        read.append(0)
        for m in messages(**kw):
            read[-1] += 1
            yield m
    reader.messages = counting
    try:
        step = shard_of or len(frames)
        for a in range(0, len(frames), step):
            shipped = pickle.loads(pickle.dumps(index)) if shard_of else index  # as to a worker
            score_frames(reader, frames[a:a + step], FrameScorer(shipped, topics, pr, seed=7))
    finally:
        reader.close()
    return frames, index, topics, pr, read


def test_shards_score_each_frame_exactly_as_one_pass_does(bags, monkeypatch):
    monkeypatch.setattr(bag_eval, 'POOL_PER_FRAME', 500)  # force the random pixel subset
    full, index, topics, pr, read_full = _score(bags)
    sharded, _, _, _, read_sharded = _score(bags, shard_of=2)
    assert [f.status for f in full] == ['ok'] * FRAMES
    keys = ('abs_rel', 'rms', 'd1', 'n', 'coverage')
    assert [[f.row[k] for k in keys] for f in sharded] == [[f.row[k] for k in keys]
                                                           for f in full]
    for a, b in zip(full, sharded):
        assert a.samples[0].size == 500
        for x, y in zip(a.samples, b.samples):
            np.testing.assert_array_equal(x, y)
    # each shard reads only the log-time window of its own frames
    assert len(read_sharded) == 3 and max(read_sharded) < 0.5 * read_full[0]
    merged, _ = summarize(sharded, index, topics, pr)
    whole, _ = summarize(full, index, topics, pr)
    assert merged['metrics'] == whole['metrics'] and merged['uncertainty'] == whole['uncertainty']


def test_summary_is_the_per_image_mean_and_noise_scores_worse_than_the_oracle_bound(bags):
    frames, index, topics, pr, _ = _score(bags, crop='none')
    result, series = summarize(frames, index, topics, pr)
    per_image = [f.row['abs_rel'] for f in frames]
    assert result['metrics']['abs_rel'] == pytest.approx(np.mean(per_image), rel=1e-12)
    # 10 % Gaussian noise: E|n| = 0.1 * sqrt(2 / pi) ~= 0.080 relative error
    assert result['metrics']['abs_rel'] == pytest.approx(0.1 * np.sqrt(2 / np.pi), rel=0.1)
    # the uncertainty is the true |error| (m): the oracle ranking, far better than chance
    u = result['uncertainty']
    assert u['ause_abs_m'] == pytest.approx(0, abs=1e-9) and u['aurg_abs_m'] > 0.1
    assert u['aurg_abs_rel'] > 5 * u['ause_abs_rel']
    assert series['pred'].size == result['metrics']['n_pixels']
    whole = evaluate_bag(bags, None, depth_topic='/depth', uncertainty_topic='/uncertainty',
                         crop='none', seed=7)
    for block in ('metrics', 'frames', 'by_range', 'uncertainty', 'topics', 'protocol'):
        assert whole[block] == result[block], block


def test_summarize_of_hand_made_frames_counts_reasons_and_warns_without_tf():
    topics = EvalTopics(mode='topic', primary='/depth', image=None, camera_info='/i',
                        lidar='/velo')
    others = dict.fromkeys(('silog', 'log10', 'rms', 'sq_rel', 'log_rms', 'd1', 'd2', 'd3'), 0.4)
    rows = [{'abs_rel': a, 'n': 10, 'coverage': 1.0, 'gt_ms': 1.0, 'metrics_ms': 1.0,
             'read_ms': 1.0, **others} for a in (0.1, 0.3)]
    frames = [EvalFrame(index=i, stamp_ns=i, status='ok', row=r,
                        samples=(np.ones(10, np.float32), np.ones(10, np.float32), None))
              for i, r in enumerate(rows)]
    frames.append(EvalFrame(index=2, stamp_ns=2, status='skipped', reason='why'))
    result, _ = summarize(frames, _index([0, 1, 2], []), topics, Protocol())
    assert result['metrics']['abs_rel'] == pytest.approx(0.2)
    assert result['frames'] == {'total': 3, 'used': 2, 'skipped': 1, 'skip_reasons': {'why': 1}}
    assert result['uncertainty'] == {'available': False}
    assert 'no /tf_static or /tf' in result['warnings'][0]
    assert 'disagree grossly' in result['warnings'][1]  # d1 0.4 < 0.5


def test_protocol_rejects_unknown_crop_and_tx_rule():
    assert Protocol(crop='none').crop is None
    with pytest.raises(ConfigError, match='crop'):
        Protocol(crop='middle')
    with pytest.raises(ConfigError, match='tx_mode'):
        Protocol(tx_mode='sideways')


@pytest.mark.ros
def test_a_node_that_dies_at_start_up_is_exit_2_with_its_status(bags, tmp_path, caplog):
    node = f'{sys.executable} -c "raise SystemExit(3)"'
    rc = bag_eval_cli.main([bags[0], '--replay', '--node-cmd', node, '--out',
                            str(tmp_path / 'r')])
    assert rc == 2
    assert 'the node exited with status 3 during start-up' in caplog.text
