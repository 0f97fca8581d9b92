"""Classify images with a HarDNet: top-5 ImageNet classes with probabilities."""
import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import List, Optional

from ..inference.batching import expand_image_paths
from ..inference.classify import classify_images, create_classifier_model
from ..inference.trained import is_training_checkpoint, load_trained_model
from ..utils.files import write_text_atomic
from .common import USER_ERRORS, default_device, output_file, positive_int, report_user_error, torch_device

_logger = logging.getLogger('hardnet.classify')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Print the top-k classes of each image: ImageNet\'s for the published classifiers, a run\'s own '
                    'for a classification checkpoint of tools/train.py, each with its own preprocessing.')
    parser.add_argument('images', nargs='+',
                        help='image files, folders (their images) or glob patterns such as "photos/**/*.jpg"')
    parser.add_argument('--model', default='hardnet68',
                        help='timm model name, e.g. hardnet39ds, hardnet68ds, hardnet68, hardnet85 '
                             '(default: %(default)s)')
    parser.add_argument('--checkpoint', default=None,
                        help='local weights: a published-format file (base.N keys), or a classification run\'s '
                             'best.pth / last.pth (its model, classes and preprocessing; --model is then not used); '
                             'without it the published weights are downloaded (SHA-256 checked, cached)')
    parser.add_argument('--device', type=torch_device, default=default_device(),
                        help='torch device: cpu or cuda[:N] (default: %(default)s)')
    parser.add_argument('--topk', type=int, default=5, help='classes to show per image (default: %(default)s)')
    parser.add_argument('--batch-size', type=positive_int, default=8,
                        help='images per forward pass (default: %(default)s)')
    parser.add_argument('--output', type=output_file, default=None,
                        help='also write the predictions as JSON to this file')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        paths = expand_image_paths(args.images)
        if args.checkpoint and is_training_checkpoint(args.checkpoint):  # a run of tools/train.py: its own classes
            trained = load_trained_model(args.checkpoint, args.device, task='classification')
            model, class_names, transform = trained.model, trained.class_names, trained.eval_transform()
        else:
            model = create_classifier_model(args.model, args.checkpoint, args.device)
            class_names = transform = None
        results = classify_images(model, paths, topk=args.topk, class_names=class_names, batch_size=args.batch_size,
                                  progress=True, transform=transform)
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    for path, predictions in zip(paths, results):
        print(path)
        for rank, p in enumerate(predictions, 1):
            print(f'  {rank}. {p.probability:6.2%}  {p.name}  (class {p.index})')
    if args.output:
        write_text_atomic(args.output, json.dumps(
            {str(path): [asdict(p) for p in preds] for path, preds in zip(paths, results)}, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
