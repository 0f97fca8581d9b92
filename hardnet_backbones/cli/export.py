"""Export a model to ONNX (and TorchScript) and validate each file against PyTorch."""
import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from ..deploy import (
    calibration_images, export_onnx, export_torchscript, quantize_to_onnx, quantized_node_count, validate_onnx,
    validate_torchscript, with_score_threshold, write_onnx_metadata)
from ..engine.task import create_task
from ..errors import ConfigError, user_message
from ..inference.batching import expand_image_paths
from ..inference.trained import load_trained_model
from ..models.registry import DEFAULT_NUM_CLASSES, get_model_entry
from ..utils.files import write_text_atomic
from .common import USER_ERRORS, output_dir, positive_int, report_user_error

_logger = logging.getLogger('hardnet.export')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Export to ONNX (dynamic batch and image size, opset >= 17) and TorchScript, then run the '
                    'ONNX file in onnxruntime and the TorchScript file in PyTorch against the original model. '
                    'Writes <output>/<name>.onnx, <name>.torchscript.pt and <name>.export.json.')
    parser.add_argument('--model', default=None,
                        help='timm HarDNet name (hardnet68, ...), detection builder (ssdlite320_hardnet39ds, ...) or '
                             'segmentation builder (fcn_hardnet68, ...); optional with a training --checkpoint')
    parser.add_argument('--checkpoint', default=None,
                        help='weights: for timm names a published/ours classifier file; otherwise a training '
                             'checkpoint from tools/train.py (model and classes come from it)')
    parser.add_argument('--features-only', action='store_true',
                        help='timm models: export the multi-scale feature extractor instead of the classifier')
    parser.add_argument('--out-indices', type=int, nargs='+', default=[0, 1, 2, 3, 4],
                        help='with --features-only: feature levels (0..4 = strides 2..32; default: all)')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes of a detection/segmentation model built without a checkpoint')
    parser.add_argument('--image-size', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'),
                        help='example input size in pixels (default: 224 224)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset, >= 17 (default: %(default)s)')
    parser.add_argument('--static', action='store_true', help='fixed input shape instead of dynamic axes')
    parser.add_argument('--no-torchscript', action='store_true', help='skip the TorchScript file')
    parser.add_argument('--int8', action='store_true',
                        help='also write <name>.int8.onnx: static int8 quantization by onnxruntime (per-channel '
                             'weights, activation ranges from --calibration images); measure its accuracy with '
                             'hardnet-evaluate --onnx before using it')
    parser.add_argument('--calibration', nargs='+', default=None, metavar='IMAGES',
                        help='with --int8: image files, folders or globs from the training data (required)')
    parser.add_argument('--calibration-images', type=positive_int, default=32, metavar='N',
                        help='with --int8: how many of the --calibration images to use, evenly spread '
                             '(default: %(default)s)')
    parser.add_argument('--validation-images', nargs='+', default=None, metavar='IMAGES',
                        help='detectors: image files, folders or globs to compare the exported files with PyTorch on '
                             '(up to 4 are used); default: the validation images of the checkpoint\'s run, where '
                             'they are at hand, else a random image. A detector is validated only when they give '
                             'detections to compare')
    parser.add_argument('--atol', type=float, default=1e-4, help='validation tolerance (default: %(default)s)')
    parser.add_argument('--output', type=output_dir, default='runs/export', help='output folder (default: %(default)s)')
    return parser


def _check_arguments(args) -> None:
    """What the arguments alone can tell, before any model is built."""
    if args.opset < 17:
        raise ConfigError(f'--opset {args.opset}: the exporter needs opset 17 or later')
    if args.int8 and not args.calibration:
        raise ConfigError('--int8 needs --calibration IMAGES (files, folders or globs from the training data)')
    if args.checkpoint is None and args.model is None:
        raise ConfigError('give --model (or a training --checkpoint)')


def _build(args):
    """(model, kind, name, class names or None, the run's config or None) from the arguments."""
    try:
        entry = get_model_entry(args.model) if args.model else None
    except ValueError as e:
        raise ConfigError(f'--model: {e}') from None
    if args.checkpoint and (entry is None or entry.task != 'classification'):
        trained = load_trained_model(args.checkpoint)
        return trained.model, trained.task, trained.config.model.name, trained.class_names, trained.config
    kwargs = {}
    if entry.task != 'classification':
        kwargs['num_classes'] = args.num_classes or DEFAULT_NUM_CLASSES[entry.task]
    elif args.checkpoint:
        kwargs = dict(pretrained=True, pretrained_cfg_overlay=dict(file=args.checkpoint))
    if args.features_only:
        if entry.task != 'classification':
            raise ConfigError(f'--features-only is for timm models; {args.model} is a {entry.task} model')
        kwargs.update(features_only=True, out_indices=tuple(args.out_indices))
    try:
        model = entry.build(**kwargs)
    except ValueError as e:
        raise ConfigError(f'--model {args.model}: {e}') from None
    kind = 'features' if args.features_only else entry.task
    return model, kind, f'{args.model}_features' if args.features_only else args.model, None, None


_VALIDATION_IMAGES = 4


