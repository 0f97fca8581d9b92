"""Evaluate a trained checkpoint: COCO mAP / VOC AP50 (detection) or mIoU (segmentation), as JSON."""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from ..deploy import OnnxRuntimeModel
from ..engine.config import load_config
from ..engine.trainer import evaluate
from .common import (
    USER_ERRORS, add_config_args, add_precision_arg, output_dir, output_file, positive_int, precision_optimizer,
    report_user_error)

_logger = logging.getLogger('hardnet.evaluate')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Evaluate CHECKPOINT on the validation split of CONFIG (default: the config stored in the '
                    'checkpoint, with any --set overrides applied, e.g. --set data.root=/data/voc). '
                    'Detection: COCOeval AP, AP50, AP75, APs/m/l, AR and VOC-style AP50. '
                    'Segmentation: mIoU, per-class IoU, pixel accuracy. '
                    'Works under torchrun too (results gathered across processes).')
    add_config_args(parser, required=False)
    parser.add_argument('--checkpoint', required=True,
                        help='a training checkpoint (last.pth/best.pth; without CONFIG its stored config is used) '
                             'or a bare model state dict (needs CONFIG)')
    parser.add_argument('--split', default=None,
                        help='split to evaluate (default: data.val_split); only this split is read')
    parser.add_argument('--save-predictions', type=output_dir, default=None, metavar='DIR',
                        help='also save the predictions: DIR/detections_coco.json (COCO results with the '
                             'dataset\'s category ids; with RLE masks from instance segmenters) or one palette '
                             'PNG class mask per image')
    parser.add_argument('--onnx', default=None, metavar='FILE',
                        help='evaluate this ONNX file exported from CHECKPOINT (hardnet-export, e.g. --int8) in '
                             'onnxruntime instead of the PyTorch model: the accuracy a deployed file really has')
    parser.add_argument('--output', type=output_file, default=None,
                        help='metrics JSON file (default: <checkpoint folder>/eval_<checkpoint name>.json, or '
                             'eval_<onnx file name>.json with --onnx)')
    parser.add_argument('--visuals', type=output_dir, default=None,
                        help='folder for predictions drawn on train.save_images validation images (default: none)')
    parser.add_argument('--batch-size', type=positive_int, default=None,
                        help='images per batch (default: the run\'s train.batch_size). The metrics do not depend on '
                             'it: detectors that pad a batch to its largest image (Faster / Mask R-CNN, RetinaNet, '
                             'FCOS) and segmenters are evaluated one image per batch whatever it is; SSDs take it')
    add_precision_arg(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    evaluated = Path(args.onnx).name.replace('.', '_') if args.onnx else Path(args.checkpoint).stem
    output = args.output or str(Path(args.checkpoint).parent / f'eval_{evaluated}.json')
    try:
        cfg = load_config(args.config, args.overrides) if args.config is not None else None
        metrics = evaluate(cfg, args.checkpoint, output=output, visuals_dir=args.visuals,
                           predictions_dir=args.save_predictions, split=args.split,
                           overrides=args.overrides if cfg is None else (), onnx=args.onnx,
                           open_onnx=OnnxRuntimeModel, optimize=precision_optimizer(args),
                           batch_size=args.batch_size)
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
