"""Building blocks pinned to the method's definitions (docs/method.md §1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from urcdc_depth_ros.model.coupling import CouplingUnit
from urcdc_depth_ros.model import layers
from urcdc_depth_ros.model.layers import MASK_VALUE, shifted_window_mask, window_partition
from urcdc_depth_ros.model.newcrf import PSP, CRFBlock, adaptive_avg_pool2d_static
from urcdc_depth_ros.model.swin import PatchMerging, SwinBlock, SwinTransformer


def official_mask(hp: int, wp: int, ws: int, shift: int) -> torch.Tensor:
    """The mask as the official code builds it (slice loop), for comparison."""
    img = torch.zeros(1, hp, wp, 1)
    slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for h in slices:
        for w in slices:
            img[:, h, w, :] = cnt
            cnt += 1
    win = window_partition(img, ws).view(-1, ws * ws)
    m = win.unsqueeze(1) - win.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


@pytest.mark.parametrize('hp,wp,ws,shift', [(14, 21, 7, 3), (7, 7, 7, 3), (24, 36, 12, 6)])
def test_shifted_window_mask_equals_official_construction(hp, wp, ws, shift):
    # same regions; only the fill value differs (MASK_VALUE instead of -100)
    ours, official = shifted_window_mask(hp, wp, ws, shift), official_mask(hp, wp, ws, shift)
    assert torch.equal(ours != 0, official != 0)
    assert set(ours.unique().tolist()) == {0.0, MASK_VALUE}


def _subnormal_count(t: torch.Tensor) -> int:
    return int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())


@pytest.mark.parametrize('block', ['swin', 'crf'])
def test_mask_value_keeps_subnormals_out_and_matches_the_official_mask(block, monkeypatch):
    """-1e4 and the official -100 give the same block output; only -100 makes subnormals.

    The block runs shifted on a 10x10 grid padded to 14x14, like every second block of the
    network. The 4 padded rows/columns form regions of pad tokens only, whose values are 0
    (zero bias at init; zero padding of v in the CRF block), so their projection input
    (attention @ values) is nothing but the masked-out weights times real values: subnormal
    with -100, exactly 0 with MASK_VALUE.
    """
    torch.manual_seed(0)
    blk = (SwinBlock(32, 2, 7, shift_size=3) if block == 'swin'
           else CRFBlock(32, 2, 7, shift_size=3)).eval()
    torch.nn.init.zeros_(blk.attn.qkv.bias if block == 'swin' else blk.attn.qk.bias)
    x, v = torch.randn(1, 10 * 10, 32), torch.randn(1, 10, 10, 32)
    seen = []
    blk.attn.proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))

    def run():
        with torch.inference_mode():
            return blk(x, 10, 10) if block == 'swin' else blk(x, v, 10, 10)

    ours = run()
    monkeypatch.setattr(layers, '_shift_mask_cpu', lambda *a: official_mask(*a))
    official = run()
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-6)
    assert _subnormal_count(seen[0]) == 0
    assert _subnormal_count(seen[1]) > 0  # what the official mask does (and why it is slow)


@pytest.mark.parametrize('hw', [(11, 38), (7, 5), (3, 13), (1, 1), (12, 40)])
@pytest.mark.parametrize('size', [1, 2, 3, 6])
def test_static_adaptive_pool_equals_torch_adaptive_avg_pool(hw, size):
    x = torch.randn(2, 5, *hw, generator=torch.Generator().manual_seed(0))
    # same bins; only the float summation order may differ (~1 ulp)
    torch.testing.assert_close(adaptive_avg_pool2d_static(x, size),
                               F.adaptive_avg_pool2d(x, size), rtol=1e-6, atol=1e-6)


def test_psp_concatenates_input_first_and_all_scales_use_groupnorm():
    psp = PSP(in_channels=8, channels=16, gn_groups=4).eval()
    assert all(hasattr(m[1], 'gn') and not hasattr(m[1], 'bn') for m in psp.psp_modules)
    assert hasattr(psp.bottleneck, 'bn')
    x = torch.randn(1, 8, 5, 7)
    captured = {}
    psp.bottleneck.register_forward_pre_hook(lambda m, a: captured.update(inp=a[0]))
    out = psp(x)
    assert out.shape == (1, 16, 5, 7)
    assert torch.equal(captured['inp'][:, :8], x)
    scale2 = F.interpolate(psp.psp_modules[1](x), size=(5, 7), mode='bilinear',
                           align_corners=False)
    assert torch.allclose(captured['inp'][:, 8 + 16:8 + 32], scale2)


def test_crf_block_single_window_matches_the_formula():
    torch.manual_seed(0)
    dim, heads, ws = 8, 2, 7
    blk = CRFBlock(dim, heads, ws, shift_size=0).eval()
    x = torch.randn(1, ws * ws, dim)
    v = torch.randn(1, ws, ws, dim)
    xn = blk.norm1(x)
    q, k = blk.attn.qk(xn).view(1, ws * ws, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
    n = ws * ws
    bias = blk.attn.relative_position_bias_table[blk.attn.relative_position_index.view(-1)]
    bias = bias.view(n, n, heads).permute(2, 0, 1)
    attn = ((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1) + bias).softmax(-1)
    vh = v.reshape(1, n, heads, dim // heads).transpose(1, 2)  # raw v, no projection
    y = x + blk.attn.proj((attn @ vh).transpose(1, 2).reshape(1, n, dim))
    expected = y + blk.mlp(blk.norm2(y))
    torch.testing.assert_close(blk(x, v, ws, ws), expected)


def _grad_of_output_wrt_v(shift: int, src: tuple[int, int]) -> torch.Tensor:
    torch.manual_seed(1)
    blk = CRFBlock(8, 2, 7, shift_size=shift).eval()
    x = torch.randn(1, 14 * 14, 8)
    v = torch.randn(1, 14, 14, 8, requires_grad=True)
    out = blk(x, v, 14, 14).view(1, 14, 14, 8)
    out[0, 0, 0].sum().backward()
    return v.grad[0, src[0], src[1]].abs().sum()


def test_shifted_crf_block_rolls_by_three_and_masks_wrapped_regions():
    # token (0,0) of a shifted block shares its window only with rows/cols 0..2 (the -100
    # mask cuts off the wrapped-around part); an unshifted block sees rows/cols 0..6
    assert _grad_of_output_wrt_v(3, (2, 2)) > 1e-6
    assert _grad_of_output_wrt_v(3, (5, 5)) < 1e-12
    assert _grad_of_output_wrt_v(0, (5, 5)) > 1e-6
    assert _grad_of_output_wrt_v(0, (8, 8)) == 0


def test_crf_block_pads_sizes_that_are_not_window_multiples():
    blk = CRFBlock(8, 2, 7, shift_size=3).eval()
    out = blk(torch.randn(2, 9 * 11, 8), torch.randn(2, 9, 11, 8), 9, 11)
    assert out.shape == (2, 9 * 11, 8) and torch.isfinite(out).all()


def test_coupling_unit_matches_formula_and_skips_in_training():
    torch.manual_seed(0)
    unit = CouplingUnit(cnn_channels=6, swin_channels=4, skip_prob=0.05).eval()
    for bn in (unit.bn, unit.bn1, unit.bn2, unit.bn3):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x, s = torch.randn(2, 6, 5, 5), torch.randn(2, 4, 5, 5)
    t = F.relu(unit.bn(s))
    y = F.relu(unit.bn1(unit.conv1(x)))
    y = F.relu(unit.bn2(unit.conv2(y + t)))
    expected = F.relu(unit.bn3(unit.conv3(y)) + x)
    torch.testing.assert_close(unit(x, s), expected)
    unit.skip_prob = 1.0
    assert not torch.equal(unit(x, s), x)  # eval never skips
    unit.train()
    assert torch.equal(unit(x, s), x)


def test_swin_handles_odd_sizes_and_patch_merging_pads():
    swin = SwinTransformer(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                           window_size=7).eval()
    feats = swin(torch.randn(1, 3, 37, 53))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 10, 14), (1, 32, 5, 7),
                                               (1, 64, 3, 4), (1, 128, 2, 2)]
    merge = PatchMerging(4)
    assert merge(torch.randn(1, 5 * 7, 4), 5, 7).shape == (1, 3 * 4, 8)
