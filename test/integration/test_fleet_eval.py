"""urcdc-fleet-eval on a real local Ray cluster: parity, faults, worker/driver kills, resume.

Three small synthetic bags (one cut off by a simulated power loss, one corrupt); the
estimator is the generator's exact depth (test/fixtures/fleet_oracle.py), so the metrics are
known without a network. One Ray cluster (2 CPUs, session under a short /tmp dir) serves the
module; teardown checks that no Ray process survives.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip('ray')
pq = pytest.importorskip('pyarrow.parquet')
synthetic = pytest.importorskip('urcdc_training.synthetic')

from fixtures.fleet_oracle import OracleFactory  # noqa: E402

from urcdc_depth_ros.evaluation import evaluate_bag  # noqa: E402
from urcdc_depth_ros.evaluation.fleet import run_fleet  # noqa: E402
from urcdc_depth_ros.kitti.to_bag import convert_drive  # noqa: E402
from urcdc_depth_ros.metrics import METRIC_NAMES  # noqa: E402

W, H, FRAMES = 320, 96, 8
TEST_DIR = str(Path(__file__).resolve().parents[1])


def _ray_pids(temp_dir):
    out = subprocess.run(['ps', '-eo', 'pid,args'], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if temp_dir in ln and 'ps -eo' not in ln]


def _assert_no_ray_left(temp_dir, what, wait_s=20):
    """Every process naming the Ray session dir has exited (within ``wait_s``)."""
    deadline = time.time() + wait_s
    while _ray_pids(temp_dir) and time.time() < deadline:
        time.sleep(0.5)
    left = _ray_pids(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, f'{what} left Ray processes behind: {left}'


@pytest.fixture(scope='module')
def fleet_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('fleet')
    info = synthetic.generate_dataset(str(root / 'data'), drives=2, frames=FRAMES, seed=3,
                                      width=W, height=H, test_drives=1)
    drives = tuple(os.path.join(info.raw_path, info.date, d) for d in info.drives)
    good = convert_drive(drives[0], str(root / 'good'), progress=False)['path']
    full = convert_drive(drives[1], str(root / 'full'), progress=False)['path']
    cut = root / 'cut'   # power loss: no metadata.yaml, the MCAP stops in the middle
    cut.mkdir()
    data = next(Path(full).glob('*.mcap')).read_bytes()
    (cut / 'cut.mcap').write_bytes(data[:len(data) * 55 // 100])
    corrupt = root / 'corrupt'
    shutil.copytree(good, corrupt)
    next(corrupt.glob('*.mcap')).write_bytes(os.urandom(5000))
    return dict(root=root, drives=drives, good=good, full=full, cut=str(cut),
                corrupt=str(corrupt), bags=[good, str(cut), str(corrupt)])


@pytest.fixture(scope='module')
def cluster(fleet_data):
    temp_dir = tempfile.mkdtemp(prefix='rt', dir='/tmp')
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             runtime_env={'env_vars': {'PYTHONPATH': TEST_DIR, 'OMP_NUM_THREADS': '1'}})
    yield temp_dir
    ray.shutdown()
    _assert_no_ray_left(temp_dir, 'the module cluster')


def _run(fleet_data, out, **kw):
    return run_fleet(fleet_data['bags'], str(out), OracleFactory(fleet_data['drives']),
                     'oracle', workers=2, ray_address='auto', shard_frames=3, **kw)


def _frames(out):
    t = pq.read_table(os.path.join(out, 'frames.parquet')).to_pylist()
    return {(os.path.basename(r['bag']), r['index']): r for r in t}


@pytest.fixture(scope='module')
def reference(fleet_data, cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp('ref')
    return out, _run(fleet_data, out)


def _same(a, b):
    """Equal dicts of floats/ints/bools, NaN equal to NaN (no tolerance)."""
    assert a.keys() == b.keys()
    for k in a:
        both_nan = isinstance(a[k], float) and np.isnan(a[k]) and np.isnan(b[k])
        assert both_nan or a[k] == b[k], (k, a[k], b[k])


def test_per_frame_metrics_equal_the_sequential_evaluator_bit_for_bit(fleet_data, reference):
    out, fleet = reference
    rows = _frames(out)
    est = OracleFactory(fleet_data['drives'])()
    for bag in (fleet_data['good'], fleet_data['cut']):
        frames = []
        result = evaluate_bag(bag, None, estimator=est, n_panels=0, frames_out=frames)
        # the uncertainty block from the shards' pooled pixels is the sequential one, exactly:
        # the same float32 pixels (same per-frame seeded subset) in the same frame order go
        # through the same function, so not even round-off differs
        fleet_u = fleet['per_bag'][bag]['uncertainty']
        assert fleet_u['available'] and fleet_u['n'] > 0
        _same(fleet_u, result['uncertainty'])
        ok = [f for f in frames if f.status == 'ok']
        assert ok
        for f in ok:
            row = rows[(os.path.basename(bag), f.index)]
            assert row['status'] == 'ok'
            for k in METRIC_NAMES:
                assert row[k] == f.row[k], (bag, f.index, k)   # exact, not approximate
    assert fleet['overall']['used'] == sum(1 for r in rows.values() if r['status'] == 'ok')
    u = fleet['overall']['uncertainty']
    assert u['n'] == sum(fleet['per_bag'][b]['uncertainty']['n']
                         for b in (fleet_data['good'], fleet_data['cut']))
    # sigma = 5 % of depth is the depth baseline itself: no margin; the oracle beats both
    assert u['aurg_margin_abs_m'] == pytest.approx(0.0, abs=1e-12)
    assert u['oracle_ause_abs_m'] == 0.0 and u['ause_abs_m'] > 0.0
    assert fleet['overall']['calibration_error'] == u['calibration_error']


def test_a_shard_without_its_pixel_file_is_rerun(fleet_data, cluster, reference, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(reference[0], out)
    pixels = sorted((out / 'shards').glob('*.pixels.parquet'))
    pixels[0].unlink()
    fleet = _run(fleet_data, out, write_report=False)
    assert fleet['run']['shards_run'] == 1
    assert fleet['run']['shards_reused'] == fleet['run']['shards_total'] - 1
    _same(fleet['overall']['uncertainty'], reference[1]['overall']['uncertainty'])


def test_cut_off_bag_is_evaluated_to_the_cut_and_the_corrupt_one_is_listed(fleet_data,
                                                                           reference):
    out, fleet = reference
    rows = _frames(out)
    cut_rows = [r for (b, _), r in rows.items() if b == 'cut' and r['status'] == 'ok']
    assert 0 < len(cut_rows) < FRAMES
    # the frames before the cut score exactly as in the uncut recording
    est = OracleFactory(fleet_data['drives'])()
    frames = []
    evaluate_bag(fleet_data['full'], None, estimator=est, n_panels=0, frames_out=frames)
    full = {f.index: f.row for f in frames if f.status == 'ok'}
    for r in cut_rows:
        assert all(r[k] == full[r['index']][k] for k in METRIC_NAMES)
    assert any('cut off' in w and 'last good stamp' in w for w in fleet['run']['warnings'])
    assert list(fleet['failed_bags']) == [fleet_data['corrupt']]
    assert 'corrupt' in fleet['failed_bags'][fleet_data['corrupt']]
    html = open(os.path.join(out, 'report.html')).read()
    assert 'corrupt' in html and 'Per bag' in html


def test_exact_depth_has_near_zero_tae_and_known_flicker_is_measured(fleet_data, cluster,
                                                                     reference, tmp_path):
    _, exact = reference
    flick = run_fleet([fleet_data['good']], str(tmp_path), OracleFactory(
        fleet_data['drives'], flicker=0.05), 'flicker', workers=2, ray_address='auto',
        shard_frames=FRAMES)
    tae0 = exact['per_bag'][fleet_data['good']]['tae']
    bag = flick['per_bag'][fleet_data['good']]
    # exact depth: only the 1/256 m PNG quantisation and missed occlusions remain
    assert tae0 < 2e-3
    # every pair has one frame scaled by 1.05: the scale jump is log(1.05) = 0.0488
    assert bag['flicker'] == pytest.approx(np.log(1.05), rel=0.02)
    assert 0.04 < bag['tae'] < 0.06 and bag['tae'] > 20 * tae0
    assert bag['tae_pairs'] == FRAMES - 1
    # the same bag in shards of 3 frames: the pairs across shard boundaries are scored too
    split = run_fleet([fleet_data['good']], str(tmp_path / 'split'), OracleFactory(
        fleet_data['drives'], flicker=0.05), 'flicker', workers=2, ray_address='auto',
        shard_frames=3, write_report=False)
    assert split['run']['shards_total'] == 3
    one, three = _frames(str(tmp_path)), _frames(str(tmp_path / 'split'))
    assert one.keys() == three.keys()
    for key, r in one.items():
        for k in ('tae', 'flicker'):
            assert r[k] == three[key][k] or (np.isnan(r[k]) and np.isnan(three[key][k])), key
    assert split['per_bag'][fleet_data['good']]['tae_pairs'] == FRAMES - 1


def test_a_shard_that_crashes_is_listed_and_the_others_go_on(fleet_data, cluster, tmp_path):
    fleet = run_fleet([fleet_data['good']], str(tmp_path), OracleFactory(
        fleet_data['drives'], fail_frame=5), 'crash', workers=2, ray_address='auto',
        shard_frames=4)
    assert 'simulated backend crash on frame 5' in fleet['failed_bags'][fleet_data['good']]
    rows = _frames(str(tmp_path))
    assert sorted(i for (_, i), r in rows.items() if r['status'] == 'ok') == [0, 1, 2, 3]


def test_killing_a_worker_mid_run_still_completes_with_the_same_results(fleet_data, cluster,
                                                                        reference, tmp_path):
    killed = []

    def kill_first(summary):
        if not killed:
            killed.append(summary['worker_pid'])
            os.kill(summary['worker_pid'], signal.SIGKILL)

    fleet = _run(fleet_data, tmp_path, on_shard_done=kill_first)
    assert killed
    ref_rows, rows = _frames(reference[0]), _frames(tmp_path)
    assert rows.keys() == ref_rows.keys()
    for key, r in rows.items():
        assert all(r[k] == ref_rows[key][k] or (np.isnan(r[k]) and np.isnan(ref_rows[key][k]))
                   for k in METRIC_NAMES + ('tae', 'flicker'))
    assert fleet['run']['shards_run'] == fleet['run']['shards_total']


DRIVER = """
import sys
sys.path.insert(0, {test_dir!r})
from fixtures.fleet_oracle import OracleFactory
from urcdc_depth_ros.evaluation.fleet import run_fleet
run_fleet({bags!r}, {out!r}, OracleFactory({drives!r}), 'oracle', workers=2, shard_frames=3,
          ray_address={address!r}, ray_temp_dir={temp!r},
          runtime_env={{'env_vars': {{'PYTHONPATH': {test_dir!r}}}}})
