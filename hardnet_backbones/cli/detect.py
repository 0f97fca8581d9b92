"""Run a trained detector on images: boxes drawn on each image, detections as JSON and COCO results."""
import argparse
import json
import logging
import sys
from typing import Any, Dict, List, Optional

import torch

from ..data.image_io import read_image_array
from ..evaluation.detection import CONFIDENT_SCORE, predictions_to_coco
from ..inference.batching import batched
from ..inference.results import detections_of
from ..utils.files import write_atomic, write_text_atomic
from ..utils.progress import progress_bar
from .common import USER_ERRORS, add_prediction_args, positive_int, prepare_prediction, probability, report_user_error

_logger = logging.getLogger('hardnet.detect')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Run a detector trained with tools/train.py on images. Writes <out-dir>/<image name>.png '
                    '(boxes, class names, scores drawn; instance segmenters: masks too), detections.json (per '
                    'image: box, label, score), detections_coco.json (COCO results with the dataset\'s category '
                    'ids, for pycocotools loadRes; with RLE "segmentation" masks from instance segmenters) and '
                    'images.json (the image ids used there).')
    add_prediction_args(parser, 'runs/detect')
    parser.add_argument('--score-threshold', type=probability, default=CONFIDENT_SCORE,
                        help='keep and draw boxes scoring at least this (default: %(default)s)')
    parser.add_argument('--batch-size', type=positive_int, default=4,
                        help='images per forward pass (default: %(default)s)')
    return parser


@torch.inference_mode()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        paths, trained, out_dir = prepare_prediction(args, 'detection')
        report: Dict[str, List[Dict[str, Any]]] = {}
        coco_results: List[Dict[str, Any]] = []
        images = []
        with progress_bar(total=len(paths), desc='detect', unit='image') as bar:
            for chunk in batched(paths, args.batch_size):
                tensors = [trained.preprocess(read_image_array(p)) for p in chunk]
                outputs = trained.model([t.to(trained.device) for t in tensors])
                for path, image, pred in zip(chunk, tensors, outputs):
                    image_id = len(images) + 1
                    images.append(dict(id=image_id, file_name=str(path), width=image.shape[2], height=image.shape[1]))
                    found = detections_of(image, pred, trained.class_names, args.score_threshold)
                    write_atomic(out_dir / f'{path.stem}.png', lambda f: found.picture.save(f, format='PNG'))
                    report[str(path)] = found.rows
                    coco_results += predictions_to_coco([image_id], [found.kept], trained.category_ids)
                    bar.update(1)
        write_text_atomic(out_dir / 'detections.json', json.dumps(report, indent=2))
        write_text_atomic(out_dir / 'detections_coco.json', json.dumps(coco_results))
        write_text_atomic(out_dir / 'images.json', json.dumps(images, indent=2))
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    _logger.info('%d images, %d detections >= %.2f -> %s', len(paths), len(coco_results), args.score_threshold, out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
