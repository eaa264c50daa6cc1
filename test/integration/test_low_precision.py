"""Precision that travels with the model: FP16 / INT8 QDQ ONNX, OpenVINO, torch bfloat16.

Random-weight nano07 at 64x192 (test/fixtures/models.py). Deviation bounds are checked against
the baseline a sceptic would name: a constant predictor (the FP32 mean depth everywhere).
"""
import json
import logging

import cv2
import numpy as np
import onnx
import pytest
from fixtures.models import make_onnx_model

from urcdc_depth_ros.config import EstimatorConfig
from urcdc_depth_ros.errors import BackendError, ConfigError
from urcdc_depth_ros.estimator import DepthEstimator
from urcdc_depth_ros.inference import create_backend
from urcdc_depth_ros.inference.selection import backend_options, choose_backend
from urcdc_depth_ros.inference.tensorrt_build import FP32_OP_TYPES, read_onnx_meta
from urcdc_training import onnx_precision as op
from urcdc_training.export import main as export_main

K = np.array([[721.5, 0.0, 150.0], [0.0, 721.5, 50.0], [0.0, 0.0, 1.0]])


def _image(seed=0, h=90, w=300):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def nano(tmp_path_factory):
    return make_onnx_model(tmp_path_factory.mktemp('models'))


@pytest.fixture(scope='module')
def calib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('calib')
    for i in range(10):
        cv2.imwrite(str(d / f'{i:03d}.png'), _image(100 + i))
    return d


@pytest.fixture(scope='module')
def low_models(nano, calib_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp('low')
    meta = read_onnx_meta(nano[0])
    fp16 = op.write_precision(nano[0], str(d / 'fp16.onnx'), 'fp16')
    frames = op.calibration_inputs(op.list_calibration_images(calib_dir), meta)
    int8 = op.write_precision(nano[0], str(d / 'int8.onnx'), 'int8', frames)
    return {'fp16': fp16, 'int8': int8}


def _inputs(meta, seeds=(0, 1)):
    from urcdc_depth_ros.preprocessing import preprocess
    return [preprocess(_image(s), K, meta, 'rgb8')[0] for s in seeds]


def _rel_dev(a, b):
    return float(np.mean(np.abs(a - b) / b))


def _props(path):
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def test_fp16_onnx_keeps_fp32_io_norms_and_heads_and_matches_fp32(nano, low_models):
    model = onnx.load(low_models['fp16'])
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in list(model.graph.input) + list(model.graph.output))
    kept = json.loads(_props(low_models['fp16'])[op.FLOAT_NODES_KEY])
    nodes = {n.name: n for n in model.graph.node}
    assert {nodes[k].op_type for k in kept} >= {'LayerNormalization', 'Softmax'}
    assert any('/disp_head' in k for k in kept) and any('/uncer_head' in k for k in kept)
    weighted = [k for k in kept if nodes[k].op_type in ('Conv',) + FP32_OP_TYPES]
    assert len(weighted) > 10
    for name in weighted:  # norms and head convs read float32 weights
        assert all(inits.get(i, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT
                   for i in nodes[name].input), name
    matmul_weights = [n.input[1] for n in model.graph.node
                      if n.op_type == 'MatMul' and n.input[1] in inits]
    assert matmul_weights and all(inits[w] == onnx.TensorProto.FLOAT16 for w in matmul_weights)
    fp32 = create_backend('onnxruntime', nano[0], providers='cpu')
    half = create_backend('onnxruntime', low_models['fp16'], providers='cpu')
    assert half.meta.precision == 'fp16' and fp32.meta.precision == 'fp32'
    for x in _inputs(fp32.meta):
        a, b = half.infer(x)['depth'], fp32.infer(x)['depth']
        assert _rel_dev(a, b) <= 0.005
        assert _rel_dev(a, b) < 0.05 * _rel_dev(np.full_like(b, b.mean()), b)


def test_int8_onnx_is_per_channel_qdq_with_float_norms(nano, low_models):
    model = onnx.load(low_models['int8'])
    props = _props(low_models['int8'])
    assert json.loads(props['urcdc_meta'])['precision'] == 'int8'
    kept = set(json.loads(props[op.FLOAT_NODES_KEY]))
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == 'Conv' and n.name not in kept]
    assert convs and all(producers[n.input[1]].op_type == 'DequantizeLinear' for n in convs)
    heads = [n for n in model.graph.node if n.op_type == 'Conv' and n.name in kept]
    assert len(heads) == 2 and all(n.input[1] in inits for n in heads)  # float weights
    dq = producers[convs[0].input[1]]
    scale = onnx.numpy_helper.to_array(inits[dq.input[1]])
    assert scale.ndim == 1 and scale.size > 1  # one scale per output channel
    for n in model.graph.node:
        if n.op_type in FP32_OP_TYPES:
            assert n.name in kept
            # scale/bias are not quantized (a norm's data input may be a DequantizeLinear
            # output where the tensor also feeds a quantized MatMul; the norm computes in float)
            assert all(producers.get(i) is None or producers[i].op_type != 'DequantizeLinear'
                       for i in n.input[1:] if i), n.name


