"""The URCDC-Depth trainer: both branches, alternating losses, DDP, AMP, exact resume.

One :class:`Trainer` runs in every process that ``torchrun`` starts (or alone). It owns the
training loop; the losses are :mod:`urcdc_training.losses`, the metrics
:mod:`urcdc_depth_ros.metrics` (through :mod:`urcdc_training.evaluate`).

Recipe (docs/method.md §2-3): Adam, lr polynomially decayed with power 0.9 to 0.1 lr over all
steps (set before every step, a pure function of the global step); even steps optimise
SILog (both branches) + uncertainty, odd steps cross-distillation.

Exact resume: a checkpoint holds the model, optimiser, GradScaler, global step, epoch and the
number of batches already consumed in that epoch, every rank's python/numpy/torch(/CUDA) RNG
states and the best metrics. Shuffling is a function of (seed, epoch) and the augmentation of
each sample a function of (seed, epoch, index), so a resumed run sees the same batches with the
same augmentations as an uninterrupted one.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from urcdc_depth_ros.config import ModelMeta
from urcdc_depth_ros.errors import (CheckpointError, ConfigError, DataError,
                                    TrainingDivergedError)
from urcdc_depth_ros.metrics import HIGHER_IS_BETTER, METRIC_NAMES

from . import losses as L
from .config import TrainConfig

logger = logging.getLogger(__name__)

CKPT_PATTERN = re.compile(r'^ckpt_step(\d+)\.pt$')


# --- schedule ------------------------------------------------------------------------------

def lr_at(step: int, total_steps: int, base_lr: float, end_lr_ratio: float = 0.1,
          power: float = 0.9) -> float:
    """Learning rate before optimiser step ``step`` (0-based) of ``total_steps``.

    ``(lr - end) * (1 - step / total) ** power + end`` with ``end = end_lr_ratio * lr``, the
    official schedule.
    """
    end = base_lr * end_lr_ratio
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return (base_lr - end) * (1.0 - frac) ** power + end


# --- distributed ---------------------------------------------------------------------------

@dataclass
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (logging, TensorBoard, checkpoints, evaluation)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def setup_distributed(device: str = 'auto') -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (env:// init).

    NCCL on CUDA, gloo on CPU. Without ``WORLD_SIZE`` > 1 this is a single process. A group
    that is already initialised (e.g. by a test) is reused.
    """
    use_cuda = torch.cuda.is_available() if device == 'auto' else device.startswith('cuda')
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f'device={device!r} but CUDA is not available; use device=cpu')
    world = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    initialised_here = False
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    elif world > 1:
        backend = 'nccl' if use_cuda else 'gloo'
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, init_method='env://')
        initialised_here = True
        rank = dist.get_rank()
    else:
        rank = 0
    if use_cuda:
        dev = torch.device('cuda', local_rank) if device in ('auto', 'cuda') else \
            torch.device(device)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device('cpu')
    return DistInfo(rank, world, local_rank, dev, initialised_here)


# --- data ----------------------------------------------------------------------------------

class SeededDataset(Dataset):
    """Wraps a dataset so each sample's random augmentation depends only on (seed, epoch, index).

    The global python/numpy/torch RNG states are seeded for the call and restored afterwards,
    so data loading never disturbs the model's random stream (drop path, coupling skips) and
    neither worker count nor resuming mid-epoch changes what a sample looks like.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (call before creating the DataLoader iterator)."""
        self.epoch = int(epoch)
        if hasattr(self.dataset, 'set_epoch'):  # the data set's own per-sample streams
            self.dataset.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        seq = np.random.SeedSequence([self.seed, self.epoch, int(index)])
        s32, s64 = seq.generate_state(2, np.uint32), int(seq.generate_state(1, np.uint64)[0])
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), \
            torch.get_rng_state()
        try:
            random.seed(s64)
            np.random.seed(s32)
            torch.manual_seed(s64 & ((1 << 63) - 1))
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffle by seed + epoch) that can start part-way into an epoch."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int,
                 shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=True)
        self.start_index = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index:])

    def __len__(self) -> int:
        return max(self.num_samples - self.start_index, 0)


# --- checkpoint helpers --------------------------------------------------------------------

