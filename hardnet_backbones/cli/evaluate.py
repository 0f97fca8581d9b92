"""Evaluate a trained checkpoint: COCO mAP / VOC AP50 (detection) or mIoU (segmentation), as JSON."""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from ..engine.config import ConfigError, load_config
from ..engine.trainer import evaluate
from .common import add_config_args

_logger = logging.getLogger('hardnet.evaluate')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Evaluate CHECKPOINT on the validation split of CONFIG. Detection: COCOeval AP, AP50, AP75, '
                    'APs/m/l, AR and VOC-style AP50. Segmentation: mIoU, per-class IoU, pixel accuracy. '
                    'Works under torchrun too (results gathered across processes).')
    add_config_args(parser)
    parser.add_argument('--checkpoint', required=True,
                        help='a training checkpoint (last.pth/best.pth) or a bare model state dict')
    parser.add_argument('--output', default=None,
                        help='metrics JSON file (default: <checkpoint folder>/eval_<checkpoint name>.json)')
    parser.add_argument('--visuals', default=None,
                        help='folder for predictions drawn on train.save_images validation images (default: none)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    output = args.output or str(Path(args.checkpoint).parent / f'eval_{Path(args.checkpoint).stem}.json')
    try:
        cfg = load_config(args.config, args.overrides)
        metrics = evaluate(cfg, args.checkpoint, output=output, visuals_dir=args.visuals)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        logging.basicConfig()
        _logger.error('%s', e)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