def test_int8_runs_in_onnxruntime_and_openvino_close_to_fp32(nano, low_models):
    fp32 = create_backend('onnxruntime', nano[0], providers='cpu')
    backends = [create_backend('onnxruntime', low_models['int8'], providers='cpu')]
    if _has_openvino():
        backends.append(create_backend('openvino', low_models['int8'], precision='f32'))
    for x in _inputs(fp32.meta):
        ref = fp32.infer(x)['depth']
        constant = _rel_dev(np.full_like(ref, ref.mean()), ref)
        for b in backends:
            dev = _rel_dev(b.infer(x)['depth'], ref)
            assert dev < 0.5 * constant, (b.name, dev, constant)


def _export_int8(tmp_path, calib):
    return export_main(['onnx', '--random-weights', '--variant', 'nano07', '--height', '64',
                        '--width', '192', '--precision', 'int8', '--calib-images', str(calib),
                        '--out', str(tmp_path / 'q.onnx')])


@pytest.mark.parametrize('problem, message', [
    ('few', 'too few'), ('unreadable', 'unreadable'), ('size', 'one camera at one size'),
    ('empty', 'no calibration images'),
])
def test_bad_calibration_frames_exit_2_naming_the_problem(tmp_path, caplog, problem, message):
    calib = tmp_path / 'calib'
    calib.mkdir()
    count = 4 if problem == 'few' else (0 if problem == 'empty' else 9)
    for i in range(count):
        cv2.imwrite(str(calib / f'{i}.png'), _image(i))
    if problem == 'unreadable':
        (calib / '5.png').write_bytes(b'not a png')
    if problem == 'size':
        cv2.imwrite(str(calib / '9.png'), _image(9, h=100, w=320))
    with caplog.at_level(logging.ERROR):
        assert _export_int8(tmp_path, calib) == 2
    assert message in caplog.text
    assert not (tmp_path / 'q.onnx').exists()


def test_int8_without_a_calibration_source_and_unknown_precision_exit_2(tmp_path, caplog):
    rc = export_main(['onnx', '--random-weights', '--variant', 'nano07', '--precision', 'int8',
                      '--out', str(tmp_path / 'q.onnx')])
    assert rc == 2 and '--calib-images DIR' in caplog.text
    with pytest.raises(SystemExit) as exc:
        export_main(['onnx', '--random-weights', '--variant', 'nano07', '--precision', 'int4',
                     '--out', str(tmp_path / 'q.onnx')])
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- OpenVINO
def _has_openvino():
    try:
        import openvino  # noqa: F401
        return True
    except ImportError:
        return False


needs_openvino = pytest.mark.skipif(not _has_openvino(), reason='needs requirements/openvino.txt')


@needs_openvino
def test_openvino_fp32_matches_onnxruntime_within_a_millimetre(nano):
    cfg = EstimatorConfig(output_resolution='model')
    with DepthEstimator.from_model(nano[0], 'openvino', cfg, precision='f32', threads=2,
                                   hint='latency') as ov_est, \
            DepthEstimator.from_model(nano[0], 'onnxruntime', cfg, providers='cpu') as ort_est:
        assert ov_est.meta == ort_est.meta and ov_est.backend.precision == 'f32'
        for seed in (0, 1):
            a, b = ov_est.estimate(_image(seed), K), ort_est.estimate(_image(seed), K)
            assert np.array_equal(np.isnan(a.depth_m), np.isnan(b.depth_m))
            assert float(np.nanmax(np.abs(a.depth_m - b.depth_m))) <= 1e-3


