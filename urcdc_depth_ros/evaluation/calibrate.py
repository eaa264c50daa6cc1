"""``urcdc-calibrate``: fit the uncertainty calibration on a bag with LiDAR, store it in the model.

::

    urcdc-calibrate --model model.onnx --bag calib_bag [--params-file config/depth.yaml]
        [--output-model model_calibrated.onnx] [--out calib_dir]
    urcdc-calibrate --model model.onnx --apply calib_dir/calibration.json [--output-model M]
    urcdc-calibrate --model model.onnx --show

The model runs over the bag's images exactly as in ``urcdc-bag-eval --model`` (same
estimator settings from ``--params-file``); for every pixel with LiDAR ground truth the raw head,
the predicted depth and the observed ``|error|`` are pooled and the table of
:mod:`urcdc_depth_ros.calibration` is fitted. The table goes into the model's metadata (ONNX
``metadata_props``, an engine's ``.json`` sidecar, a checkpoint's ``meta``), in place unless
``--output-model`` names a copy, and into ``--out/calibration.json``. Fit on frames you will not
evaluate on: the table records the frames it saw and ``urcdc-bag-eval`` warns on overlap.

Exit status 0 on success, 2 on a data or config error (too few pixels, a table that does not
match the model, an unreadable model or bag).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import replace

import numpy as np

from ..calibration import MIN_PIXELS, UncertaintyCalibration, fit_calibration
from ..config import ModelMeta
from ..errors import ConfigError, UrcdcDepthError
from ..inference.base import META_KEY
from ..metrics import calibration_error
from .bag_eval import evaluate_bag
from .bag_eval_cli import add_ground_truth_args, ground_truth_kwargs

logger = logging.getLogger(__name__)


def _kind(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext == '.onnx':
        return 'onnx'
    if ext in ('.engine', '.plan'):
        return 'engine'
    if ext in ('.pt', '.pth', '.ckpt'):
        return 'checkpoint'
    raise ConfigError(f'model {path!r}: unknown kind {ext!r}; give an .onnx, .engine/.plan '
                      '(with its .json sidecar) or .pt/.pth/.ckpt checkpoint')


def read_model_meta(path: str) -> ModelMeta:
    """:class:`ModelMeta` stored in a model file (ONNX, engine sidecar or checkpoint)."""
    if not os.path.isfile(path):
        raise ConfigError(f'model {path!r}: no such file')
    kind = _kind(path)
    if kind == 'onnx':
        from ..inference.tensorrt_build import read_onnx_meta
        return read_onnx_meta(path)
    if kind == 'engine':
        from ..inference.engine_cache import read_sidecar
        sidecar = read_sidecar(path)
        if not sidecar or 'meta' not in sidecar:
            raise ConfigError(f'engine {path!r} has no sidecar with model metadata')
        return ModelMeta.from_dict(sidecar['meta'])
    from ..model import read_checkpoint
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt.get('meta'), dict):
        raise ConfigError(f'checkpoint {path!r} carries no metadata; export it from a '
                          'urcdc-train checkpoint')
    return ModelMeta.from_dict(ckpt['meta'])


def model_calibration(path: str | None) -> UncertaintyCalibration | None:
    """The calibration stored in the model file ``path``; None without one (or unreadable)."""
    if not path:
        return None
    try:
        return read_model_meta(path).calibration()
    except UrcdcDepthError as exc:
        logger.debug('no calibration read from %s: %s', path, exc)
        return None


def write_model_meta(path: str, meta: ModelMeta, out_path: str | None = None) -> str:
    """Store ``meta`` in the model file ``path`` (or a copy at ``out_path``); returns the path."""
    meta.validate()
    kind = _kind(path)
    dst = out_path or path
    if kind == 'onnx':
        import onnx
        model = onnx.load(path, load_external_data=False)
        meta_json = json.dumps(meta.to_dict(), sort_keys=True)
        props = {p.key: p.value for p in model.metadata_props}
        props[META_KEY] = meta_json
        props['urcdc_meta_sha256'] = hashlib.sha256(meta_json.encode()).hexdigest()
        del model.metadata_props[:]
        for k, v in props.items():
            model.metadata_props.add(key=k, value=v)
        tmp = dst + '.tmp'
        onnx.save(model, tmp)
        os.replace(tmp, dst)
    elif kind == 'engine':
        from ..inference.engine_cache import read_sidecar, sidecar_path
        sidecar = read_sidecar(path) or {}
        sidecar['meta'] = meta.to_dict()
        if dst != path:
            shutil.copyfile(path, dst)
        tmp = sidecar_path(dst) + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(json.dumps(sidecar, indent=2, sort_keys=True) + '\n')
        os.replace(tmp, sidecar_path(dst))
    else:
        import torch

        from ..model import read_checkpoint
        ckpt = read_checkpoint(path)
        ckpt['meta'] = meta.to_dict()
        tmp = dst + '.tmp'
        torch.save(ckpt, tmp)
        os.replace(tmp, dst)
    return dst


def fit_on_bag(model_path: str, bags: list[str], params: dict | None = None,
               backend: str = 'onnxruntime', head_bins: int = 12, depth_bins: int = 8,
               min_pixels: int = MIN_PIXELS, **eval_kw) -> tuple[UncertaintyCalibration, dict]:
    """Run the model over ``bags`` and fit the table; returns (calibration, fit summary).

    ``params`` are node parameters (estimator settings); ``eval_kw`` go to
    :func:`~urcdc_depth_ros.evaluation.bag_eval.evaluate_bag` (topics, crop, range, ...).
    """
    from ..config import estimator_config_from_params
    from ..estimator import DepthEstimator

    params = dict(params or {})
    params['uncertainty'] = 'confidence'  # the raw head is what the table maps
    config = estimator_config_from_params(params)
    series: dict = {}
    with DepthEstimator.from_model(model_path, backend=backend, config=config) as est:
        meta = est.meta
        result = evaluate_bag(bags, None, estimator=est, write_report=False,
                              series_out=series, **eval_kw)
    if not result['uncertainty'].get('available'):
        raise ConfigError(f'{model_path!r} produced no uncertainty on the LiDAR pixels')
    pred, conf = series['unc_pred'], series['unc']
    abs_err = np.abs(pred.astype(np.float64) - np.asarray(series['unc_gt'], np.float64))
    cal = fit_calibration(conf, pred, abs_err, meta.variant, meta.max_depth,
                          head_bins=head_bins, depth_bins=depth_bins, min_pixels=min_pixels,
                          frame_keys=series['frame_keys'],
                          source=', '.join(os.path.basename(os.path.normpath(b)) for b in bags),
                          estimator={k: getattr(config, k) for k in (
                              'resize_mode', 'flip_tta', 'rescale_focal')})
    fitted = cal.expected_abs_error_m(conf, pred)
    summary = {'pixels': cal.n_pixels, 'frames': len(series['frame_keys']),
               'in_sample_calibration_error': calibration_error(abs_err, fitted),
               'mean_observed_abs_err_m': float(abs_err.mean()),
               'mean_predicted_m': float(fitted.mean())}
    return cal, summary


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``urcdc-calibrate``."""
    p = argparse.ArgumentParser(prog='urcdc-calibrate', description=__doc__.split('\n\n')[0])
    p.add_argument('--model', required=True, help='.onnx, .engine (+ sidecar) or .pt/.pth')
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument('--bag', nargs='+', help='calibration bag(s) with camera + LiDAR + TF')
    what.add_argument('--apply', metavar='CALIBRATION_JSON',
                      help='store a table written by an earlier run in the model')
    what.add_argument('--show', action='store_true', help='print the stored calibration')
    p.add_argument('--output-model', help='write the calibrated model here (default: in place)')
    p.add_argument('--out', help='folder for calibration.json (default: beside the model)')
    p.add_argument('--params-file', help='node parameters (estimator settings, as the node)')
    p.add_argument('--backend', default='onnxruntime', help='inference backend for --model')
    add_ground_truth_args(p)
    p.add_argument('--head-bins', type=int, default=12, help='bins along the head value')
    p.add_argument('--depth-bins', type=int, default=8, help='bins along the depth')
    return p


