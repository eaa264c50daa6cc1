"""Odd steps update the uncertainty heads as the official multiply-by-zero loss does."""
from __future__ import annotations

import copy

import torch
from trainer_helpers import TinyDepthSet, tiny_config

from urcdc_training import losses as L
from urcdc_training.trainer import Trainer

STEPS = 4  # even, odd, even, odd


def _batches(ds):
    torch.manual_seed(0)  # reading an item draws from the global RNG: read each batch once
    out = []
    for step in range(STEPS):
        items = [ds[step % len(ds)]]
        out.append({'image': torch.stack([i['image'] for i in items]),
                    'depth': torch.stack([i['depth'] for i in items])})
    return out


def _reference_run(model, batches, lr, min_depth, fill: bool):
    """The official form: every loss in the graph, switched off by a factor 0 (or dropped).

    ``fill``: as official train.py, ``m1 * (...) + m2 * (...)`` and ``optimizer.zero_grad()``
    keeping zero tensors (PyTorch 1.x), so parameters a step does not reach (the heads on odd
    steps, a coupling unit skipped at random) still get a zero-gradient Adam step. Otherwise
    the terms are dropped and gradients set to None: Adam skips what the step did not reach.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(STEPS):
        batch = batches[step]
        torch.manual_seed(100 + step)
        out = model(batch['image'])
        ls = L.compute_losses(out.depth, out.uncertainty, out.depth_cnn, out.uncertainty_cnn,
                              batch['depth'], min_depth)
        m1, m2 = (1.0, 0.0) if step % 2 == 0 else (0.0, 1.0)
        if fill:
            total = m1 * (ls['loss1'] + ls['loss2'] + ls['loss5'] + ls['loss6']) \
                + m2 * (ls['loss3'] + ls['loss4'])
        else:  # the dropped-terms form whose heads Adam skips on odd steps
            total = L.total_loss(ls, step)
        opt.zero_grad(set_to_none=not fill)
        total.backward()
        opt.step()
    return opt


def test_odd_steps_match_the_official_multiply_by_zero_over_alternating_steps(tmp_path):
    cfg = tiny_config(tmp_path / 'run', lr=1e-3, end_lr_ratio=1.0, max_steps=STEPS)
    ds = TinyDepthSet(n=8)
    trainer = Trainer(cfg, train_dataset=ds)
    start = copy.deepcopy(trainer.model)
    reference, dropped = copy.deepcopy(start), copy.deepcopy(start)
    batches = _batches(ds)
    for step in range(STEPS):
        trainer.set_lr()
        torch.manual_seed(100 + step)
        trainer.train_step(batches[step], step)
    ref_opt = _reference_run(reference, batches, 1e-3, cfg.loss_min_depth_m(), fill=True)
    _reference_run(dropped, batches, 1e-3, cfg.loss_min_depth_m(), fill=False)

    ours = dict(trainer.model.named_parameters())
    ref = dict(reference.named_parameters())
    worst = max(float((ours[k] - ref[k]).detach().abs().max()) for k in ref)
    assert worst < 1e-5, f'largest parameter difference to the reference {worst:.3g}'
    # Adam stepped every parameter on every step, the heads included
    counts = {int(s['step']) for s in trainer.optimizer.state.values()}
    assert counts == {STEPS}
    assert {int(s['step']) for s in ref_opt.state.values()} == {STEPS}
    # the test can fail: dropping the terms leaves the heads behind by a visible margin
    head = [k for k in ref if 'uncer' in k]
    assert head, 'no uncertainty-head parameter found by name'
    drop = dict(dropped.named_parameters())
    gap = max(float((drop[k] - ref[k]).detach().abs().max()) for k in head)
    assert gap > 100 * max(worst, 1e-9)