def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        'python': _to_plain(random.getstate()),
        'numpy': [np_state[0], torch.from_numpy(np.asarray(np_state[1], np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state['python']))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, np.asarray(keys, np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _to_plain(x):
    if isinstance(x, tuple):
        return [_to_plain(v) for v in x]
    return x


def _to_tuple(x):
    if isinstance(x, list):
        return tuple(_to_tuple(v) for v in x)
    return x


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """Periodic checkpoints in ``directory`` as (step, path), oldest first."""
    out = []
    for path in glob.glob(os.path.join(directory, 'ckpt_step*.pt')):
        match = CKPT_PATTERN.match(os.path.basename(path))
        if match:
            out.append((int(match.group(1)), path))
    return sorted(out)


# --- the trainer ---------------------------------------------------------------------------

class Trainer:
    """Train a URCDC-Depth network as :class:`TrainConfig` says.

    Args:
        cfg: the training configuration.
        model: a prebuilt network (default: ``build_model(cfg.variant, ...)``).
        train_dataset, eval_dataset: prebuilt data sets (default: from ``cfg.data``; the eval
            set only when ``cfg.data`` names an eval split).
        dist_info: process-group information (default: :func:`setup_distributed`).
    """

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module | None = None,
                 train_dataset: Dataset | None = None, eval_dataset: Dataset | None = None,
                 dist_info: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.dist = dist_info or setup_distributed(cfg.device)
        self.device = self.dist.device
        if cfg.amp == 'fp16' and self.device.type != 'cuda':
            raise ConfigError('amp=fp16 needs CUDA (GradScaler); use amp=bf16 or amp=off on CPU')
        self._seed_everything(cfg.seed + self.dist.rank)

        from urcdc_depth_ros.model import build_model
        if model is None:
            model = build_model(cfg.variant, max_depth=cfg.max_depth, **cfg.model_kwargs)
            if cfg.pretrained_swin or cfg.pretrained_densenet:
                from urcdc_depth_ros.model import init_backbones
                init_backbones(model, swin_path=cfg.pretrained_swin,
                               densenet_path=cfg.pretrained_densenet)
        self.model = model.to(self.device)
        self.model.train()
        self.net = self.model
        if self.dist.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda'
                else None, find_unused_parameters=cfg.find_unused_parameters)

        if cfg.pass_weight_decay_eps:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr,
                                              weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
        else:  # reason: the official scripts parse weight decay/eps but never pass them
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scaler = torch.amp.GradScaler('cuda', enabled=cfg.amp == 'fp16')
        self.amp_dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(cfg.amp)
        self.loss_weights = L.LossWeights(variance_focus=cfg.variance_focus)

        if train_dataset is None:
            from .datasets import build_dataset
            train_dataset = build_dataset(cfg.data, mode='train')
        if eval_dataset is None and getattr(cfg.data, 'filenames_file_eval', None):
            from .datasets import build_dataset
            eval_dataset = build_dataset(cfg.data, mode='eval')
        if len(train_dataset) < cfg.batch_size * self.dist.world_size:
            raise DataError(
                f'the training set has {len(train_dataset)} samples, fewer than one global '
                f'batch ({cfg.batch_size} x {self.dist.world_size} processes); lower '
                'batch_size or check data.filenames_file')
        self.train_dataset = SeededDataset(train_dataset, cfg.seed)
        self.eval_dataset = eval_dataset
        self.sampler = ResumableSampler(self.train_dataset, self.dist.world_size,
                                        self.dist.rank, cfg.seed)
        self.steps_per_epoch = self.sampler.num_samples // cfg.batch_size
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch

        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: dict[str, dict[str, float]] = {}
        self.last_checkpoint: str | None = None
        self.meta = self._model_meta(train_dataset)
        self.writer = None
        if self.dist.is_main:
            os.makedirs(cfg.checkpoint_dir, exist_ok=True)
            cfg.save(os.path.join(cfg.checkpoint_dir, 'train_config.yaml'))
            tb = cfg.tensorboard_path()
            if tb:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(tb)
        self._maybe_resume()

    # --- set-up helpers ------------------------------------------------------------------
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)

    def _model_meta(self, dataset: Dataset) -> ModelMeta:
        data = self.cfg.data
        focal = None
        try:
            focal = float(dataset[0]['focal'])
        except (KeyError, IndexError, TypeError, DataError):
            focal = None
        kw = dict(variant=self.cfg.variant, max_depth=self.cfg.max_depth,
                  dataset=f'{data.dataset}:{os.path.basename(str(data.filenames_file))}')
        height, width = _meta_input_size(data)
        kw.update(input_height=height, input_width=width)
        if focal:
            kw['focal_px'] = focal
        for name in ('mean', 'std'):
            if hasattr(data, name):
                kw[name] = tuple(float(v) for v in getattr(data, name))
        return ModelMeta(**kw)

    def _maybe_resume(self) -> None:
        resume = self.cfg.resume
        if resume == 'never':
            return
        candidates = [resume] if resume != 'auto' else \
            [p for _, p in reversed(list_checkpoints(self.cfg.checkpoint_dir))]
        from urcdc_depth_ros.model import load_weights, read_checkpoint
        for path in candidates:
            try:
                ckpt = read_checkpoint(path)
                state = ckpt['trainer']
                load_weights(self.model, ckpt)
            except (CheckpointError, KeyError, OSError, RuntimeError, EOFError) as exc:
                if resume != 'auto':
                    raise CheckpointError(f'cannot resume from {path!r}: {exc}') from exc
                logger.warning('skipping unreadable checkpoint %s (%s); trying an older one',
                               path, exc)
                continue
            self.optimizer.load_state_dict(ckpt['optimizer'])
            if ckpt.get('scaler'):
                self.scaler.load_state_dict(ckpt['scaler'])
            self.global_step = int(state['global_step'])
            self.epoch = int(state['epoch'])
            self.batch_in_epoch = int(state['batch_in_epoch'])
            self.best = state.get('best', {})
            rngs = state.get('rng') or []
            if rngs:
                _set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
            else:  # best_<metric>.pt keeps no RNG state: weights/optimiser/step resume exactly
                logger.warning('%s holds no RNG state; augmentation randomness restarts from '
                               'the seed', path)
            self.last_checkpoint = path
            logger.info('resumed from %s: step %d, epoch %d, batch %d of the epoch', path,
                        self.global_step, self.epoch, self.batch_in_epoch)
            return
        if resume == 'auto' and candidates:
            raise CheckpointError(
                f'no checkpoint in {self.cfg.checkpoint_dir!r} could be read; move them away '
                'or pass resume=never to start from scratch')

    # --- one step ------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], parity_step: int) -> dict[str, float]:
        """Forward both branches, compute the six losses, optimise the ones ``parity_step`` picks.

        Args:
            batch: 'image' (B,3,H,W) normalised, 'depth' (B,1,H,W) metres (0 = no GT).
            parity_step: the step number whose parity selects the losses.
        Returns:
            the six losses (averaged over processes) and 'total', as floats.
        Raises:
            TrainingDivergedError: a loss is NaN/inf (nothing was applied to the model).
        """
        image = batch['image'].to(self.device, non_blocking=True)
        gt = batch['depth'].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = self.net(image)
        d1, u1 = out.depth.float(), out.uncertainty.float()
        d2, u2 = out.depth_cnn.float(), out.uncertainty_cnn.float()
        losses = L.compute_losses(d1, u1, d2, u2, gt, self.cfg.loss_min_depth_m(),
                                  self.loss_weights)
        total = L.total_loss(losses, parity_step)
        values = torch.stack([losses[k].detach() for k in L.LOSS_NAMES] + [total.detach()])
        if self.dist.distributed:
            dist.all_reduce(values)
            values /= self.dist.world_size
        if not bool(torch.isfinite(values).all()):
            bad = {k: float(v) for k, v in zip(L.LOSS_NAMES + ('total',), values.tolist())}
            raise TrainingDivergedError(
                f'non-finite loss at global step {self.global_step} (epoch {self.epoch}, batch '
                f'{self.batch_in_epoch}): {bad}; stopped before applying it. The last good '
                f'checkpoint is {self.last_checkpoint!r}. Lower lr, try amp=off, or check the '
                'data (depth must be metres, 0 = none).')
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._last_outputs = (image, gt, out.depth.detach(), out.uncertainty.detach())
        return {k: float(v) for k, v in zip(L.LOSS_NAMES + ('total',), values.tolist())}

    def set_lr(self) -> float:
        """Set the scheduled learning rate for the coming step; returns it."""
        lr = lr_at(self.global_step, self.total_steps, self.cfg.lr, self.cfg.end_lr_ratio,
                   self.cfg.lr_power)
        for group in self.optimizer.param_groups:
            group['lr'] = lr
        return lr

    # --- loop ----------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        self.sampler.start_index = self.batch_in_epoch * self.cfg.batch_size
        self.train_dataset.set_epoch(self.epoch)
        workers = int(getattr(self.cfg.data, 'num_workers', 0))
        # reason: a private generator keeps the loader from drawing on the global torch RNG
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)
        return DataLoader(self.train_dataset, batch_size=self.cfg.batch_size,
                          sampler=self.sampler, num_workers=workers, drop_last=True,
                          pin_memory=self.device.type == 'cuda', generator=gen)

    def train(self) -> dict[str, Any]:
        """Run to ``total_steps``; returns {'global_step', 'best', 'last_checkpoint', 'eval'}.

        Raises:
            TrainingDivergedError: a loss went NaN/inf (the last good checkpoint is kept).
        """
        from urcdc_depth_ros.progress import progress_bar
        cfg = self.cfg
        if self.global_step >= self.total_steps:
            logger.info('already at step %d of %d; nothing to do', self.global_step,
                        self.total_steps)
            return self._summary(None)
        logger.info('training %s for %d steps (%d per epoch, batch %d x %d processes) on %s',
                    cfg.variant, self.total_steps, self.steps_per_epoch, cfg.batch_size,
                    self.dist.world_size, self.device)
        bar = progress_bar(total=self.total_steps, initial=self.global_step, unit='step',
                           disable=not self.dist.is_main, dynamic_ncols=True)
        last_eval = None
        t0, n0 = time.perf_counter(), self.global_step
        try:
            while self.global_step < self.total_steps:
                for batch in self._loader():
                    parity_step = self.batch_in_epoch if cfg.parity == 'epoch' \
                        else self.global_step
                    lr = self.set_lr()
                    values = self.train_step(batch, parity_step)
                    self.global_step += 1
                    self.batch_in_epoch += 1
                    if self.batch_in_epoch >= self.steps_per_epoch:
                        self.epoch += 1
                        self.batch_in_epoch = 0
                    bar.update(1)
                    bar.set_postfix(loss=f'{values["total"]:.4f}', lr=f'{lr:.2e}',
                                    epoch=self.epoch)
                    self._log_scalars(values, lr, t0, n0)
                    done = self.global_step >= self.total_steps
                    if self.eval_dataset is not None and (
                            done or (cfg.eval_every and self.global_step % cfg.eval_every == 0)):
                        last_eval = self.evaluate()
                    if done or (cfg.checkpoint_every
                                and self.global_step % cfg.checkpoint_every == 0):
                        self.save_checkpoint()
                    if done or self.batch_in_epoch == 0:
                        break
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        return self._summary(last_eval)

    def _summary(self, last_eval):
        return {'global_step': self.global_step, 'best': self.best,
                'last_checkpoint': self.last_checkpoint, 'eval': last_eval}

    def close(self) -> None:
        """Close TensorBoard and leave a process group this trainer created."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.dist.initialised_here and dist.is_initialized():
            dist.destroy_process_group()

    # --- logging -------------------------------------------------------------------------
    def _log_scalars(self, values: dict[str, float], lr: float, t0: float, n0: int) -> None:
        if self.writer is None:
            return
        step = self.global_step
        if self.cfg.log_every and step % self.cfg.log_every == 0:
            for name, value in values.items():
                self.writer.add_scalar(f'train/{name}', value, step)
            self.writer.add_scalar('train/lr', lr, step)
            rate = (step - n0) / max(time.perf_counter() - t0, 1e-9)
            self.writer.add_scalar('train/steps_per_s', rate, step)
        if self.cfg.image_every and step % self.cfg.image_every == 0:
            image, gt, depth, unc = self._last_outputs
            for tag, panel in image_panels(image[0], gt[0], depth[0], unc[0],
                                           self.meta.mean, self.meta.std,
                                           self.cfg.max_depth).items():
                self.writer.add_image(f'train/{tag}', panel, step)

    # --- evaluation / checkpoints --------------------------------------------------------
    def evaluate(self) -> dict[str, float] | None:
        """Evaluate the Transformer branch on rank 0; update the best-metric checkpoints."""
        result = None
        if self.dist.is_main:
            from .evaluate import evaluate_model
            result = evaluate_model(
                self.model, self.eval_dataset, max_depth=self.cfg.max_depth,
                crop=self.cfg.eval_crop_name(), flip_tta=self.cfg.eval_flip_tta,
                device=self.device, amp=self.cfg.amp,
                max_images=self.cfg.eval_max_images or None, uncertainty=False,
                progress=False)
            self.model.train()
            metrics = result['metrics']
            logger.info('step %d eval: %s', self.global_step,
                        ', '.join(f'{k} {metrics[k]:.4f}' for k in METRIC_NAMES))
            if self.writer is not None:
                for k in METRIC_NAMES:
                    self.writer.add_scalar(f'eval/{k}', metrics[k], self.global_step)
            improved = []
            for k in METRIC_NAMES:
                value = metrics[k]
                if not math.isfinite(value):
                    continue
                prev = self.best.get(k)
                better = prev is None or (value > prev['value'] if k in HIGHER_IS_BETTER
                                          else value < prev['value'])
                if better:
                    self.best[k] = {'value': float(value), 'step': self.global_step}
                    improved.append(k)
            for k in improved:
                if k in self.cfg.best_metrics:
                    self._write_checkpoint(os.path.join(self.cfg.checkpoint_dir,
                                                        f'best_{k}.pt'), rng=None)
            result = metrics
        if self.dist.distributed:
            dist.barrier()
        return result

    def save_checkpoint(self) -> str:
        """Write ``ckpt_step<N>.pt`` atomically (rank 0), prune to keep_last; returns the path."""
        rngs = [_rng_state()]
        if self.dist.distributed:
            gathered = [None] * self.dist.world_size
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        path = os.path.join(self.cfg.checkpoint_dir, f'ckpt_step{self.global_step:08d}.pt')
        if self.dist.is_main:
            self._write_checkpoint(path, rngs)
            for _, old in list_checkpoints(self.cfg.checkpoint_dir)[:-self.cfg.keep_last]:
                try:
                    os.remove(old)
                except OSError as exc:
                    logger.warning('could not remove old checkpoint %s: %s', old, exc)
        self.last_checkpoint = path
        if self.dist.distributed:
            dist.barrier()
        return path

    def _write_checkpoint(self, path: str, rng) -> None:
        from urcdc_depth_ros.model import save_checkpoint
        trainer_state = {'global_step': self.global_step, 'epoch': self.epoch,
                         'batch_in_epoch': self.batch_in_epoch, 'best': self.best,
                         'rng': rng or [], 'total_steps': self.total_steps,
                         'world_size': self.dist.world_size, 'sampler_seed': self.cfg.seed}
        save_checkpoint(path, self.model, self.meta, optimizer=self.optimizer.state_dict(),
                        scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
                        trainer=trainer_state, train_config=self.cfg.to_yaml())
        logger.info('wrote %s', path)


def _meta_input_size(data) -> tuple[int, int]:
    """Network input size at inference: KITTI's KB crop (352 x 1216) or the training size."""
    if str(getattr(data, 'dataset', '')) == 'kitti' and getattr(data, 'do_kb_crop', True):
        h = getattr(data, 'kb_crop_height', 352)
        w = getattr(data, 'kb_crop_width', 1216)
        return int(h), int(w)
    return int(data.input_height), int(data.input_width)