"""


@pytest.mark.slow
def test_interrupted_driver_resumes_to_identical_merged_results(fleet_data, cluster,
                                                                reference, tmp_path):
    # a second driver joins the module's cluster (its actors die with it), is interrupted
    # after the first finished shard; the rerun starts and stops its own local cluster (the
    # command's default) and resumes from the shards on disk
    out = str(tmp_path / 'out')
    temp = tempfile.mkdtemp(prefix='rd', dir='/tmp')
    fmt = dict(test_dir=TEST_DIR, bags=fleet_data['bags'], out=out,
               drives=fleet_data['drives'], temp=temp)
    code = DRIVER.format(address=ray.get_runtime_context().gcs_address, **fmt)
    env = dict(os.environ, PYTHONPATH=TEST_DIR)
    proc = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shards = Path(out) / 'shards'

    def finished():  # a shard's rows file is written last
        return [p for p in shards.glob('*.parquet') if not p.name.endswith('.pixels.parquet')]
    deadline = time.time() + 90
    while time.time() < deadline and len(finished()) < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) != 0
    done_first = len(finished())
    assert done_first >= 1
    proc = subprocess.run([sys.executable, '-c', DRIVER.format(address=None, **fmt)], env=env,
                          capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    _assert_no_ray_left(temp, "the command's local cluster")
    with open(os.path.join(out, 'fleet.json')) as f:
        assert json.load(f)['run']['shards_reused'] >= done_first
    ref_rows, rows = _frames(str(reference[0])), _frames(out)
    assert rows.keys() == ref_rows.keys()
    for key, r in rows.items():
        assert all(r[k] == ref_rows[key][k] for k in METRIC_NAMES if r['status'] == 'ok')
