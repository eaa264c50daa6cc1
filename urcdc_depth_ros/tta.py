"""Flip test-time augmentation with the official edge-blended fusion (docs/method.md §5).

Works on numpy arrays and torch tensors alike (only arithmetic and clipping are used).
"""
from __future__ import annotations

import numpy as np


def flip_fusion_weights(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Column weights (m, m_hat), each (width,) float32.

    x in [0, 1] is the normalised column; m = 1 - clip(20 (x - 0.05), 0, 1) is 1 at the left
    edge, where the *mirrored* prediction saw context, and m_hat is its mirror.
    """
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    m = 1.0 - np.clip(20.0 * (x - 0.05), 0.0, 1.0)
    return m.astype(np.float32), m[::-1].copy().astype(np.float32)


def fuse_flip(pred, pred_flipped_back):
    """Fuse a prediction ``d`` and the mirrored-back prediction of the mirrored image ``f``.

    Returns m_hat * d + m * f + (1 - m - m_hat) * (d + f) / 2, broadcast over the last axis
    (width). Shapes (..., H, W); numpy or torch (weights follow the input's type and device).
    """
    width = pred.shape[-1]
    m, m_hat = flip_fusion_weights(width)
    if not isinstance(pred, np.ndarray):  # torch tensor
        import torch  # noqa: F401  (only reached with torch inputs)
        m = pred.new_tensor(m)
        m_hat = pred.new_tensor(m_hat)
    return m_hat * pred + m * pred_flipped_back + (1.0 - m - m_hat) * 0.5 * (
        pred + pred_flipped_back)
