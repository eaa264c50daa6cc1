"""KITTI depth (Eigen split, official benchmark split) and the synthetic KITTI-format set.

GT PNGs are uint16 metres x 256 (0 = no LiDAR return). With ``do_kb_crop`` every image (and,
in training, its depth) is first cut to the KITTI benchmark crop: the bottom
``kb_crop_height`` rows, ``kb_crop_width`` columns centred (352 x 1216 as published). In eval
and test modes only the network input is cropped; the GT stays full frame with the offsets.
"""
from __future__ import annotations

from urcdc_depth_ros.config import KITTI_FOCAL_PX
from urcdc_depth_ros.errors import DataError

from .base import DepthDataset, SplitEntry, kb_crop_offsets


class KittiDataset(DepthDataset):
    """KITTI Eigen / official / synthetic samples (see ``base`` for the dict keys)."""

    name = 'kitti'
    depth_scale = 256.0
    default_focal = KITTI_FOCAL_PX

    def _kb(self, shape, e: SplitEntry) -> tuple[int, int]:
        h, w = shape[:2]
        ch, cw = self.cfg.kb_crop_height, self.cfg.kb_crop_width
        if h < ch or w < cw:
            raise DataError(
                f'{e.split}:{e.line_no}: image {e.image!r} is {h}x{w}, smaller than the KB crop '
                f'{ch}x{cw}; set do_kb_crop: false or smaller kb_crop_height/kb_crop_width')
        return kb_crop_offsets(h, w, ch, cw)

    def train_crop(self, image, depth, e):
        """KB crop (bottom rows, centred columns) of a training pair when enabled."""
        if not self.cfg.do_kb_crop:
            return image, depth
        top, left = self._kb(image.shape, e)
        ch, cw = self.cfg.kb_crop_height, self.cfg.kb_crop_width
        return (image[top:top + ch, left:left + cw], depth[top:top + ch, left:left + cw])

    def eval_crop(self, image, e):
        """(top, left, height, width) of the eval KB crop (the whole image when disabled)."""
        h, w = image.shape[:2]
        if not self.cfg.do_kb_crop:
            return 0, 0, h, w
        top, left = self._kb(image.shape, e)
        return top, left, self.cfg.kb_crop_height, self.cfg.kb_crop_width
