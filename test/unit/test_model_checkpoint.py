"""Checkpoints: round trip, official layout, clear errors, ImageNet backbone initialisation."""
from __future__ import annotations

import logging
import os
import re

import pytest
import torch

from urcdc_depth_ros.config import ModelMeta
from urcdc_depth_ros.errors import CheckpointError
from urcdc_depth_ros.model import (build_model, init_backbones, load_weights, read_checkpoint,
                                   save_checkpoint)
from urcdc_depth_ros.model.checkpoint import infer_variant


def _net(seed: int, name: str = 'nano07'):
    torch.manual_seed(seed)
    return build_model(name).eval()


def _depth(net, x):
    with torch.inference_mode():
        return net(x).depth


@pytest.fixture(scope='module')
def trained():
    net = _net(1)
    for m in net.modules():  # make BatchNorm statistics non-default so they must round-trip
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.num_batches_tracked += 7
    return net


X = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))


def test_save_then_load_gives_identical_outputs_and_meta(trained, tmp_path):
    path = tmp_path / 'sub' / 'ckpt.pth'
    meta = ModelMeta(variant='nano07', max_depth=80.0, dataset='unit-test')
    save_checkpoint(path, trained, meta, epoch=3)
    assert os.listdir(path.parent) == ['ckpt.pth']  # no temp file left behind
    raw = read_checkpoint(path)
    assert set(raw) == {'model', 'meta', 'epoch'} and raw['epoch'] == 3
    fresh = _net(2)
    assert not torch.equal(_depth(fresh, X), _depth(trained, X))
    assert load_weights(fresh, path) == meta
    assert torch.equal(_depth(fresh, X), _depth(trained, X))
    assert torch.equal(fresh.backbone.fusion1.bn.num_batches_tracked,
                       trained.backbone.fusion1.bn.num_batches_tracked)


def test_save_refuses_meta_of_another_variant(trained, tmp_path):
    with pytest.raises(CheckpointError, match='tiny07'):
        save_checkpoint(tmp_path / 'c.pth', trained, ModelMeta(variant='tiny07'))


def test_official_training_checkpoint_layout_loads_and_runs(trained, tmp_path):
    official = {'global_step': 100,
                'model': {f'module.{k}': v for k, v in trained.state_dict().items()},
                'optimizer': {'state': {}, 'param_groups': [{'lr': 2e-5, 'params': [0]}]},
                'best_eval_measures_higher_better': torch.zeros(3),
                'best_eval_measures_lower_better': torch.zeros(6),
                'best_eval_steps': [0] * 9}
    path = tmp_path / 'official.pth'
    torch.save(official, path)
    fresh = _net(3)
    assert load_weights(fresh, path) is None
    assert torch.equal(_depth(fresh, X), _depth(trained, X))


@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_bare_state_dict_loads_with_or_without_module_prefix(trained, prefix):
    fresh = _net(4)
    load_weights(fresh, {f'{prefix}{k}': v for k, v in trained.state_dict().items()})
    assert torch.equal(_depth(fresh, X), _depth(trained, X))


def test_wrong_variant_raises_naming_the_likely_variant(trained):
    with torch.device('meta'):
        tiny = build_model('tiny07')
    with pytest.raises(CheckpointError) as err:
        load_weights(tiny, trained.state_dict())
    msg = str(err.value)
    assert "'nano07'" in msg and 'tiny07' in msg and 'shape mismatches' in msg


def test_missing_key_raises_and_nothing_is_loaded(trained):
    sd = dict(trained.state_dict())
    del sd['crf0.norm_crf.weight']
    fresh = _net(5)
    before = _depth(fresh, X)
    with pytest.raises(CheckpointError, match='crf0.norm_crf.weight'):
        load_weights(fresh, sd)
    assert torch.equal(_depth(fresh, X), before)


