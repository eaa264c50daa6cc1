"""NeWCRF keeps PyTorch's default Linear init, as the official code (no trunc-normal reset)."""
import math

import torch
from torch import nn

from urcdc_depth_ros.model.newcrf import NeWCRF


def test_newcrf_linear_layers_keep_the_pytorch_default_init():
    torch.manual_seed(0)
    crf = NeWCRF(input_dim=64, embed_dim=64, v_dim=64, window_size=7, num_heads=4)
    linears = [m for m in crf.crf_layer.modules() if isinstance(m, nn.Linear)]
    assert linears
    for m in linears:
        bound = 1.0 / math.sqrt(m.in_features)  # kaiming_uniform(a=sqrt(5)) and bias bounds
        assert float(m.weight.abs().max()) <= bound + 1e-6
        # uniform on [-b, b] has std b / sqrt(3); trunc-normal(0.02) would give about 0.02
        assert abs(float(m.weight.std()) - bound / math.sqrt(3)) < 0.15 * bound
        assert m.bias is None or float(m.bias.abs().max()) > 0  # not zeroed