@needs_openvino
def test_openvino_bf16_and_fp16_onnx_stay_within_the_documented_tolerance(nano, low_models):
    # docs/benchmarks.md: bf16 (and the FP16 graph) within 1 % mean relative depth of FP32
    fp32 = create_backend('onnxruntime', nano[0], providers='cpu')
    for path, precision in ((nano[0], 'bf16'), (low_models['fp16'], 'f32')):
        b = create_backend('openvino', path, precision=precision)
        for x in _inputs(fp32.meta):
            ref = fp32.infer(x)['depth']
            assert _rel_dev(b.infer(x)['depth'], ref) <= 0.01


@needs_openvino
def test_openvino_auto_precision_follows_the_cpu_and_bad_options_fail(nano):
    from urcdc_depth_ros.inference.openvino_backend import resolve_precision
    assert resolve_precision('auto', ['FP32', 'BF16', 'INT8']) == 'bf16'
    assert resolve_precision('auto', ['FP32', 'INT8']) == 'f32'
    import openvino
    caps = openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    b = create_backend('openvino', nano[0])
    assert b.precision == ('bf16' if 'BF16' in caps else 'f32')
    with pytest.raises(ConfigError, match='not one of'):
        create_backend('openvino', nano[0], precision='fp16')
    with pytest.raises(ConfigError, match='hint'):
        create_backend('openvino', nano[0], hint='fastest')


@needs_openvino
def test_an_openvino_too_old_for_our_files_names_the_version_needed(nano, monkeypatch):
    import openvino
    monkeypatch.setattr(openvino, '__version__', '2023.3.0-13775-ceeafaf64f3-releases/2023/3')
    with pytest.raises(BackendError, match='2024.0 or newer'):
        create_backend('openvino', nano[0])


# ----------------------------------------------------------------------------- torch bf16
def test_torch_bfloat16_keeps_the_heads_in_float32_and_is_close(nano):
    import torch
    fp32 = create_backend('torch', nano[1], device='cpu')
    bf16 = create_backend('torch', nano[1], device='cpu', torch_dtype='bfloat16')
    seen = []
    hook = bf16._net.disp_head1.conv1.register_forward_hook(
        lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    keys = set(fp32._net.state_dict())
    for x in _inputs(fp32.meta):
        a, b = bf16.infer(x)['depth'], fp32.infer(x)['depth']
        assert a.dtype == np.float32 and _rel_dev(a, b) <= 0.01
        assert 0 < _rel_dev(a, b)  # bfloat16 really ran
    hook.remove()
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)
    assert set(bf16._net.state_dict()) == keys and bf16.precision == 'bf16'
    with pytest.raises(ConfigError, match='torch_dtype'):
        create_backend('torch', nano[1], device='cpu', torch_dtype='float16')


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize('path, installed, gpus, machine, expected', [
    ('m.pt', (), 0, 'x86_64', 'torch'),
    ('m.engine', (), 0, 'x86_64', 'tensorrt'),
    ('m.onnx', ('tensorrt', 'pycuda', 'openvino'), 1, 'aarch64', 'tensorrt'),
    ('m.onnx', ('tensorrt', 'pycuda', 'openvino'), 0, 'x86_64', 'openvino'),
    ('m.onnx', ('openvino',), 0, 'aarch64', 'onnxruntime'),
    ('m.onnx', (), 0, 'x86_64', 'onnxruntime'),
])
def test_backend_auto_is_decided_by_the_file_and_the_installation(path, installed, gpus,
                                                                  machine, expected):
    name, why = choose_backend(path, installed=lambda m: m in installed,
                               cuda_devices=lambda: gpus, machine=machine)
    assert name == expected and why


def test_backend_auto_logs_its_choice_and_generic_options_map_per_backend(nano, caplog):
    with caplog.at_level(logging.INFO):
        b = create_backend('auto', nano[1], device='cpu')
    assert b.name == 'torch' and 'backend auto -> torch' in caplog.text
    assert backend_options('openvino', 2, 'bf16') == {'threads': 2, 'precision': 'bf16'}
    assert backend_options('onnxruntime', 3, 'auto') == {'intra_op_threads': 3}
    assert backend_options('torch', 0, 'bfloat16') == {'torch_dtype': 'bfloat16'}
    with pytest.raises(ConfigError, match='takes no precision'):
        backend_options('onnxruntime', 0, 'fp16')
    with pytest.raises(ConfigError, match='cannot tell'):
        choose_backend('model.bin')
    with pytest.raises(BackendError):
        create_backend('torch', nano[0])  # an ONNX file is not a checkpoint
