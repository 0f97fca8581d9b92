"""Class colours: the Pascal VOC and Cityscapes palettes, and distinct generated colours for other class lists."""
from typing import List, Sequence, Union

import numpy as np

from .segmentation import CITYSCAPES_CLASSES, VOC_SEG_CLASSES

__all__ = ['voc_palette', 'color_palette', 'CITYSCAPES_PALETTE', 'IGNORE_COLOR']

# the trainId colours of the Cityscapes benchmark (cityscapesScripts' labels.py)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))
IGNORE_COLOR = (224, 224, 192)  # Pascal VOC's colour of its 255 ("void") pixels


def voc_palette(num_colors: int = 256) -> List[tuple]:
    """The Pascal VOC colour map: the bits of the class index spread over R, G and B."""
    colors = []
    for index in range(num_colors):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


def color_palette(class_names: Union[int, Sequence[str]]) -> List[tuple]:
    """One RGB colour per class: the standard VOC or Cityscapes palette for those class lists,
    otherwise distinct generated colours. A class named 'background' is black; every other class,
    class 0 included, gets a colour. None equals :data:`IGNORE_COLOR`."""
    names = [f'class_{i}' for i in range(class_names)] if isinstance(class_names, int) else list(class_names)
    if tuple(names) == VOC_SEG_CLASSES:
        return voc_palette(len(names))
    if tuple(names) == CITYSCAPES_CLASSES:
        return list(CITYSCAPES_PALETTE)
    rng = np.random.default_rng(3)
    colors = []
    for name in names:
        color = (0, 0, 0)
        while name != 'background' and (color == IGNORE_COLOR or max(color) < 60):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
        colors.append(color)
    return colors
