"""NYU-Depth-v2 (BTS / URCDC-Depth split files): RGB JPEGs, uint16 depth PNGs in millimetres.

Training follows the official loaders: at the full 480 x 640 input size the GT outside the
valid region (rows 45..471, cols 43..607, where the depth camera's registration leaves blank
borders) is zeroed; at smaller input sizes image and GT are first cut to that region. Eval
returns the whole 480 x 640 frame (the evaluation applies its own crop).
"""
from __future__ import annotations

import numpy as np

from urcdc_depth_ros.config import NYU_FOCAL_PX

from .base import DepthDataset

VALID_ROWS = (45, 472)  # [start, stop) rows with registered depth
VALID_COLS = (43, 608)


class NyuDataset(DepthDataset):
    """NYU-Depth-v2 samples (see ``base`` for the dict keys)."""

    name = 'nyu'
    depth_scale = 1000.0
    default_focal = NYU_FOCAL_PX

    def train_crop(self, image, depth, e):
        """Keep NYU's valid region (rows 45..471, cols 43..607): crop, or mask full-size GT."""
        h, w = depth.shape
        (r0, r1), (c0, c1) = VALID_ROWS, VALID_COLS
        if (h, w) == (self.cfg.input_height, self.cfg.input_width):
            masked = np.zeros_like(depth)
            masked[r0:r1, c0:c1] = depth[r0:r1, c0:c1]
            return image, masked
        if h >= r1 and w >= c1:
            return image[r0:r1, c0:c1], depth[r0:r1, c0:c1]
        return image, depth
