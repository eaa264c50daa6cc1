"""urcdc-bag-eval on real rosbag2 files: the LiDAR -> TF -> K chain, both modes, bad input."""
import csv
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fixtures.tiny_kitti import make_tiny_drive, write_depth_bag

from urcdc_depth_ros.errors import ConfigError, DataError
from urcdc_depth_ros.evaluation import bag_eval_cli, bag_io, evaluate_bag
from urcdc_depth_ros.kitti.to_bag import CAMERA_INFO_TOPIC, convert_drive
from urcdc_depth_ros.kitti.raw import KittiDrive
from urcdc_depth_ros.kitti.calib import KittiCalib

FRAMES = 4


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('evaldata')
    drive_dir, calib, depths = make_tiny_drive(str(root), frames=FRAMES)
    kd = KittiDrive(drive_dir)
    out = SimpleNamespace(root=root, drive=drive_dir, calib=calib, depths=depths, kd=kd)
    out.mcap = convert_drive(drive_dir, str(root / 'kitti_mcap'), progress=False)['path']
    out.sqlite = convert_drive(drive_dir, str(root / 'kitti_db3'), storage='sqlite3',
                               progress=False)['path']
    out.oracle = write_depth_bag(str(root / 'oracle'), kd.image_stamps_ns, depths, calib.K)
    out.images = {kd.read_image(i).tobytes(): depths[i] for i in range(FRAMES)}
    return out


def copy_bag(src, dst, drop=()):
    """Copy a bag (same storage plugin: MCAP) leaving out the topics in ``drop``."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = bag_io.get_ros2_typestore()
    with AnyReader([Path(src)], default_typestore=ts) as r, \
            Writer(dst, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for c in r.connections:
            if c.topic not in drop:
                conns[c.id] = w.add_connection(c.topic, c.msgtype, typestore=ts)
        for c, t, raw in r.messages():
            if c.id in conns:
                w.write(conns[c.id], t, raw)
    return dst


class OracleEstimator:
    """Stands in for DepthEstimator: returns the scene's exact depth (optionally perturbed)."""

    def __init__(self, by_image, rel_noise=None, informative=True):
        self.by_image = by_image
        self.rel_noise = rel_noise
        self.informative = informative

    def estimate(self, image, K, encoding='rgb8'):
        assert encoding == 'rgb8' and image.dtype == np.uint8
        gt = self.by_image[image.tobytes()].astype(np.float32)
        depth = np.where(gt < 100, gt, np.nan).astype(np.float32)
        unc = 0.05 * depth
        if self.rel_noise is not None:
            rng = np.random.default_rng(0)
            noise = self.rel_noise * rng.standard_normal(depth.shape).astype(np.float32)
            depth = depth * (1 + noise)
            unc = (np.abs(noise) * depth if self.informative else
                   rng.uniform(0, 1, depth.shape).astype(np.float32))
        return SimpleNamespace(depth_m=depth, uncertainty=unc, K=np.asarray(K), timings_ms={})


def test_oracle_depth_topic_reproduces_the_lidar_so_the_projection_chain_is_exact(data, tmp_path):
    res = evaluate_bag([data.mcap, data.oracle], tmp_path / 'rep', depth_topic='/depth',
                       uncertainty_topic='/uncertainty', crop='none')
    assert res['frames'] == {'total': FRAMES, 'used': FRAMES, 'skipped': 0, 'skip_reasons': {}}
    assert res['metrics']['abs_rel'] <= 0.01
    assert res['metrics']['abs_rel'] < 1e-5 and res['metrics']['d1'] == 1.0
    assert res['metrics']['coverage'] == 1.0
    assert res['latency_ms']['p50'] == pytest.approx(30.0)
    assert res['dropped']['dropped'] == 0
    assert res['timings_ms']['gt_projection']['n'] == FRAMES


