"""PyTorch backend: runs our checkpoint (or an official one) directly; CPU or CUDA, bf16/FP16.

``torch_dtype='bfloat16'`` runs the network under ``torch.autocast`` in bfloat16 on the CPU
(fast on AMX / AVX512-BF16 CPUs) and on CUDA GPUs that support it; ``fp16`` is CUDA's half
autocast. In both, the two output heads run in float32 with autocast off, and the final
``sigmoid * max_depth`` scaling therefore stays float32 too.

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

TORCH_DTYPES = ('float32', 'bfloat16')
#: Transformer-branch head modules kept in float32 under autocast (``URCDCDepth``)
HEAD_MODULES = ('disp_head1', 'uncer_head1')


class TorchBackend:
    """Transformer-branch inference with torch.

    Args:
        model_path: checkpoint from ``save_checkpoint`` (meta inside) or an official one
            (then pass ``variant`` / ``meta``).
        device: ``'auto'`` (CUDA if available), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        fp16: half precision autocast on CUDA (default True there unless ``torch_dtype`` is
            bfloat16; ignored on CPU).
        torch_dtype: ``'float32'`` or ``'bfloat16'`` (autocast on CPU, and on CUDA where
            ``torch.cuda.is_bf16_supported()``).
        variant: override the variant (checkpoints without metadata).
        meta: override the metadata (input size, normalisation, focal...).
        threads: torch intra-op threads on CPU (0 = leave torch's default).
    """

    name = 'torch'

    def __init__(self, model_path: str | os.PathLike, device: str = 'auto',
                 fp16: bool | None = None, variant: str | None = None,
                 meta: ModelMeta | None = None, threads: int = 0,
                 torch_dtype: str = 'float32') -> None:
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
        self._init(net, base, device, fp16, threads, torch_dtype)
        self.model_path = path

    @classmethod
    def from_module(cls, net, meta: ModelMeta, device: str = 'cpu', fp16: bool | None = None,
                    torch_dtype: str = 'float32') -> 'TorchBackend':
        """Wrap an in-memory network (tests, training-time evaluation)."""
        self = cls.__new__(cls)
        self._init(net, meta, device, fp16, 0, torch_dtype)
        self.model_path = None
        return self

    def _init(self, net, meta: ModelMeta, device: str, fp16: bool | None, threads: int,
              torch_dtype: str = 'float32') -> None:
        import torch

        if torch_dtype not in TORCH_DTYPES:
            raise ConfigError(f'torch_dtype={torch_dtype!r} is not one of {list(TORCH_DTYPES)}')
        if threads:
            torch.set_num_threads(int(threads))
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise BackendError(f'device {device!r} requested but torch sees no CUDA GPU; '
                               "use device='cpu' or 'auto'")
        self._torch = torch
        self.device = torch.device(device)
        cuda = self.device.type == 'cuda'
        bf16 = torch_dtype == 'bfloat16'
        if bf16 and cuda and not torch.cuda.is_bf16_supported():
            raise BackendError(f'{torch.cuda.get_device_name(self.device)} has no bfloat16; use '
                               "torch_dtype='float32' (with fp16 autocast) on this GPU")
        self.fp16 = bool(fp16 if fp16 is not None else (cuda and not bf16))
        if self.fp16 and not cuda:
            logger.warning('fp16 ignored on %s (CPU half precision is slower and less accurate)',
                           self.device)
            self.fp16 = False
        if self.fp16 and bf16:
            raise ConfigError('fp16 and torch_dtype=bfloat16 exclude each other; pick one')
        self._autocast = torch.bfloat16 if bf16 else (torch.float16 if self.fp16 else None)
        self.precision = 'bf16' if bf16 else ('fp16' if self.fp16 else 'fp32')
        self._net = net.eval().to(self.device)
        if self._autocast is not None:
            _heads_in_float32(torch, self._net)
        self.meta = meta
        self.input_shape = (1, 3, meta.input_height, meta.input_width)
        logger.info('torch backend: %s on %s, %s', meta.variant, self.device, self.precision)

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 normalised -> {'depth', 'uncertainty'} each (N, 1, H, W)."""
        if self._net is None:
            raise BackendError('torch backend used after close()')
        torch = self._torch
        x = check_input(x, self.input_shape)
        low = self._autocast is not None
        with torch.inference_mode(), torch.autocast(self.device.type, self._autocast or
                                                    torch.float32, enabled=low):
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


def _heads_in_float32(torch, net) -> None:
    """Run ``net``'s output heads in float32 with autocast off (instance ``forward`` override).

    The state dict is unchanged; in float32 the override computes exactly what the head does.
    """
    for name in HEAD_MODULES:
        head = getattr(net, name, None)
        if head is None or getattr(head, '_float32_head', False):
            continue
        inner = head.forward

        def forward(x, _inner=inner):
            with torch.autocast(x.device.type, enabled=False):
                return _inner(x.float())

        head.forward = forward
        head._float32_head = True


__all__ = ['TorchBackend', 'TORCH_DTYPES']
