"""Engine cache: keys, sidecars, build-when-missing/stale, refusal of foreign engines (no GPU)."""
import json
import re
import logging
import os

import pytest

from urcdc_depth_ros.errors import BackendError
from urcdc_depth_ros.inference.engine_cache import (DeviceInfo, EngineKey,
                                                    check_engine_compatible, ensure_engine,
                                                    read_sidecar, sidecar_path, write_sidecar)
from urcdc_depth_ros.inference.tensorrt_build import plan_precision, trtexec_command

ORIN = DeviceInfo('Orin', '8.7', '10.3.0')
RTX = DeviceInfo('NVIDIA GeForce RTX 4090', '8.9', '10.3.0')


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'not really onnx, but hashed like one')
    return str(path)


class CountingBuilder:
    def __init__(self):
        self.calls = 0

    def __call__(self, onnx_path, engine_path):
        self.calls += 1
        with open(engine_path, 'wb') as f:
            f.write(b'engine-bytes-%d' % self.calls)
        return {'shapes': {'image': [1, 3, 64, 192]}, 'meta': {'variant': 'nano07'}}


@pytest.mark.parametrize('field,value', [('gpu_name', 'Xavier'), ('compute_capability', '7.2'),
                                         ('tensorrt_version', '10.0.1'), ('onnx_sha256', 'ff'),
                                         ('precision', 'int8'), ('dla_core', 0)])
def test_every_key_field_changes_the_digest(field, value):
    base = EngineKey.for_device(ORIN, 'ab' * 32, 'fp16')
    changed = EngineKey(**{**base.to_dict(), field: value})
    assert changed.digest() != base.digest()
    assert base.filename('model').startswith('model.fp16.') and base.filename('m').endswith(
        '.engine')


def test_unknown_precision_is_refused():
    with pytest.raises(BackendError, match='precision'):
        EngineKey.for_device(ORIN, 'x', 'fp8')


def test_first_start_builds_then_reuses_the_cached_engine(onnx_file, tmp_path, caplog):
    build = CountingBuilder()
    with caplog.at_level(logging.INFO):
        path1, side1 = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path / 'cache')
    assert build.calls == 1 and os.path.isfile(path1)
    assert 'no cached engine' in caplog.text and 'built TensorRT engine' in caplog.text
    assert side1['gpu_name'] == 'Orin' and side1['build_seconds'] >= 0
    assert side1['shapes']['image'] == [1, 3, 64, 192]
    path2, _ = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path / 'cache')
    assert path2 == path1 and build.calls == 1


def test_a_changed_onnx_or_precision_gets_its_own_engine(onnx_file, tmp_path):
    build = CountingBuilder()
    p16, _ = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    p32, _ = ensure_engine(onnx_file, 'fp32', ORIN, build, tmp_path)
    with open(onnx_file, 'ab') as f:
        f.write(b'retrained')
    p16b, _ = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    assert len({p16, p32, p16b}) == 3 and build.calls == 3


def test_a_stale_sidecar_triggers_a_rebuild_and_says_why(onnx_file, tmp_path, caplog):
    build = CountingBuilder()
    path, side = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    side['tensorrt_version'] = '8.6.1'
    with open(sidecar_path(path), 'w') as f:
        json.dump(side, f)
    with caplog.at_level(logging.WARNING):
        path2, side2 = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    assert build.calls == 2 and path2 == path
    assert "tensorrt_version: engine has '8.6.1', here '10.3.0'" in caplog.text
    assert side2['tensorrt_version'] == '10.3.0'


def test_a_missing_or_corrupt_sidecar_triggers_a_rebuild(onnx_file, tmp_path):
    build = CountingBuilder()
    path, _ = ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    with open(sidecar_path(path), 'w') as f:
        f.write('{truncated')
    ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    os.remove(sidecar_path(path))
    ensure_engine(onnx_file, 'fp16', ORIN, build, tmp_path)
    assert build.calls == 3


