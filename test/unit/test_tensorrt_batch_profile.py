"""TensorRT max batch without TensorRT: profile shapes, cache key, sidecar, CLI, node option.

The engine build itself needs a GPU (``test/integration/test_tensorrt_backend.py``); here the
pure parts that decide what is built: the min/opt/max profile for ``--max-batch N``, the cache
key and sidecar that record it, ``urcdc-export tensorrt`` argument checks and its printed
``trtexec`` command, and the node's automatic max batch for a rig.
"""
import os
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from urcdc_depth_ros.errors import BackendError, ConfigError
from urcdc_depth_ros.inference import backend_options
from urcdc_depth_ros.inference.engine_cache import (DeviceInfo, EngineKey, ensure_engine,
                                                    read_sidecar, write_sidecar)
from urcdc_depth_ros.inference.tensorrt_build import (auto_max_batch, onnx_input_shape,
                                                      profile_shapes, trtexec_command)
from urcdc_training.export import main as export_main

ORIN = DeviceInfo('Orin', '8.7', '10.3.0')
H, W = 64, 192


def write_onnx(path, batch):
    """A two-output graph with input ``image`` (batch, 3, H, W); ``batch`` int or a name."""
    image = helper.make_tensor_value_info('image', TensorProto.FLOAT, [batch, 3, H, W])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, 1, H, W])
            for n in ('depth', 'uncertainty')]
    nodes = [helper.make_node('ReduceMean', ['image'], [n], axes=[1], keepdims=1)
             for n in ('depth', 'uncertainty')]
    model = helper.make_model(helper.make_graph(nodes, 'g', [image], outs),
                              opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return os.fspath(path)


@pytest.fixture
def static_onnx(tmp_path):
    return write_onnx(tmp_path / 'static.onnx', 1)


@pytest.fixture
def dynamic_onnx(tmp_path):
    return write_onnx(tmp_path / 'dynamic.onnx', 'batch')


# ----------------------------------------------------------------------------- profile
@pytest.mark.parametrize('batch_dim', [-1, 0, None])
def test_a_symbolic_batch_gets_min_1_opt_n_max_n(batch_dim):
    low, opt, high = profile_shapes((batch_dim, 3, H, W), 4)
    assert low == (1, 3, H, W) and opt == (4, 3, H, W) and high == (4, 3, H, W)
    assert profile_shapes((batch_dim, 3, H, W), 1) == ((1, 3, H, W),) * 3


def test_a_static_batch_needs_no_profile_and_refuses_another_max_batch():
    assert profile_shapes((1, 3, H, W), 1) is None
    assert profile_shapes((2, 3, H, W), 2) is None
    with pytest.raises(BackendError, match='urcdc-export onnx --dynamic-batch'):
        profile_shapes((1, 3, H, W), 4)


@pytest.mark.parametrize('shape, max_batch, message', [
    ((-1, 3, H, W), 0, 'pass --max-batch 1 or more'),
    ((-1, 3, -1, W), 2, 'fixed H, W'),
    ((3, H, W), 1, 'is not (N, 3, H, W)'),
])
def test_bad_profile_requests_name_the_fix(shape, max_batch, message):
    with pytest.raises(BackendError, match=message.replace('(', r'\(').replace(')', r'\)')):
        profile_shapes(shape, max_batch)


def test_the_onnx_input_shape_marks_the_symbolic_batch(static_onnx, dynamic_onnx):
    assert onnx_input_shape(static_onnx) == (1, 3, H, W)
    assert onnx_input_shape(dynamic_onnx) == (-1, 3, H, W)


def test_trtexec_gets_the_profile_as_min_opt_max_shapes():
    cmd = trtexec_command('m.onnx', 'm.engine', 'fp16', True,
                          profile=profile_shapes((-1, 3, H, W), 3)).split()
    assert f'--minShapes=image:1x3x{H}x{W}' in cmd
    assert f'--optShapes=image:3x3x{H}x{W}' in cmd and f'--maxShapes=image:3x3x{H}x{W}' in cmd
    assert not any('Shapes' in a for a in trtexec_command('m.onnx', 'm.engine').split())


# ----------------------------------------------------------------------------- cache
class Builder:
    def __init__(self):
        self.calls = 0

    def __call__(self, onnx_path, engine_path):
        self.calls += 1
        with open(engine_path, 'wb') as f:
            f.write(b'engine %d' % self.calls)
        return {'profile': [[1, 3, H, W], [4, 3, H, W], [4, 3, H, W]]}


def test_the_cache_key_changes_with_max_batch():
    one = EngineKey.for_device(ORIN, 'ab' * 32, 'fp16')
    four = EngineKey.for_device(ORIN, 'ab' * 32, 'fp16', max_batch=4)
    assert one.max_batch == 1 and four.max_batch == 4
    assert one.digest() != four.digest() and one.filename('m') != four.filename('m')
    with pytest.raises(BackendError, match='max batch'):
        EngineKey.for_device(ORIN, 'ab' * 32, 'fp16', max_batch=0)


def test_the_sidecar_round_trips_max_batch_and_profile(tmp_path):
    key = EngineKey.for_device(ORIN, 'cd' * 32, 'fp32', max_batch=4)
    engine = tmp_path / 'm.engine'
    written = write_sidecar(engine, key, profile=[[1, 3, H, W], [4, 3, H, W], [4, 3, H, W]])
    back = read_sidecar(engine)
    assert back == written and back['max_batch'] == 4 and back['profile'][2][0] == 4


def test_each_max_batch_gets_its_own_cached_engine(dynamic_onnx, tmp_path):
    build = Builder()
    cache = tmp_path / 'cache'
    path1, side1 = ensure_engine(dynamic_onnx, 'fp32', ORIN, build, cache)
    path4, side4 = ensure_engine(dynamic_onnx, 'fp32', ORIN, build, cache, max_batch=4)
    assert build.calls == 2 and path1 != path4
    assert side1['max_batch'] == 1 and side4['max_batch'] == 4
    again, _ = ensure_engine(dynamic_onnx, 'fp32', ORIN, build, cache, max_batch=4)
    assert again == path4 and build.calls == 2


def test_a_sidecar_with_another_max_batch_is_stale(dynamic_onnx, tmp_path):
    build = Builder()
    path, side = ensure_engine(dynamic_onnx, 'fp32', ORIN, build, tmp_path, max_batch=4)
    write_sidecar(path, EngineKey.for_device(ORIN, side['onnx_sha256'], 'fp32', max_batch=2))
    ensure_engine(dynamic_onnx, 'fp32', ORIN, build, tmp_path, max_batch=4)
    assert build.calls == 2 and read_sidecar(path)['max_batch'] == 4


# ----------------------------------------------------------------------------- CLI
def test_export_prints_the_profile_for_a_dynamic_batch_onnx(dynamic_onnx, capsys):
    assert export_main(['tensorrt', '--onnx', dynamic_onnx, '--max-batch', '4',
                        '--print-only']) == 0
    out = capsys.readouterr().out.split()
    assert f'--minShapes=image:1x3x{H}x{W}' in out and f'--maxShapes=image:4x3x{H}x{W}' in out


def test_export_refuses_max_batch_on_a_static_onnx_and_names_the_fix(static_onnx, caplog):
    assert export_main(['tensorrt', '--onnx', static_onnx, '--max-batch', '4',
                        '--print-only']) == 2
    assert 'urcdc-export onnx --dynamic-batch' in caplog.text
    assert export_main(['tensorrt', '--onnx', static_onnx, '--print-only']) == 0


@pytest.mark.parametrize('value', ['0', '-2', 'two'])
def test_export_rejects_a_max_batch_below_1(static_onnx, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(['tensorrt', '--onnx', static_onnx, '--max-batch', value, '--print-only'])
    assert exit_info.value.code == 2 and 'is not an integer >= 1' in capsys.readouterr().err


def test_export_tensorrt_imports_no_torch(dynamic_onnx):
    code = ('import sys; from urcdc_training.export import main; '
            f"rc = main(['tensorrt', '--onnx', {dynamic_onnx!r}, '--max-batch', '2', "
            "'--print-only']); assert rc == 0, rc; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '--optShapes=image:2x3x' in proc.stdout


# ----------------------------------------------------------------------------- node option
def test_a_rig_gets_one_call_per_batch_only_from_a_dynamic_batch_onnx(static_onnx,
                                                                      dynamic_onnx):
    assert auto_max_batch(dynamic_onnx, 3) == 3
    assert auto_max_batch(dynamic_onnx, 1) == 0  # a single camera: the backend default
    assert auto_max_batch(static_onnx, 3) == 0  # fixed batch: split into several calls
    assert auto_max_batch('model.fp16.engine', 3) == 0  # an engine keeps its own batch


def test_max_batch_is_a_tensorrt_option_only():
    assert backend_options('tensorrt', max_batch=4) == {'max_batch': 4}
    assert backend_options('tensorrt') == {}
    with pytest.raises(ConfigError, match='takes no max_batch'):
        backend_options('onnxruntime', max_batch=4)
