"""Shared pieces of the trainer tests: a tiny in-memory data set and configs."""
from __future__ import annotations

import torch

from urcdc_training.config import TrainConfig


class TinyDepthSet(torch.utils.data.Dataset):
    """``n`` random images whose depth (metres) is a smooth function of the image.

    Items: 'image' (3, H, W) float32 ~N(0, 1), 'depth' (1, H, W) metres in about 2..40 with a
    few pixels at 0 (no ground truth), 'focal' 721.5377 px. Reading an item draws one number
    from torch's global RNG (like a random augmentation would), so tests notice when data
    loading is not isolated from the model's random stream.
    """

    def __init__(self, n: int = 6, height: int = 64, width: int = 64, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, height, width, generator=gen)
        base = torch.nn.functional.avg_pool2d(self.images.mean(1, keepdim=True), 5, 1, 2)
        self.depths = (20.0 + 30.0 * base).clamp(2.0, 40.0)
        self.depths[:, :, :4] = 0.0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        jitter = float(torch.rand(())) * 1e-3  # an "augmentation" using the global RNG
        return {'image': self.images[i] + jitter, 'depth': self.depths[i].clone(),
                'focal': 721.5377}


def tiny_config(checkpoint_dir: str, **overrides) -> TrainConfig:
    """A nano07 config for 64x64 in-memory data, no TensorBoard, no evaluation."""
    values = {
        'variant': 'nano07', 'batch_size': 2, 'lr': 1e-4, 'max_steps': 4,
        'checkpoint_dir': str(checkpoint_dir), 'tensorboard_dir': '', 'eval_every': 0,
        'checkpoint_every': 2, 'keep_last': 5, 'device': 'cpu', 'seed': 3,
        'data': {'input_height': 64, 'input_width': 64, 'num_workers': 0},
    }
    data = overrides.pop('data', {})
    values.update(overrides)
    values['data'].update(data)
    return TrainConfig.from_dict(values)


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}