def _load_table(path: str) -> UncertaintyCalibration:
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f'calibration file {path!r} is unreadable ({exc})') from exc
    return UncertaintyCalibration.from_json(text, f'calibration file {path!r}')


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 2 on a data/config error (message logged)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        meta = read_model_meta(args.model)
        if args.show:
            cal = meta.calibration()
            print(json.dumps(cal.to_dict() if cal else None, indent=2))
            return 0
        if args.apply:
            cal = _load_table(args.apply)
            summary = {}
        else:
            from ..config import load_node_params
            params = load_node_params(args.params_file) if args.params_file else {}
            cal, summary = fit_on_bag(
                args.model, args.bag, params, backend=args.backend,
                head_bins=args.head_bins, depth_bins=args.depth_bins,
                **ground_truth_kwargs(args))
        cal.check_model(meta.variant, meta.max_depth, f'calibration for {args.model!r}')
        dst = write_model_meta(args.model, replace(meta, uncertainty_calibration=cal.to_json()),
                               args.output_model)
        out_dir = args.out or os.path.dirname(os.path.abspath(dst))
        os.makedirs(out_dir, exist_ok=True)
        table = os.path.join(out_dir, 'calibration.json')
        with open(table, 'w', encoding='utf-8') as f:
            json.dump({**cal.to_dict(), 'fit': summary}, f, indent=2)
    except UrcdcDepthError as exc:
        logger.error('%s', exc)
        return 2
    logger.info('calibration (%d pixels, %d frames of %s) stored in %s; table in %s%s',
                cal.n_pixels, cal.fitted_on.get('n_frames', 0), cal.fitted_on.get('source'),
                dst, table, ''.join(f'; {k} {v:.4g}' for k, v in summary.items()
                                    if isinstance(v, float)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
