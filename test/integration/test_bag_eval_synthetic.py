"""urcdc-bag-eval on a drive from the synthetic KITTI generator, and replay through the node."""
import glob
import os
import sys

import cv2
import numpy as np
import pytest
from fixtures.tiny_kitti import write_depth_bag

from urcdc_depth_ros.evaluation import evaluate_bag
from urcdc_depth_ros.kitti.to_bag import convert_drive
from urcdc_depth_ros.kitti.raw import KittiDrive
from urcdc_depth_ros.kitti.calib import velodyne_to_depth

synthetic = pytest.importorskip('urcdc_training.synthetic')
W, H, FRAMES = 320, 96, 3


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    info = synthetic.generate_dataset(str(root / 'data'), drives=1, frames=FRAMES, seed=0,
                                      width=W, height=H, test_drives=1)
    drive_dir = os.path.join(info.raw_path, info.date, info.drives[0])
    bag = convert_drive(drive_dir, str(root / 'bag'), progress=False)['path']
    return root, drive_dir, KittiDrive(drive_dir), bag


def test_bag_chain_equals_the_calibration_file_chain(drive):
    root, _, kd, bag = drive
    reference = [velodyne_to_depth(kd.read_scan(i), kd.calib) for i in range(FRAMES)]
    oracle = write_depth_bag(str(root / 'ref_oracle'), kd.image_stamps_ns,
                             [np.where(d > 0, d, np.inf) for d in reference], kd.calib.K)
    res = evaluate_bag([bag, oracle], None, depth_topic='/depth', crop='none')
    assert res['frames']['used'] == FRAMES
    assert res['metrics']['abs_rel'] < 1e-5 and res['metrics']['coverage'] == 1.0


def test_generator_dense_depth_as_oracle_agrees_with_the_bag_lidar(drive):
    root, drive_dir, kd, bag = drive
    paths = sorted(glob.glob(os.path.join(drive_dir, 'dense_depth', 'image_02', '*.png')))
    dense = [cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(np.float32) / 256.0 for p in paths]
    oracle = write_depth_bag(str(root / 'dense_oracle'), kd.image_stamps_ns,
                             [np.where(d > 0, d, np.inf) for d in dense], kd.calib.K)
    res = evaluate_bag([bag, oracle], None, depth_topic='/depth')
    # only pixels on object edges disagree (the LiDAR ray and the pixel ray see different
    # surfaces); a wrong TF/K gives AbsRel > 0.05 (see test_bag_eval.py)
    assert res['metrics']['abs_rel'] < 0.03 and res['metrics']['d1'] > 0.97
    assert res['by_range']['0-10']['abs_rel'] < 0.02


@pytest.mark.slow
@pytest.mark.ros
def test_replay_through_the_real_node_gives_the_metrics_of_mode_a(drive, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'ros'))
    from depth_node_helpers import PARAMS_FILE, estimator_config_from_yaml
    from fixtures.models import make_onnx_model

    from urcdc_depth_ros.estimator import DepthEstimator
    from urcdc_depth_ros.evaluation.replay import replay_and_evaluate
    _, _, _, bag = drive
    onnx_path, _, _ = make_onnx_model(str(tmp_path / 'model'), height=64, width=192)
    est = DepthEstimator.from_model(onnx_path, backend='onnxruntime',
                                    config=estimator_config_from_yaml(PARAMS_FILE))
    direct = evaluate_bag(bag, None, estimator=est)
    replayed = replay_and_evaluate(bag, str(tmp_path / 'replay'), params_file=PARAMS_FILE,
                                   model_path=onnx_path)
    assert replayed['replay']['sent'] == FRAMES and replayed['replay']['dropped'] == 0
    assert replayed['frames']['used'] == direct['frames']['used'] == FRAMES
    for k in ('abs_rel', 'rms', 'd1', 'silog'):
        assert replayed['metrics'][k] == pytest.approx(direct['metrics'][k], rel=1e-4, abs=1e-6)
    assert replayed['uncertainty']['ause'] == pytest.approx(direct['uncertainty']['ause'],
                                                            rel=1e-3, abs=1e-5)
    assert replayed['latency_ms']['n'] == FRAMES
    assert os.path.isfile(tmp_path / 'replay' / 'report.html')


@pytest.fixture(scope='module')
def stereo_bag(drive):
    root, drive_dir, _, _ = drive
    return convert_drive(drive_dir, str(root / 'stereo_bag'), progress=False,
                         cameras=('02', '03'))['path']


def test_the_right_camera_is_scored_through_its_own_tf_and_intrinsics(drive, stereo_bag):
    from urcdc_depth_ros.kitti.to_bag import CAMERAS
    root, drive_dir, _, _ = drive
    right = KittiDrive(drive_dir, camera=3)
    prefix, frame = CAMERAS['03']
    reference = [velodyne_to_depth(right.read_scan(i), right.calib) for i in range(FRAMES)]
    oracle = write_depth_bag(str(root / 'right_oracle'), right.image_stamps_ns,
                             [np.where(d > 0, d, np.inf) for d in reference], right.calib.K,
                             frame_id=frame)
    res = evaluate_bag([stereo_bag, oracle], None, depth_topic='/depth', crop='none',
                       image_topic=f'{prefix}/image_raw')
    assert res['frames']['used'] == FRAMES
    assert res['metrics']['abs_rel'] < 1e-5 and res['metrics']['coverage'] == 1.0
    # the sceptic's case: the left camera's depth claimed for the right camera is far off
    left = KittiDrive(drive_dir)
    wrong = write_depth_bag(str(root / 'right_wrong'), right.image_stamps_ns,
                            [np.where(d > 0, d, np.inf) for d in (
                                velodyne_to_depth(left.read_scan(i), left.calib)
                                for i in range(FRAMES))], right.calib.K, frame_id=frame)
    bad = evaluate_bag([stereo_bag, wrong], None, depth_topic='/depth', crop='none',
                       image_topic=f'{prefix}/image_raw')
    assert bad['metrics']['coverage'] < 0.9 or bad['metrics']['abs_rel'] > 0.05


