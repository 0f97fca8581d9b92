"""Instance-id PNG masks (one value per object, 0 the background) to COCO instance annotations.

Datasets such as Penn-Fudan (``PedMasks/*_mask.png``) and Cityscapes (``gtFine/*_instanceIds.png``) store
objects as ids in a PNG, not as classes: read as semantic masks, object 3 would become class 3. This module
turns them into a COCO json with one RLE mask per object, which the detection datasets (and Mask R-CNN) read.

Encodings:

- ``ids``: every non-zero value is one object of the single class ``class_name`` (Penn-Fudan).
- ``cityscapes``: values of 1000 and above are objects, ``value // 1000`` their Cityscapes label id (24 person,
  26 car, ...); smaller values are regions without instances (road, sky, a crowd of cars) and give no object.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError
from ..utils.files import write_text_atomic
from ..utils.progress import progress_bar
from .image_io import IMAGE_SUFFIXES, read_image, read_mask
from .instance_masks import boxes_from_masks, encode_mask

__all__ = ['INSTANCE_ENCODINGS', 'CITYSCAPES_INSTANCE_CLASSES', 'instance_masks_to_coco', 'check_class_name']

INSTANCE_ENCODINGS = ('ids', 'cityscapes')

# the Cityscapes label ids that have instances, with their names (caravan and trailer are not evaluated there)
CITYSCAPES_INSTANCE_CLASSES = {24: 'person', 25: 'rider', 26: 'car', 27: 'truck', 28: 'bus', 29: 'caravan',
                               30: 'trailer', 31: 'train', 32: 'motorcycle', 33: 'bicycle'}

PathLike = Union[str, Path]


def _pairs(images_dir: Path, masks_dir: Path, mask_suffix: str) -> List[Tuple[Path, Path]]:
    images = sorted(p for p in images_dir.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f'no images under {images_dir}')
    pairs = [(img, masks_dir / img.relative_to(images_dir).with_name(f'{img.stem}{mask_suffix}.png'))
             for img in images]
    missing = [str(m) for _, m in pairs if not m.is_file()]
    if missing:
        raise FileNotFoundError(f'{len(missing)} of {len(pairs)} images have no mask, e.g. {missing[0]} '
                                f'(masks are <masks_dir>/<image stem><mask_suffix>.png; set the suffix)')
    return pairs


def check_class_name(name: str) -> None:
    """One class name: not empty, no surrounding spaces, no list punctuation (this tool writes one class)."""
    if not isinstance(name, str) or not name.strip() or name != name.strip() or any(c in name for c in ',[]{}'):
        raise ValueError(f'class name {name!r}: give one non-empty name without commas or brackets (with '
                         f'--encoding ids every object is of this one class; convert each class separately, or use '
                         f'--encoding cityscapes for Cityscapes ids)')


def _check_not_an_input(out_file: Path, pairs: List[Tuple[Path, Path]]) -> None:
    target = out_file.resolve()
    for path in (p for pair in pairs for p in pair):
        if path.resolve() == target:
            raise ValueError(f'the output {out_file} is one of the input files ({path}); write the json elsewhere, '
                             f'e.g. into an annotations/ folder')


def _objects(ids: np.ndarray, encoding: str) -> List[Tuple[int, int]]:
    """(value, category id) of every object in an id mask."""
    values = [int(v) for v in np.unique(ids) if v != 0]
    if encoding == 'ids':
        return [(v, 1) for v in values]
    return [(v, v // 1000) for v in values if v >= 1000 and v // 1000 in CITYSCAPES_INSTANCE_CLASSES]


def instance_masks_to_coco(
        images_dir: PathLike,
        masks_dir: PathLike,
        out_file: PathLike,
        encoding: str = 'ids',
        class_name: str = 'object',
        mask_suffix: str = '',
        progress: bool = True,
) -> Dict[str, Any]:
    """Write (atomically) and return a COCO json for the images under ``images_dir`` and their id masks.

    Args:
        images_dir: the images (sub-folders kept in ``file_name``, which is relative to this folder).
        masks_dir: the id masks, at the same relative paths, named ``<image stem><mask_suffix>.png``.
        out_file: the COCO json to write.
        encoding: ``ids`` or ``cityscapes`` (see the module docstring).
        class_name: the class of every object with ``encoding='ids'``.
        mask_suffix: e.g. ``_mask`` for Penn-Fudan, ``_gtFine_instanceIds`` with Cityscapes image stems
            stripped of ``_leftImg8bit`` (pass ``images_dir`` files named accordingly).
        progress: show a tqdm bar.

    Raises:
        FileNotFoundError: no images, or images without a mask. DataError: a mask of another size than its image,
        an image or mask that does not decode, or no object in any mask. ValueError: a class name that is empty
        or list-like, or ``out_file`` that is one of the inputs.
    """
    if encoding not in INSTANCE_ENCODINGS:
        raise ValueError(f'encoding must be one of {INSTANCE_ENCODINGS}, got {encoding!r}')
    check_class_name(class_name)
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    pairs = _pairs(images_dir, masks_dir, mask_suffix)
    _check_not_an_input(Path(out_file), pairs)
    categories: Sequence[Tuple[int, str]] = (
        [(1, class_name)] if encoding == 'ids' else sorted(CITYSCAPES_INSTANCE_CLASSES.items()))
    coco: Dict[str, Any] = dict(images=[], annotations=[], categories=[
        dict(id=cat_id, name=name) for cat_id, name in categories])
    for image_id, (image_path, mask_path) in enumerate(
            progress_bar(pairs, desc='masks', disable=not progress), start=1):
        ids = read_mask(mask_path)
        width, height = read_image(image_path).size  # decoded in full: a truncated image is refused here
        if ids.shape != (height, width):
            raise DataError(f'{mask_path}: the mask is {ids.shape[1]}x{ids.shape[0]} pixels but its image '
                            f'{image_path} is {width}x{height}; they must match')
        coco['images'].append(dict(id=image_id, file_name=image_path.relative_to(images_dir).as_posix(),
                                   width=width, height=height))
        for value, cat_id in _objects(ids, encoding):
            mask = ids == value
            (x1, y1, x2, y2), = boxes_from_masks(mask[None])
            coco['annotations'].append(dict(
                id=len(coco['annotations']) + 1, image_id=image_id, category_id=cat_id, iscrowd=0,
                bbox=[x1, y1, x2 - x1, y2 - y1], area=int(mask.sum()), segmentation=encode_mask(mask)))
    if not coco['annotations']:
        hint = ('values of 1000 and above, label id * 1000 + instance' if encoding == 'cityscapes'
                else 'one non-zero value per object')
        raise DataError(f'no object in any of the {len(pairs)} masks under {masks_dir} (encoding {encoding!r} '
                        f'expects {hint}); check --masks, --mask-suffix and --encoding')
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_file, json.dumps(coco))
    return coco
