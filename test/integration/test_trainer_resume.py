"""Exact resume, checkpoint hygiene and NaN handling of the trainer (nano07, 64x64, CPU)."""
from __future__ import annotations

import os

import pytest
import torch
from trainer_helpers import params_of, TinyDepthSet, tiny_config

from urcdc_depth_ros.model import load_weights, read_checkpoint
from urcdc_training.trainer import list_checkpoints, Trainer, TrainingDivergedError


class _Killed(Exception):
    pass


class _KilledAt(Trainer):
    """Dies (like a SIGKILL between steps) when about to run optimiser step ``kill_at``."""

    kill_at = -1

    def train_step(self, batch, parity_step):
        if self.global_step == self.kill_at:
            raise _Killed
        return super().train_step(batch, parity_step)


def test_four_steps_straight_equal_two_steps_kill_resume_two_steps(tmp_path):
    # 6 samples, batch 2: 3 steps per epoch, so the kill at step 2 is mid-epoch and the
    # resumed run crosses an epoch boundary. Drop path and coupling skips stay ON, so the
    # model's RNG stream must be restored exactly too.
    straight = Trainer(tiny_config(tmp_path / 'a', checkpoint_every=4),
                       train_dataset=TinyDepthSet())
    straight.train()
    expected = params_of(straight.model)

    cfg = tiny_config(tmp_path / 'b', checkpoint_every=2)
    first = _KilledAt(cfg, train_dataset=TinyDepthSet())
    first.kill_at = 3
    with pytest.raises(_Killed):
        first.train()
    assert [s for s, _ in list_checkpoints(cfg.checkpoint_dir)] == [2]

    resumed = Trainer(cfg, train_dataset=TinyDepthSet())  # same command again: resume=auto
    assert (resumed.global_step, resumed.epoch, resumed.batch_in_epoch) == (2, 0, 2)
    summary = resumed.train()
    assert summary['global_step'] == 4 and resumed.epoch == 1
    got = params_of(resumed.model)
    worst = max(float((expected[k] - got[k]).abs().max()) for k in expected)
    assert worst <= 1e-6, f'resumed run differs from the straight run by {worst}'
    moved = max(float((expected[k] - v).abs().max())
                for k, v in params_of(Trainer(
                    tiny_config(tmp_path / 'c', resume='never'),
                    train_dataset=TinyDepthSet()).model).items())
    assert moved > 1e-5, 'training did not change the parameters at all'


def test_checkpoints_keep_last_n_with_config_beside_and_meta(tmp_path):
    cfg = tiny_config(tmp_path, checkpoint_every=1, keep_last=2)
    Trainer(cfg, train_dataset=TinyDepthSet()).train()
    assert [s for s, _ in list_checkpoints(cfg.checkpoint_dir)] == [3, 4]
    assert os.path.isfile(os.path.join(cfg.checkpoint_dir, 'train_config.yaml'))
    assert not [f for f in os.listdir(cfg.checkpoint_dir) if f.startswith('.tmp')]
    ckpt = read_checkpoint(os.path.join(cfg.checkpoint_dir, 'ckpt_step00000004.pt'))
    meta = ckpt['meta']
    assert (meta['variant'], meta['max_depth'], meta['focal_px']) == ('nano07', 80.0, 721.5377)
    assert ckpt['trainer']['global_step'] == 4
    assert 'variant: nano07' in ckpt['train_config']


def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, checkpoint_every=1, max_steps=2)
    Trainer(cfg, train_dataset=TinyDepthSet()).train()
    newest = list_checkpoints(cfg.checkpoint_dir)[-1][1]
    with open(newest, 'r+b') as f:
        f.truncate(100)
    resumed = Trainer(cfg, train_dataset=TinyDepthSet())
    assert resumed.global_step == 1


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, checkpoint_every=2, max_steps=6)
    trainer = Trainer(cfg, train_dataset=TinyDepthSet())
    calls = {'n': 0}

    def poison(module, inputs, output):
        calls['n'] += 1
        return output * float('nan') if calls['n'] == 4 else output

    # the Transformer depth head: the 4th training forward (global step 3) yields NaN depth
    trainer.model.disp_head1.register_forward_hook(poison)
    with pytest.raises(TrainingDivergedError, match='global step 3') as info:
        trainer.train()
    assert 'ckpt_step00000002.pt' in str(info.value)
    assert [s for s, _ in list_checkpoints(cfg.checkpoint_dir)] == [2]
    good = read_checkpoint(os.path.join(cfg.checkpoint_dir, 'ckpt_step00000002.pt'))
    assert all(torch.isfinite(v).all() for v in good['model'].values() if v.is_floating_point())
    # nothing non-finite reached the parameters either
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    load_weights(trainer.model, good)


def test_resume_from_a_best_checkpoint_without_rng_state(tmp_path):
    cfg = tiny_config(tmp_path / 'run', checkpoint_every=2, max_steps=2)
    Trainer(cfg, train_dataset=TinyDepthSet()).train()
    ckpt = read_checkpoint(list_checkpoints(cfg.checkpoint_dir)[-1][1])
    ckpt['trainer']['rng'] = []  # what best_<metric>.pt files hold
    best = tmp_path / 'best_abs_rel.pt'
    torch.save(ckpt, best)
    resumed = Trainer(tiny_config(tmp_path / 'run2', resume=str(best), max_steps=3),
                      train_dataset=TinyDepthSet())
    assert resumed.global_step == 2
    assert resumed.train()['global_step'] == 3