def test_bag_eval_gives_one_row_per_camera(drive, stereo_bag, tmp_path):
    import json

    from fixtures.models import make_onnx_model

    from urcdc_depth_ros.evaluation.bag_eval_cli import main
    from urcdc_depth_ros.kitti.to_bag import CAMERAS
    onnx_path, _, _ = make_onnx_model(str(tmp_path / 'model'), height=64, width=192)
    out = tmp_path / 'eval'
    assert main([stereo_bag, '--model', onnx_path, '--out', str(out), '--panels', '0',
                 '--image-topic', f'{CAMERAS["02"][0]}/image_raw',
                 '--image-topic', f'{CAMERAS["03"][0]}/image_raw']) == 0
    rows = json.loads((out / 'cameras.json').read_text())
    assert [r['camera'] for r in rows] == ['kitti_camera_color_left',
                                           'kitti_camera_color_right']
    assert all(r['frames_used'] == FRAMES and np.isfinite(r['abs_rel']) for r in rows)
    assert rows[0]['abs_rel'] != rows[1]['abs_rel']  # each camera scored on its own images
    assert (out / 'kitti_camera_color_right' / 'report.html').is_file()
    assert (out / 'cameras.md').read_text().count('\n') == 4


@pytest.mark.slow
@pytest.mark.ros
def test_replaying_a_rig_through_one_node_gives_mode_a_rows_per_camera(drive, stereo_bag,
                                                                       tmp_path):
    import json
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'ros'))
    from depth_node_helpers import PARAMS_FILE
    from fixtures.models import make_onnx_model

    from urcdc_depth_ros.evaluation.bag_eval_cli import main
    from urcdc_depth_ros.kitti.to_bag import CAMERAS
    onnx_path, _, _ = make_onnx_model(str(tmp_path / 'model'), height=64, width=192)
    topics = [f'{CAMERAS["02"][0]}/image_raw', f'{CAMERAS["03"][0]}/image_raw']
    common = [stereo_bag, '--model', onnx_path, '--params-file', PARAMS_FILE, '--panels', '0',
              '--image-topic', topics[0], '--image-topic', topics[1]]
    assert main(common + ['--out', str(tmp_path / 'a')]) == 0
    assert main(common + ['--replay', '--out', str(tmp_path / 'b')]) == 0
    direct = json.loads((tmp_path / 'a' / 'cameras.json').read_text())
    rows = json.loads((tmp_path / 'b' / 'cameras.json').read_text())
    assert [r['camera'] for r in rows] == ['kitti_camera_color_left',
                                           'kitti_camera_color_right']
    assert all(r['frames_used'] == FRAMES and np.isfinite(r['abs_rel']) for r in rows)
    assert rows[0]['abs_rel'] != rows[1]['abs_rel']
    for got, want in zip(rows, direct):  # the node's depth scores as the in-process estimator
        for k in ('abs_rel', 'rms', 'd1', 'coverage'):
            assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), (got['camera'], k)
        assert got['ause'] == pytest.approx(want['ause'], rel=1e-3, abs=1e-5)
    replay = json.loads((tmp_path / 'b' / 'replay.json').read_text())
    assert replay['sent'] == 2 * FRAMES and replay['dropped'] == 0
    assert [c['depth_received'] for c in replay['cameras']] == [FRAMES, FRAMES]
    assert (tmp_path / 'b' / 'kitti_camera_color_right' / 'report.html').is_file()
    assert (tmp_path / 'b' / 'cameras.md').read_text().count('\n') == 4


def test_a_rig_replay_of_a_missing_topic_is_exit_2_naming_it(stereo_bag, tmp_path, caplog):
    from urcdc_depth_ros.evaluation.bag_eval_cli import main
    from urcdc_depth_ros.kitti.to_bag import CAMERAS
    assert main([stereo_bag, '--replay', '--model', 'm.onnx', '--out', str(tmp_path / 'r'),
                 '--image-topic', f'{CAMERAS["02"][0]}/image_raw',
                 '--image-topic', '/kitti/camera_gray_left/image_raw']) == 2
    assert "'/kitti/camera_gray_left/image_raw' (--image-topic) is not in the bag" in caplog.text


def test_a_rig_replay_refuses_overrides_for_cameras_it_does_not_have():
    from urcdc_depth_ros.errors import ConfigError
    from urcdc_depth_ros.evaluation.replay import _node_command
    surround = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                            'config', 'depth_surround.yaml')
    with pytest.raises(ConfigError, match="'cam_03.cx' overrides camera 'cam_03'"):
        _node_command(None, surround, None, '/ns', ['kitti_camera_color_left',
                                                    'kitti_camera_color_right'])
    assert _node_command(None, surround, None, '/ns', ['cam_02', 'cam_03'])[-1] == \
        'cameras:=[cam_02,cam_03]'