def colorize(values: torch.Tensor, vmax: float, cmap: str = 'magma') -> torch.Tensor:
    """(H, W) tensor -> (3, H, W) float RGB in [0, 1] with a matplotlib colour map."""
    from matplotlib import colormaps
    v = (values.detach().float().cpu().clamp(0, vmax) / max(vmax, 1e-9)).numpy()
    rgb = colormaps[cmap](v)[..., :3]
    return torch.from_numpy(rgb).permute(2, 0, 1).float()


def image_panels(image: torch.Tensor, gt: torch.Tensor, depth: torch.Tensor,
                 uncertainty: torch.Tensor, mean, std, max_depth: float
                 ) -> dict[str, torch.Tensor]:
    """TensorBoard panels for one sample: image, depth, uncertainty and error, each (3, H, W).

    Args:
        image: (3, H, W) normalised; gt, depth, uncertainty: (1, H, W), metres / confidence.
    Returns:
        dict 'image', 'depth' (magma, 0..max_depth m), 'uncertainty' (viridis of 1 - u,
        bright = unreliable), 'abs_rel_error' (|d - gt| / gt on GT pixels, 0..0.5).
    """
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    img = (image.detach().float().cpu() * s + m).clamp(0, 1)
    g = gt[0].detach().float().cpu()
    d = depth[0].detach().float().cpu()
    err = torch.where(g > 0, (d - g).abs() / g.clamp(min=1e-6), torch.zeros_like(g))
    return {'image': img, 'depth': colorize(d, max_depth),
            'uncertainty': colorize(1.0 - uncertainty[0], 1.0, 'viridis'),
            'abs_rel_error': colorize(err, 0.5, 'inferno')}


__all__ = ['Trainer', 'TrainingDivergedError', 'lr_at', 'setup_distributed', 'DistInfo',
           'SeededDataset', 'ResumableSampler', 'list_checkpoints', 'image_panels']
