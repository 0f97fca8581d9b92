"""Instance masks: COCO ``segmentation`` entries (polygons, uncompressed and compressed RLE) to per-instance
binary masks and back, and the boxes masks imply.

COCO writes an object's shape in one of three forms, all decoded by pycocotools:

- polygons: a list of ``[x1, y1, x2, y2, ...]`` lists (at least three points each), for ordinary objects;
- uncompressed RLE: ``{"size": [h, w], "counts": [run, run, ...]}`` (column-major runs), for crowd regions;
- compressed RLE: ``{"size": [h, w], "counts": "<string>"}``, as results files and LVIS write them.
"""
from typing import Any, Dict, List

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ['check_segmentation', 'decode_segmentation', 'encode_mask', 'boxes_from_masks']


def check_segmentation(segmentation: Any, height: int, width: int) -> None:
    """Raise ``ValueError`` saying what is wrong when ``segmentation`` is no COCO shape of an image of that size."""
    if isinstance(segmentation, list):
        if not segmentation:
            raise ValueError('segmentation is an empty polygon list')
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                    and all(isinstance(v, (int, float)) and np.isfinite(v) for v in polygon)):
                raise ValueError('a polygon must be a list of at least 3 points [x1, y1, x2, y2, ...], got '
                                 f'{str(polygon)[:60]}')
        return
    if not isinstance(segmentation, dict) or not {'size', 'counts'} <= set(segmentation):
        raise ValueError(f'segmentation must be polygons or an RLE {{"size", "counts"}}, got {str(segmentation)[:60]}')
    size, counts = segmentation['size'], segmentation['counts']
    if list(size) != [height, width]:
        raise ValueError(f'RLE size {size} is not the image size [{height}, {width}] ([height, width])')
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise ValueError(f'uncompressed RLE counts must be non-negative integers summing to {height * width} '
                             f'(height x width)')
    elif not isinstance(counts, (str, bytes)):
        raise ValueError(f'RLE counts must be a list of runs or a compressed string, got {type(counts).__name__}')


def _to_rle(segmentation: Any, height: int, width: int) -> Dict[str, Any]:
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation['counts'], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation['counts']
    return dict(size=list(segmentation['size']), counts=counts.encode() if isinstance(counts, str) else counts)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The ``(height, width)`` uint8 mask (1 inside) of a COCO ``segmentation`` (see :func:`check_segmentation`)."""
    check_segmentation(segmentation, height, width)
    return mask_utils.decode(_to_rle(segmentation, height, width)).astype(np.uint8)


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """A binary ``(H, W)`` mask as compressed COCO RLE with a JSON-ready string ``counts``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=[int(v) for v in rle['size']], counts=rle['counts'].decode('ascii'))


def boxes_from_masks(masks: np.ndarray) -> List[List[float]]:
    """Tight xyxy boxes (pixel edges) of ``(N, H, W)`` masks; an empty mask gives ``[0, 0, 0, 0]``."""
    boxes = []
    for mask in masks:
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        if len(rows) == 0:
            boxes.append([0.0, 0.0, 0.0, 0.0])
        else:
            boxes.append([float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)])
    return boxes