def test_oracle_estimator_in_mode_a_matches_the_lidar(data):
    res = evaluate_bag(data.mcap, None, estimator=OracleEstimator(data.images), crop='garg')
    assert res['mode'] == 'estimator' and res['frames']['used'] == FRAMES
    assert res['metrics']['abs_rel'] <= 0.01
    assert res['topics']['camera_info'] == CAMERA_INFO_TOPIC
    assert res['timings_ms']['model']['n'] == FRAMES


def test_tf_off_by_half_a_metre_fails_loudly(data, tmp_path):
    wrong = data.calib.T_cam0_velo.copy()
    wrong[0, 3] += 0.5
    drive_copy = tmp_path / 'raw'
    shutil.copytree(os.path.dirname(data.drive), drive_copy)
    KittiCalib(data.calib.P_rect, data.calib.R_rect_00, wrong, data.calib.width,
               data.calib.height).write(str(drive_copy))
    bag = convert_drive(str(drive_copy / os.path.basename(data.drive)), str(tmp_path / 'b'),
                        progress=False)['path']
    res = evaluate_bag([bag, data.oracle], None, depth_topic='/depth', crop='none')
    assert res['metrics']['abs_rel'] > 0.05   # vs < 1e-5 with the right TF


def test_mcap_and_sqlite3_bags_give_identical_metrics(data):
    est = OracleEstimator(data.images, rel_noise=0.1)
    a = evaluate_bag(data.mcap, None, estimator=est)
    b = evaluate_bag(data.sqlite, None, estimator=est)
    for key in ('metrics', 'by_range', 'uncertainty', 'frames'):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True)
    assert all(row['n'] > 0 for row in a['by_range'].values())
    assert 0.05 < a['metrics']['abs_rel'] < 0.12


def test_uncertainty_that_tracks_the_error_beats_random_uncertainty(data):
    good = evaluate_bag(data.mcap, None, estimator=OracleEstimator(data.images, 0.1))
    rand = evaluate_bag(data.mcap, None,
                        estimator=OracleEstimator(data.images, 0.1, informative=False))
    g, r = good['uncertainty'], rand['uncertainty']
    assert g['ause_abs_m'] < 0.01 < r['ause_abs_m']   # metres uncertainty ranks metres error
    assert g['ause'] < r['ause'] and g['aurg'] > 0.2 > abs(r['aurg'])


def test_frames_without_a_close_lidar_scan_are_skipped_with_the_reason(data):
    with pytest.raises(DataError, match='no LiDAR scan within 1 ms'):
        evaluate_bag([data.mcap, data.oracle], None, depth_topic='/depth', tolerance_ms=1)


def test_missing_depth_frames_count_as_dropped_and_others_still_evaluate(data, tmp_path):
    kd = data.kd
    part = write_depth_bag(str(tmp_path / 'part'), kd.image_stamps_ns[[0, 2, 3]],
                           [data.depths[i] for i in (0, 2, 3)], data.calib.K)
    res = evaluate_bag([data.mcap, part], None, depth_topic='/depth')
    assert res['dropped'] == {'images': FRAMES, 'depth_frames': 3, 'dropped': 1,
                              'drop_rate': 0.25}
    assert res['frames']['used'] == 3


def test_missing_topic_lists_the_topics_present(data):
    with pytest.raises(DataError, match=r"'/nope'.*/kitti/velo/pointcloud"):
        evaluate_bag([data.mcap, data.oracle], None, depth_topic='/nope')


def test_bag_without_tf_is_a_data_error_naming_the_frames(data, tmp_path):
    no_tf = copy_bag(data.mcap, str(tmp_path / 'notf'), drop=('/tf_static',))
    with pytest.raises(DataError, match="no transform from 'kitti_velo'"):
        evaluate_bag(no_tf, None, estimator=OracleEstimator(data.images))