def _validation_images(args, kind: str, config) -> Optional[List]:
    """Detectors: the images to validate the export on (``--validation-images``, else the run's validation data)."""
    if kind != 'detection':
        return None
    if args.validation_images:
        paths = expand_image_paths(args.validation_images)
        source = '--validation-images'
    elif config is not None:
        try:
            dataset = create_task(config).build_dataset(config.data.val_split, train=False)
        except (*USER_ERRORS, ValueError) as e:
            _logger.info('validating on a random image: the run\'s validation data is not at hand (%s); pass '
                         '--validation-images', user_message(e))
            return None
        paths = [record['file'] for record in dataset.records]
        source = f'the run\'s {config.data.val_split} split'
    else:
        return None
    images = calibration_images(paths, kind, count=_VALIDATION_IMAGES)
    _logger.info('validating on %d images from %s', len(images), source)
    return images


def _validate_at_threshold_zero(key: str, args, model, size, images, check: dict) -> dict:
    """A detector that finds nothing yet at its own score threshold: export a copy that keeps every detection and
    compare that (the same graph with another constant); the check says so."""
    lowered = with_score_threshold(model, 0.0)
    if lowered is None:
        return check
    with tempfile.TemporaryDirectory() as folder:
        if key == 'onnx':
            path = export_onnx(lowered, Path(folder) / 'threshold0.onnx', 'detection', size, args.opset,
                               dynamic=not args.static)
            again = validate_onnx(path, lowered, 'detection', size, args.atol, images=images)
        else:
            path = export_torchscript(lowered, Path(folder) / 'threshold0.pt', 'detection', size)
            again = validate_torchscript(path, lowered, 'detection', size, args.atol, images=images)
    if again.get('reason'):
        return check
    _logger.info('%s: no detection passes the model\'s score threshold on the validation images; compared a copy '
                 'exported with score threshold 0 instead', key)
    return dict(again, path=check['path'], score_threshold=0.0)


def _export_int8(args, paths: List[Path], model, kind: str, name: str, out: Path, size) -> dict:
    """Write <name>.int8.onnx calibrated on the --calibration images; its facts for the report."""
    inputs = calibration_images(paths, kind, model, args.calibration_images)
    path = quantize_to_onnx(model, out / f'{name}.int8.onnx', kind, inputs, size)
    _logger.info('int8: %s (%d quantized tensors, calibrated on %d images); measure its accuracy with '
                 'hardnet-evaluate --onnx %s', path, quantized_node_count(path), len(inputs), path)
    return dict(path=str(path), quantized_tensors=quantized_node_count(path), calibration_images=len(inputs))


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    out = Path(args.output)
    size = tuple(args.image_size)
    try:
        _check_arguments(args)
        calibration_paths = expand_image_paths(args.calibration) if args.int8 else []
        model, kind, name, class_names, config = _build(args)
        model.eval()
        images = _validation_images(args, kind, config)
        report = dict(model=name, kind=kind, image_size=list(size), opset=args.opset, dynamic=not args.static)
        onnx_path = export_onnx(model, out / f'{name}.onnx', kind, size, args.opset, dynamic=not args.static)
        metadata = {'class_names': json.dumps(class_names)} if class_names else {}
        if metadata:
            write_onnx_metadata(onnx_path, metadata)
        report['onnx'] = dict(path=str(onnx_path), **validate_onnx(
            onnx_path, model, kind, size, args.atol, batch=1 if args.static else 2, images=images))
        if report['onnx'].get('reason'):
            report['onnx'] = _validate_at_threshold_zero('onnx', args, model, size, images, report['onnx'])
        if not args.no_torchscript:
            ts_path = export_torchscript(model, out / f'{name}.torchscript.pt', kind, size)
            checked = validate_torchscript(ts_path, model, kind, size, args.atol, images=images)
            report['torchscript'] = dict(path=str(ts_path), **checked)
            if checked.get('reason'):
                report['torchscript'] = _validate_at_threshold_zero('torchscript', args, model, size, images,
                                                                    report['torchscript'])
        if args.int8:
            report['int8'] = _export_int8(args, calibration_paths, model, kind, name, out, size)
            if metadata:
                write_onnx_metadata(report['int8']['path'], metadata)
        write_text_atomic(out / f'{name}.export.json', json.dumps(report, indent=2))
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    ok = all(report[k]['ok'] for k in ('onnx', 'torchscript') if k in report)
    for key in ('onnx', 'torchscript'):
        if key in report:
            _log_validation(key, report[key])
    return 0 if ok else 1


def _log_validation(key: str, check: dict) -> None:
    compared = (f', {check["compared_boxes"]} boxes and {check["compared_masks"]} masks on {check["images"]} images'
                if 'compared_boxes' in check else '')
    if check.get('reason'):
        _logger.warning('%s: %s NOT VALIDATED: %s', key, check['path'], check['reason'])
    else:
        _logger.info('%s: %s (max abs diff %.2e%s) %s', key, check['path'], check['max_abs_diff'], compared,
                     'matches PyTorch' if check['ok'] else 'DOES NOT MATCH PyTorch')


if __name__ == '__main__':
    sys.exit(main())
