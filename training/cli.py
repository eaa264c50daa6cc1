"""Command-line entry points ``urcdc-train`` and ``urcdc-eval``.

``urcdc-train --config config/train_synthetic.yaml [key=value ...] [--check-data]``
    Trains (single process, or one process per GPU under ``torchrun``). Overrides are
    ``lr=1e-4`` or dotted ``data.input_height=352``. Re-running the same command resumes from
    the newest checkpoint in ``checkpoint_dir``. ``--check-data`` only checks the data set,
    lists every problem and exits 1 if there is any.

``urcdc-eval --checkpoint C [--config Y] [--split eval|FILE] [--flip-tta] [--out DIR]``
    Evaluates with the official protocol; logs a table, writes ``metrics.json`` and
    ``sparsification.png`` to DIR.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from urcdc_depth_ros.errors import UrcdcDepthError

logger = logging.getLogger(__name__)


def _setup_logging(verbose: bool = False) -> None:
    rank = os.environ.get('RANK', '0')
    logging.basicConfig(
        level=logging.DEBUG if verbose else (logging.INFO if rank == '0' else logging.WARNING),
        format=f'%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s')


def train_main(argv: list[str] | None = None) -> int:
    """``urcdc-train``; returns the exit status (0 ok, 1 data problems, 2 config/other error)."""
    parser = argparse.ArgumentParser(prog='urcdc-train', description=__doc__.split('\n\n')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='training YAML (config/train_*.yaml)')
    parser.add_argument('--check-data', action='store_true',
                        help='check the data set (every problem at once) and exit')
    parser.add_argument('-v', '--verbose', action='store_true')
    parser.add_argument('overrides', nargs='*', help='key=value or data.key=value')
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from .config import TrainConfig
    try:
        cfg = TrainConfig.load(args.config, args.overrides)
        if args.check_data:
            from .check_data import check_dataset
            problems = list(check_dataset(cfg.data))
            for problem in problems:
                logger.error('data problem: %s', problem)
            if problems:
                logger.error('%d data problem(s) found; fix them before training', len(problems))
                return 1
            logger.info('data OK: no problem found')
            return 0
        from .trainer import Trainer
        trainer = Trainer(cfg)
        try:
            summary = trainer.train()
        finally:
            trainer.close()
        logger.info('finished at step %d; last checkpoint %s; best %s', summary['global_step'],
                    summary['last_checkpoint'], summary['best'])
        return 0
    except UrcdcDepthError as exc:
        logger.error('%s: %s', type(exc).__name__, exc)
        return 2


def eval_main(argv: list[str] | None = None) -> int:
    """``urcdc-eval``; returns the exit status (0 ok, 2 error)."""
    parser = argparse.ArgumentParser(prog='urcdc-eval', description='Evaluate a checkpoint '
                                     '(KB crop, Garg crop, caps [1e-3, max_depth]).')
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--config', default=None,
                        help='training YAML (default: the one embedded in the checkpoint)')
    parser.add_argument('--split', default='eval',
                        help="'eval' (data.filenames_file_eval) or a filenames file")
    parser.add_argument('--flip-tta', action='store_true', help='flip test-time augmentation')
    parser.add_argument('--out', default=None, help='directory for metrics.json and the plot')
    parser.add_argument('--max-images', type=int, default=None)
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('-v', '--verbose', action='store_true')
    parser.add_argument('overrides', nargs='*', help='key=value or data.key=value')
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from .evaluate import evaluate_checkpoint, format_table
    try:
        result = evaluate_checkpoint(args.checkpoint, args.config, split=args.split,
                                     flip_tta=args.flip_tta, out_dir=args.out,
                                     device=args.device, max_images=args.max_images,
                                     overrides=args.overrides)
    except UrcdcDepthError as exc:
        logger.error('%s: %s', type(exc).__name__, exc)
        return 2
    sys.stdout.write(format_table(result) + '\n')  # the command's result, not a log line
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(train_main())
