"""Generate the synthetic shapes dataset (COCO json boxes + PNG masks, or a Pascal VOC folder) for demos and tests."""
import argparse
import sys
from typing import List, Optional

from ..data.shapes import LAYOUTS, make_shapes_dataset
from .common import output_dir


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Write N images of coloured circles, rectangles and triangles on textured backgrounds, '
                    'with COCO detection annotations (annotations/<split>.json) and class-index masks '
                    '(masks/<split>/*.png), or with --layout voc a Pascal VOC folder (JPEGImages, Annotations, '
                    'SegmentationClass with 255 outlines, ImageSets). The same seed writes the same files.')
    parser.add_argument('--out', type=output_dir, default='data/shapes', help='output folder (default: %(default)s)')
    parser.add_argument('--train', type=int, default=240, help='training images (default: %(default)s)')
    parser.add_argument('--val', type=int, default=60, help='validation images (default: %(default)s)')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 128), metavar=('HEIGHT', 'WIDTH'),
                        help='image size in pixels (default: 128 128)')
    parser.add_argument('--max-shapes', type=int, default=4,
                        help='at most this many shapes per image (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    parser.add_argument('--layout', choices=LAYOUTS, default='coco',
                        help='coco: PNG images, COCO json, index masks; voc: a Pascal VOC folder with JPEG images, '
                             'XML boxes (VOC ids <split>_<n>) and palette masks; classification: 64 px crops of the '
                             'shapes in <split>/<class>/ folders, for the classification task (default: %(default)s)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    paths = make_shapes_dataset(args.out, {'train': args.train, 'val': args.val}, tuple(args.size),
                                args.max_shapes, args.seed, layout=args.layout)
    for split, path in paths.items():
        print(f'{split}: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
