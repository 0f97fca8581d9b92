"""Draw a trained detector's boxes on images (PNG files)."""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import torch

from ..image_io import read_image_array
from ..errors import CheckpointError
from ..tasks import load_trained_model
from ..visualize import draw_detections
from .common import USER_ERRORS, report_user_error

_logger = logging.getLogger('hardnet.detect')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Run a detector trained with tools/train.py on images and save them with boxes, '
                    'class names and scores drawn (<out-dir>/<image name>.png, plus detections.json).')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--checkpoint', required=True, help='training checkpoint (best.pth / last.pth)')
    parser.add_argument('--out-dir', default='runs/detect', help='output folder (default: %(default)s)')
    parser.add_argument('--score-threshold', type=float, default=0.3,
                        help='draw boxes scoring at least this (default: %(default)s)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='torch device (default: %(default)s)')
    return parser


@torch.inference_mode()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        model, cfg, class_names = load_trained_model(args.checkpoint, args.device)
        if cfg.task != 'detection':
            raise CheckpointError(f'{args.checkpoint} holds a {cfg.task} model, not a detector')
        report = {}
        for path in args.images:
            image = torch.from_numpy(read_image_array(path).copy()).permute(2, 0, 1).float().div(255)
            pred = model([image.to(args.device)])[0]
            keep = pred['scores'] >= args.score_threshold
            picture = draw_detections(image, pred['boxes'], pred['labels'], pred['scores'], class_names,
                                      args.score_threshold)
            target = out_dir / f'{Path(path).stem}.png'
            picture.save(target)
            report[path] = [dict(box=b, label=class_names[int(lbl) - 1], score=s) for b, lbl, s in zip(
                pred['boxes'][keep].tolist(), pred['labels'][keep].tolist(), pred['scores'][keep].tolist())]
            _logger.info('%s: %d detections -> %s', path, int(keep.sum()), target)
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    (out_dir / 'detections.json').write_text(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