def test_unexpected_key_raises(trained):
    sd = dict(trained.state_dict())
    sd['decoder.extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError, match='unexpected keys.*decoder.extra.weight'):
        load_weights(_net(6), sd)


def test_shape_mismatch_raises_naming_key_and_shapes(trained):
    sd = dict(trained.state_dict())
    sd['disp_head1.conv1.weight'] = torch.zeros(1, 7, 3, 3)
    with pytest.raises(CheckpointError, match=r'disp_head1.conv1.weight \(1, 7, 3, 3\)'):
        load_weights(_net(7), sd)


def test_metadata_of_another_variant_raises(trained, tmp_path):
    path = tmp_path / 'c.pth'
    torch.save({'model': trained.state_dict(), 'meta': ModelMeta(variant='tiny07').to_dict()},
               path)
    with pytest.raises(CheckpointError, match="metadata says variant 'tiny07'"):
        load_weights(_net(8), path)


def test_max_depth_from_metadata_is_adopted(trained, tmp_path, caplog):
    path = tmp_path / 'c.pth'
    torch.save({'model': trained.state_dict(),
                'meta': ModelMeta(variant='nano07', max_depth=10.0).to_dict()}, path)
    fresh = _net(9)
    with caplog.at_level(logging.WARNING):
        load_weights(fresh, path)
    assert fresh.max_depth == 10.0 and 'max_depth' in caplog.text
    assert _depth(fresh, X).max() < 10.0


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', b'PK\x03\x04garbage'])
def test_corrupt_file_raises_checkpoint_error(tmp_path, content):
    path = tmp_path / 'bad.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match='bad.pth'):
        load_weights(_net(10), path)


def test_missing_file_and_non_dict_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        read_checkpoint(tmp_path / 'nope.pth')
    torch.save(torch.zeros(3), tmp_path / 't.pth')
    with pytest.raises(CheckpointError, match='Tensor'):
        read_checkpoint(tmp_path / 't.pth')


def test_infer_variant_from_swin_width_and_window():
    for name in ('tiny07', 'base12', 'large07'):
        with torch.device('meta'):
            assert infer_variant(build_model(name).state_dict()) == name


def test_init_backbones_loads_local_imagenet_weights_and_warns_when_random(tmp_path, caplog):
    src = _net(11)
    swin_cls = {k: v for k, v in src.backbone.state_dict().items()
                if k.startswith(('patch_embed.', 'layers.'))}
    swin_cls['norm.weight'] = torch.ones(256)  # classification extras are ignored
    swin_cls['head.weight'] = torch.zeros(1000, 256)
    torch.save({'model': swin_cls}, tmp_path / 'swin.pth')
    # old torchvision files name dense-layer parts 'norm.1' instead of 'norm1'
    dense = {'features.' + re.sub(r'(denselayer\d+\.(?:norm|conv))([12])', r'\1.\2', k): v
             for k, v in src.backbone.base_model.state_dict().items()}
    assert any('.norm.1.' in k for k in dense)
    dense['classifier.weight'] = torch.zeros(1000, 64)
    torch.save(dense, tmp_path / 'dn.pth')
    dst = _net(12)
    init_backbones(dst, tmp_path / 'swin.pth', tmp_path / 'dn.pth')
    for k, v in src.backbone.state_dict().items():
        if k.startswith(('patch_embed.', 'layers.', 'base_model.')):
            assert torch.equal(dst.backbone.state_dict()[k], v), k
    with caplog.at_level(logging.WARNING):
        init_backbones(dst)
    assert 'Swin' in caplog.text and 'DenseNet' in caplog.text


def test_init_backbones_rejects_swin_weights_of_another_width(tmp_path):
    other = build_model('nano07', embed_dim=48, num_heads=(2, 4, 8, 16))
    torch.save({'model': other.backbone.state_dict()}, tmp_path / 'swin48.pth')
    with pytest.raises(CheckpointError, match='patch_embed.proj.weight'):
        init_backbones(_net(13), swin_path=tmp_path / 'swin48.pth')