def test_bag_without_camera_info_is_a_data_error(data, tmp_path):
    no_info = copy_bag(data.mcap, str(tmp_path / 'noinfo'), drop=(CAMERA_INFO_TOPIC,))
    with pytest.raises(DataError, match='no camera_info'):
        evaluate_bag(no_info, None, estimator=OracleEstimator(data.images))


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'missing'])
def test_corrupt_or_truncated_bag_is_a_clear_data_error(data, tmp_path, damage):
    bag = tmp_path / 'bad'
    shutil.copytree(data.mcap, bag)
    mcap = next(bag.glob('*.mcap'))
    if damage == 'garbage':
        mcap.write_bytes(os.urandom(4096))
    elif damage == 'truncated':
        mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size * 6 // 10])
    else:
        bag = tmp_path / 'does_not_exist'
    with pytest.raises(DataError, match='corrupt|does not exist'):
        evaluate_bag(bag, None, estimator=OracleEstimator(data.images))


def test_exactly_one_mode_must_be_chosen(data):
    with pytest.raises(ConfigError, match='exactly one'):
        evaluate_bag(data.mcap, None)


def test_cli_writes_json_csv_markdown_and_self_contained_html(data, tmp_path):
    out = tmp_path / 'report'
    rc = bag_eval_cli.main([data.mcap, data.oracle, '--depth-topic', '/depth',
                            '--uncertainty-topic', '/uncertainty', '--out', str(out),
                            '--crop', 'none', '--panels', '1'])
    assert rc == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['metrics']['abs_rel'] < 1e-5
    assert set(metrics['by_range']) == {'0-10', '10-20', '20-40', '40-80'}
    assert metrics['frames']['used'] == FRAMES and 'ause' in metrics['uncertainty']
    with open(out / 'per_frame.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['status'] for r in rows] == ['ok'] * FRAMES
    html = (out / 'report.html').read_text()
    assert 'data:image/png;base64' in html and 'src="http' not in html
    for name in ('fig_metrics', 'fig_range', 'fig_frames', 'fig_sparsification',
                 'fig_calibration', 'fig_latency', 'fig_sample_0'):
        assert (out / f'{name}.png').stat().st_size > 5000
        assert f'{name}.png' in (out / 'report.md').read_text()
    assert bag_eval_cli.main([data.mcap, '--depth-topic', '/depth', '--out', str(out)]) == 2


def test_cli_compare_shows_an_earlier_run_beside_this_one(data, tmp_path):
    base = tmp_path / 'base'
    shifted = [d * 1.3 for d in data.depths]  # a worse "baseline": 30 % too far everywhere
    worse = write_depth_bag(str(tmp_path / 'worse'), data.kd.image_stamps_ns, shifted,
                            data.calib.K)
    args = ['--depth-topic', '/depth', '--uncertainty-topic', '/uncertainty', '--crop', 'none',
            '--panels', '0']
    assert bag_eval_cli.main([data.mcap, worse, '--out', str(base)] + args) == 0
    out = tmp_path / 'new'
    assert bag_eval_cli.main([data.mcap, data.oracle, '--out', str(out), '--compare',
                              f'worse={base / "metrics.json"}'] + args) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['baselines']['worse']['abs_rel'] == pytest.approx(0.3, abs=1e-3)
    md = (out / 'report.md').read_text()
    assert '## Compared with' in md and '| worse |' in md
    assert (out / 'fig_compare.png').stat().st_size > 5000
    assert 'Compared with' in (out / 'report.html').read_text()
    # a bad --compare is a clear configuration error, before any work
    for spec in ('no-equals-sign', f'x={tmp_path / "missing.json"}', f'x={out / "report.md"}'):
        assert bag_eval_cli.main([data.mcap, data.oracle, '--out', str(tmp_path / 'bad'),
                                  '--compare', spec] + args) == 2


def test_replay_of_two_bags_is_refused_naming_them(data, tmp_path, caplog):
    assert bag_eval_cli.main([data.mcap, data.oracle, '--replay', '--model', 'm.onnx', '--out',
                              str(tmp_path / 'r')]) == 2
    assert 'plays one bag' in caplog.text
