"""Turn instance-id PNG masks (Penn-Fudan, Cityscapes instanceIds) into a COCO json with one RLE mask per object."""
import argparse
import logging
import sys
from typing import List, Optional

from ..data.instance_ids import INSTANCE_ENCODINGS, instance_masks_to_coco
from .common import USER_ERRORS, output_file, report_user_error

_logger = logging.getLogger('hardnet.instances_to_coco')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Read masks that hold one value per object (0 = background) and write COCO instance '
                    'annotations (boxes and RLE masks) that tools/train.py reads with data.format=coco, e.g. for '
                    'Mask R-CNN. Penn-Fudan: --images PennFudanPed/PNGImages --masks PennFudanPed/PedMasks '
                    '--mask-suffix _mask --class-name person.')
    parser.add_argument('--images', required=True, help='folder of the images (sub-folders are kept)')
    parser.add_argument('--masks', required=True,
                        help='folder of the id masks, at the images\' relative paths: <stem><suffix>.png')
    parser.add_argument('--out', type=output_file, required=True,
                        help='COCO json to write, e.g. data/pennfudan/annotations/train.json')
    parser.add_argument('--encoding', choices=INSTANCE_ENCODINGS, default='ids',
                        help='ids: every non-zero value is one object of --class-name; cityscapes: values >= 1000 '
                             'are objects of label id value // 1000 (person, car, ...), smaller values no object '
                             '(default: %(default)s)')
    parser.add_argument('--class-name', default='object',
                        help='the class of every object with --encoding ids (default: %(default)s)')
    parser.add_argument('--mask-suffix', default='',
                        help='what follows the image stem in a mask\'s name, e.g. _mask (default: none)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        coco = instance_masks_to_coco(args.images, args.masks, args.out, args.encoding, args.class_name,
                                      args.mask_suffix)
    except (*USER_ERRORS, ValueError) as e:
        return report_user_error(_logger, e)
    with_objects = len({a['image_id'] for a in coco['annotations']})
    _logger.info('%d images (%d without objects), %d objects -> %s', len(coco['images']),
                 len(coco['images']) - with_objects, len(coco['annotations']), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
