"""Run a trained segmentation model on images: class-index masks, colour overlays, per-class shares."""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..data.image_io import read_image_array
from ..data.palettes import color_palette
from ..inference.results import segmentation_of
from ..inference.windows import SEGMENT_MODES, segment_logits
from ..models.layers import MIN_INPUT_SIZE
from ..utils.files import write_atomic, write_text_atomic
from ..utils.progress import progress_bar
from ..visualization.draw import mask_to_png
from .common import USER_ERRORS, add_prediction_args, output_file, positive_int, prepare_prediction, report_user_error

_logger = logging.getLogger('hardnet.segment')


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or 'out of memory' in str(error) or "can't allocate memory" in str(error)


MAX_WINDOW = 4096  # a window's logits for a 21-class model already take 1.4 GB at this size


def window_side(text: str) -> int:
    """argparse type: a window side the models take and memory holds."""
    value = int(text)
    if not MIN_INPUT_SIZE <= value <= MAX_WINDOW:
        raise argparse.ArgumentTypeError(f'must be {MIN_INPUT_SIZE} to {MAX_WINDOW} pixels, got {value}')
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Run a segmentation model trained with tools/train.py (FCN, DeepLabV3, LR-ASPP, FC-HarDNet-70) '
                    'on images. Writes <out-dir>/<name>.png: the class of every pixel as a palette PNG (pixel '
                    'values are class indices, colours the dataset\'s palette), and <name>_overlay.png: the '
                    'classes blended over the image.')
    add_prediction_args(parser, 'runs/segment')
    parser.add_argument('--mode', choices=SEGMENT_MODES, default='whole',
                        help='whole: each image at its own size in one pass (the models are fully convolutional); '
                             'slide: average over windows of the training crop size (data.crop_size) overlapping '
                             'by a third, for images far larger than the training crops (default: %(default)s)')
    parser.add_argument('--window', type=window_side, nargs=2, default=None, metavar=('H', 'W'),
                        help=f'window of --mode slide, {MIN_INPUT_SIZE} to {MAX_WINDOW} pixels a side (default: the '
                             f'run\'s data.crop_size)')
    parser.add_argument('--batch-size', type=positive_int, default=4,
                        help='windows per forward pass in --mode slide (default: %(default)s)')
    parser.add_argument('--output-json', type=output_file, default=None,
                        help='also write, per image, its size, the mode and the share of pixels of every class')
    return parser


@torch.inference_mode()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    path = None
    try:
        paths, trained, out_dir = prepare_prediction(args, 'segmentation')
        window = tuple(args.window or trained.config.data.crop_size)
        palette = color_palette(trained.class_names)
        ignore = trained.config.data.ignore_index
        report: Dict[str, Any] = {}
        for path in progress_bar(paths, desc='segment', unit='image'):
            raw = read_image_array(path)
            logits = segment_logits(trained.model, trained.preprocess(raw).to(trained.device), args.mode, window,
                                    args.batch_size)
            result = segmentation_of(raw, logits, trained.class_names, ignore)
            write_atomic(out_dir / f'{path.stem}.png',
                         lambda f: mask_to_png(result.classes, palette).save(f, format='PNG'))
            write_atomic(out_dir / f'{path.stem}_overlay.png', lambda f: result.overlay.save(f, format='PNG'))
            report[str(path)] = dict(width=raw.shape[1], height=raw.shape[0], mode=args.mode,
                                     class_shares=result.shares)
        if args.output_json:
            Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(args.output_json, json.dumps(report, indent=2))
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    except (RuntimeError, MemoryError) as e:
        if not _out_of_memory(e):
            raise
        _logger.error('out of memory on %s: use --mode slide (with a smaller --window) or --device cpu', path)
        return 2
    _logger.info('%d images (%s mode) -> %s', len(paths), args.mode, out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
