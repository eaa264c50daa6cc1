"""Architecture contracts: variants table, official key/shape lists, parameter counts.

Large variants are built on the ``meta`` device (shapes only, no memory, fast).
"""
from __future__ import annotations

import os

import pytest
import torch

from urcdc_depth_ros.model import PAPER_VARIANTS, VARIANTS, build_model

KEYS_DIR = os.environ.get('URCDC_OFFICIAL_KEYS', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures', 'official_keys'))
GROUPS = {  # official group name -> our top-level / backbone module prefixes
    'swin_backbone': ('backbone.patch_embed.', 'backbone.layers.', 'backbone.norm0.',
                      'backbone.norm1.', 'backbone.norm2.', 'backbone.norm3.'),
    'cnn_backbone_densenet161': ('backbone.base_model.',),
    'coupling_fusion_convblocks': tuple(f'backbone.fusion{i}.' for i in range(1, 5)),
    'transformer_decoder_psp': ('decoder.',),
    'transformer_decoder_crf': tuple(f'crf{i}.' for i in range(4)),
    'transformer_heads': ('disp_head1.', 'uncer_head1.'),
    'cnn_decoder_glp': ('decoder2.',),
    'cnn_heads': ('last_layer_depth.', 'last_layer_uncer.'),
}
# docs/method.md §6, large07
LARGE07_PARAMS = dict(total=333_760_486, swin_backbone=194_998_164,
                      cnn_backbone_densenet161=26_472_000,
                      coupling_fusion_convblocks=35_781_120,
                      transformer_decoder_psp=19_665_920, transformer_decoder_crf=55_779_640,
                      transformer_heads=2_306, cnn_decoder_glp=893_526, cnn_heads=167_810)


def meta_model(name: str):
    with torch.device('meta'):
        return build_model(name)


def read_official(name: str):
    path = os.path.join(KEYS_DIR, f'keys_{name}.tsv')
    if not os.path.isfile(path):
        pytest.skip(f'official key list {path} not available')
    rows, groups = [], {}
    with open(path) as f:
        for line in f:
            line = line.rstrip('\n')
            if line.startswith('# params per group:'):
                for item in line.split(':', 1)[1].split():
                    k, v = item.split('=')
                    groups[k] = int(v)
            elif line.startswith('#'):
                if 'params_total=' in line:
                    groups['total'] = int(line.split('params_total=')[1].split()[0])
            elif line and not line.startswith('key\t'):
                key, shape, dtype = line.split('\t')
                rows.append((key, shape, dtype))
    return rows, groups


def describe(net) -> list[tuple[str, str, str]]:
    return [(k, '[' + ','.join(str(d) for d in v.shape) + ']',
             str(v.dtype).replace('torch.', '')) for k, v in net.state_dict().items()]


def group_counts(net) -> dict[str, int]:
    counts = {g: 0 for g in GROUPS}
    for name, p in net.named_parameters():
        owners = [g for g, prefixes in GROUPS.items() if name.startswith(prefixes)]
        assert len(owners) == 1, f'{name} belongs to {owners}'
        counts[owners[0]] += p.numel()
    counts['total'] = sum(p.numel() for p in net.parameters())
    return counts


@pytest.mark.parametrize('name', ['tiny07', 'large07'])
def test_state_dict_keys_shapes_and_order_equal_official_list(name):
    rows, _ = read_official(name)
    mine = describe(meta_model(name))
    extra, missing = sorted(set(mine) - set(rows)), sorted(set(rows) - set(mine))
    assert not extra and not missing, (extra[:5], missing[:5])
    assert mine == rows  # same order as the official state_dict too


@pytest.mark.parametrize('name', ['tiny07', 'large07'])
def test_parameter_counts_per_group_equal_official_header(name):
    _, groups = read_official(name)
    assert group_counts(meta_model(name)) == groups


def test_large07_parameter_counts_equal_design_doc():
    assert group_counts(meta_model('large07')) == LARGE07_PARAMS


def test_base_variants_differ_only_in_swin_window():
    b07, b12 = meta_model('base07'), meta_model('base12')
    t07 = b07.state_dict()['backbone.layers.0.blocks.0.attn.relative_position_bias_table']
    t12 = b12.state_dict()['backbone.layers.0.blocks.0.attn.relative_position_bias_table']
    assert tuple(t07.shape) == (13 * 13, 4) and tuple(t12.shape) == (23 * 23, 4)
    # NeWCRF windows stay 7 in every variant
    crf = b12.state_dict()['crf0.crf_layer.blocks.0.attn.relative_position_bias_table']
    assert crf.shape[0] == 13 * 13
    # base Swin widths (128..1024) equal the NeWCRF widths: no proj_x, as in the official code
    assert all(getattr(b12, f'crf{i}').proj_x is None for i in range(4))
    assert 'crf0.proj_x.weight' not in b07.state_dict()


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_every_variant_has_window_from_its_name_and_consistent_widths(name):
    net = meta_model(name)
    assert net.variant == name and net.max_depth == 80.0
    assert VARIANTS[name]['swin']['window_size'] == int(name[-2:])
    ch = net.backbone.channels
    assert net.decoder.psp_modules[0][1].conv.in_channels == ch[3]
    for i in range(4):
        crf = getattr(net, f'crf{i}')
        assert crf.embed_dim == VARIANTS[name]['crf_dims'][i]
    assert net.decoder2.bot_conv.in_channels == net.backbone.cnn_channels[3]


def test_paper_variants_are_listed_and_nano_is_not_one_of_them():
    assert set(PAPER_VARIANTS) == {'tiny07', 'base07', 'base12', 'large07'}
    assert 'nano07' in VARIANTS and 'nano07' not in PAPER_VARIANTS


def test_unknown_variant_raises_value_error_listing_variants():
    with pytest.raises(ValueError, match='large07'):
        build_model('huge07')


def test_unknown_override_raises_value_error_and_known_override_applies():
    with pytest.raises(ValueError, match='drop_path_rate'):
        build_model('nano07', dropout=0.1)
    with torch.device('meta'):
        net = build_model('nano07', drop_path_rate=0.0, max_depth=10.0)
    assert net.max_depth == 10.0
    assert all(b.drop_path.p == 0.0 for layer in net.backbone.layers for b in layer.blocks)


def test_stochastic_depth_rises_linearly_to_0p3_over_all_swin_blocks():
    net = meta_model('tiny07')
    rates = [b.drop_path.p for layer in net.backbone.layers for b in layer.blocks]
    assert len(rates) == 12
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert max(steps) - min(steps) < 1e-9


def test_meta_device_forward_shapes_for_large07():
    net = meta_model('large07').eval()
    x = torch.empty(1, 3, 64, 96, device='meta')
    out = net(x, with_cnn=True)
    assert all(tuple(t.shape) == (1, 1, 64, 96) for t in out)