def test_a_failed_build_leaves_no_engine_behind(onnx_file, tmp_path):
    def failing(onnx_path, engine_path):
        raise BackendError('parser said no')

    with pytest.raises(BackendError, match='parser said no'):
        ensure_engine(onnx_file, 'fp16', ORIN, failing, tmp_path)
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.engine')]


def test_an_engine_from_another_gpu_is_refused_with_instructions(tmp_path):
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'x')
    write_sidecar(engine, EngineKey.for_device(RTX, 'ab', 'fp16'))
    with pytest.raises(BackendError, match=r"gpu_name: engine has 'NVIDIA GeForce RTX 4090'.*"
                                           r'urcdc-export tensorrt'):
        check_engine_compatible(engine, ORIN)
    assert check_engine_compatible(engine, RTX)['precision'] == 'fp16'


def test_an_engine_without_sidecar_is_refused(tmp_path):
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'x')
    assert read_sidecar(engine) is None
    with pytest.raises(BackendError, match='no sidecar'):
        check_engine_compatible(engine, ORIN)


def test_missing_onnx_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match='does not exist'):
        ensure_engine(tmp_path / 'nope.onnx', 'fp16', ORIN, CountingBuilder(), tmp_path)


def test_trtexec_command_mirrors_the_builder_options():
    weak = trtexec_command('m.onnx', 'm.engine', 'fp16', False, 1024, 'tc.bin', 0,
                           ['/ln/LayerNormalization', '/attn/Softmax'])
    for part in ('trtexec', '--onnx=m.onnx', '--saveEngine=m.engine',
                 '--memPoolSize=workspace:1024M', '--fp16', '--precisionConstraints=obey',
                 '--layerPrecisions=/ln/LayerNormalization:fp32,/attn/Softmax:fp32',
                 '--timingCacheFile=tc.bin', '--useDLACore=0', '--allowGPUFallback'):
        assert part in weak.split(), part
    assert '--stronglyTyped' not in weak
    strong = trtexec_command('m.onnx', 'm.engine', 'int8', True, fp32_layers=['/ln/x'])
    assert '--stronglyTyped' in strong.split()
    assert not {'--fp16', '--int8'} & set(strong.split()) and 'layerPrecisions' not in strong
    on_11 = trtexec_command('m.onnx', 'm.engine', 'fp16', True, trt_major=11)
    assert '--stronglyTyped' not in on_11 and '--fp16' not in on_11


@pytest.mark.parametrize('onnx_precision, requested, major, expected', [
    ('fp32', 'auto', 10, ('fp32', True)), ('fp16', 'auto', 11, ('fp16', True)),
    ('int8', 'int8', 10, ('int8', True)), ('fp32', 'fp16', 10, ('fp16', False)),
])
def test_the_precision_plan_follows_the_graph(onnx_precision, requested, major, expected):
    assert plan_precision(onnx_precision, requested, major) == expected


@pytest.mark.parametrize('onnx_precision, requested, major, message', [
    ('fp32', 'fp16', 11, 'urcdc-export onnx --precision fp16'),
    ('fp32', 'int8', 10, '--precision int8 --calib-images DIR'),
    ('fp16', 'fp32', 10, 'the ONNX graph is fp16'),
    ('fp32', 'bf16', 10, 'is not one of'),
])
def test_the_precision_plan_refuses_what_the_graph_cannot_give(onnx_precision, requested, major,
                                                               message):
    with pytest.raises(BackendError, match=re.escape(message)):
        plan_precision(onnx_precision, requested, major)


def test_tensorrt_backend_without_tensorrt_says_how_to_install_it(tmp_path):
    from urcdc_depth_ros.inference import create_backend
    try:
        import pycuda.driver  # noqa: F401
        import tensorrt  # noqa: F401
        pytest.skip('TensorRT is installed; the backend is exercised by the tensorrt tests')
    except ImportError:
        pass
    with pytest.raises(BackendError, match='pip install tensorrt pycuda'):
        create_backend('tensorrt', tmp_path / 'model.engine')
