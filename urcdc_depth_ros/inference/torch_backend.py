"""PyTorch backend: runs our checkpoint (or an official one) directly; CPU or CUDA (FP16).

The only runtime module besides ``urcdc_depth_ros.model`` that imports torch; used for
development, parity tests and as the reference the exported backends are checked against.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..config import ModelMeta
from ..errors import BackendError, CheckpointError, ConfigError
from .base import check_input, require_file

logger = logging.getLogger(__name__)


class TorchBackend:
    """Transformer-branch inference with torch.

    Args:
        model_path: checkpoint from ``save_checkpoint`` (meta inside) or an official one
            (then pass ``variant`` / ``meta``).
        device: ``'auto'`` (CUDA if available), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        fp16: half precision autocast on CUDA (default True there; ignored on CPU).
        variant: override the variant (checkpoints without metadata).
        meta: override the metadata (input size, normalisation, focal...).
        threads: torch intra-op threads on CPU (0 = leave torch's default).
    """

    name = 'torch'

    def __init__(self, model_path: str | os.PathLike, device: str = 'auto',
                 fp16: bool | None = None, variant: str | None = None,
                 meta: ModelMeta | None = None, threads: int = 0) -> None:
        from ..model import build_model, load_weights, read_checkpoint
        from ..model.checkpoint import extract_state_dict, infer_variant

        path = require_file(model_path, 'checkpoint',
                            'train one with urcdc-train or pass the path of a .pt/.pth file')
        try:
            ckpt = read_checkpoint(path)
            stored = ckpt.get('meta')
            ckpt_meta = ModelMeta.from_dict(stored) if isinstance(stored, dict) else None
            name = variant or (meta.variant if meta else None) or (
                ckpt_meta.variant if ckpt_meta else None) or infer_variant(
                extract_state_dict(ckpt))
            if name is None:
                raise BackendError(f'cannot tell the variant of {path!r}; pass variant=...')
            base = meta or ckpt_meta or ModelMeta(variant=name)
            net = build_model(name, max_depth=base.max_depth)
            load_weights(net, ckpt)
        except (CheckpointError, ConfigError) as exc:
            raise BackendError(f'torch backend cannot load {path!r}: {exc}') from exc
        self._init(net, base, device, fp16, threads)
        self.model_path = path

    @classmethod
    def from_module(cls, net, meta: ModelMeta, device: str = 'cpu',
                    fp16: bool | None = None) -> 'TorchBackend':
        """Wrap an in-memory network (tests, training-time evaluation)."""
        self = cls.__new__(cls)
        self._init(net, meta, device, fp16, 0)
        self.model_path = None
        return self

    def _init(self, net, meta: ModelMeta, device: str, fp16: bool | None, threads: int) -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise BackendError(f'device {device!r} requested but torch sees no CUDA GPU; '
                               "use device='cpu' or 'auto'")
        self._torch = torch
        self.device = torch.device(device)
        self.fp16 = bool(fp16 if fp16 is not None else self.device.type == 'cuda')
        if self.fp16 and self.device.type != 'cuda':
            logger.warning('fp16 ignored on %s (CPU half precision is slower and less accurate)',
                           self.device)
            self.fp16 = False
        self._net = net.eval().to(self.device)
        self.meta = meta
        self.input_shape = (1, 3, meta.input_height, meta.input_width)
        logger.info('torch backend: %s on %s%s', meta.variant, self.device,
                    ' (fp16 autocast)' if self.fp16 else '')

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 normalised -> {'depth', 'uncertainty'} each (N, 1, H, W)."""
        if self._net is None:
            raise BackendError('torch backend used after close()')
        torch = self._torch
        x = check_input(x, self.input_shape)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.float16,
                                                    enabled=self.fp16):
            t = torch.from_numpy(x).to(self.device, non_blocking=True)
            out = self._net(t, with_cnn=False)
            depth = out.depth.float().cpu().numpy()
            unc = out.uncertainty.float().cpu().numpy()
        return {'depth': depth, 'uncertainty': unc}

    def close(self) -> None:
        """Drop the network (and CUDA cache)."""
        if getattr(self, '_net', None) is not None and self.device.type == 'cuda':
            self._net = None
            self._torch.cuda.empty_cache()
        self._net = None


__all__ = ['TorchBackend']
