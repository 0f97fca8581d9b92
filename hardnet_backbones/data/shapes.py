"""A generated dataset of coloured circles, rectangles and triangles on textured backgrounds.

Layout written under ``root`` (deterministic for a given seed):

- ``images/<split>/<id>.png``: RGB images.
- ``masks/<split>/<id>.png``: class index per pixel (0 background, 1 circle, 2 rectangle, 3 triangle).
- ``annotations/<split>.json``: COCO annotations of the visible part of each shape: its box and its mask
  (``segmentation`` as compressed RLE), ``file_name`` relative to ``images/<split>/`` (the COCO layout).

``layout='classification'`` writes a crop around every shape of at least 8 px instead, in the ``ImageFolder``
layout the classification task reads: ``<split>/<circle|rectangle|triangle>/<image id>_<n>.png`` (64 x 64 px).

``layout='voc'`` writes the same kind of images as a Pascal VOC folder instead: ``JPEGImages/<id>.jpg``
(JPEG-compressed), ``Annotations/<id>.xml`` (1-based inclusive boxes; shapes under 8 px a side are
``difficult``, shapes touching the border ``truncated``), ``SegmentationClass/<id>.png`` (palette PNG, a
2-pixel band of 255 along every shape's outline as in VOC) and ``ImageSets/{Main,Segmentation}/<split>.txt``.
"""
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from ..utils.progress import progress_bar
from .instance_masks import encode_mask
from .palettes import voc_palette

__all__ = ['SHAPE_CLASSES', 'LAYOUTS', 'make_shapes_dataset']

LAYOUTS = ('coco', 'voc', 'classification')
CROP_SIZE = 64  # classification crops, pixels


SHAPE_CLASSES = ('circle', 'rectangle', 'triangle')


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour gradient with stripes and noise, so shapes are not found by colour alone."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = (x / width * rng.uniform(0.2, 1) + y / height * rng.uniform(0.2, 1))[..., None] / 2
    image = start + (end - start) * t
    period, angle = rng.uniform(6, 20), rng.uniform(0, np.pi)
    stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)[..., None]
    image += stripes * rng.uniform(5, 25) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_shape(rng: np.random.Generator, cls: int, height: int, width: int) -> np.ndarray:
    """Boolean mask of one shape of class ``cls`` (1..3) at a random place and size."""
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    size = rng.uniform(0.12, 0.35) * min(height, width)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    if cls == 1:
        draw.ellipse([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], fill=1)
    elif cls == 2:
        w, h = size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)
        draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=1)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        draw.polygon([(cx + size / 1.6 * np.cos(a), cy + size / 1.6 * np.sin(a)) for a in angles], fill=1)
    return np.asarray(canvas, dtype=bool)


def _make_sample(rng: np.random.Generator, height: int, width: int, max_shapes: int):
    image = _background(rng, height, width)
    instances = np.zeros((height, width), np.int32)  # instance id per pixel, later shapes on top
    classes: List[int] = []
    for _ in range(rng.integers(1, max_shapes + 1)):
        cls = int(rng.integers(1, len(SHAPE_CLASSES) + 1))
        mask = _draw_shape(rng, cls, height, width)
        if mask.sum() < 16:
            continue
        color = rng.integers(0, 256, 3)
        image[mask] = (0.85 * color + 0.15 * image[mask]).astype(np.uint8)
        classes.append(cls)
        instances[mask] = len(classes)
    semantic = np.zeros((height, width), np.uint8)
    boxes: List[Tuple[List[float], int, int, dict]] = []  # (xywh box, class, area, RLE mask) per visible shape
    for inst, cls in enumerate(classes, start=1):
        visible = instances == inst
        area = int(visible.sum())
        if area < 16:
            continue
        semantic[visible] = cls
        ys, xs = np.nonzero(visible)
        x1, y1 = float(xs.min()), float(ys.min())
        box = [x1, y1, float(xs.max()) + 1 - x1, float(ys.max()) + 1 - y1]
        boxes.append((box, cls, area, encode_mask(visible)))
    return image, semantic, boxes


def _voc_xml(stem: str, width: int, height: int, boxes) -> bytes:
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'shapes'
    ET.SubElement(root, 'filename').text = f'{stem}.jpg'
    size = ET.SubElement(root, 'size')
    for key, value in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, 'segmented').text = '1'
    for (x, y, w, h), cls, _, _ in boxes:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = SHAPE_CLASSES[cls - 1]
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        touches_border = x <= 0 or y <= 0 or x + w >= width or y + h >= height
        ET.SubElement(obj, 'truncated').text = str(int(touches_border))
        ET.SubElement(obj, 'difficult').text = str(int(min(w, h) < 8))
        box = ET.SubElement(obj, 'bndbox')
        # VOC pixel indices are 1-based and inclusive: the first column x is xmin x + 1, the last x + w - 1 is x + w
        for key, value in (('xmin', x + 1), ('ymin', y + 1), ('xmax', x + w), ('ymax', y + h)):
            ET.SubElement(box, key).text = str(int(value))
    return ET.tostring(root)


def _with_void_outlines(semantic: np.ndarray, width: int = 2) -> np.ndarray:
    """VOC-style masks: 255 ('void') on a band along the boundaries between classes."""
    padded = np.pad(semantic, 1, mode='edge')
    edge = np.zeros(semantic.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (1, 2), (2, 1)):
        edge |= padded[dy:dy + semantic.shape[0], dx:dx + semantic.shape[1]] != semantic
    for _ in range(width - 1):
        grown = np.pad(edge, 1)
        edge = edge | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
    out = semantic.copy()
    out[edge] = 255
    return out


def _write_voc_split(root: Path, split: str, samples: Iterable) -> Path:
    """The samples as ``<split>_<n>`` in a VOC folder; returns the ``ImageSets/Main`` split file."""
    stems = []
    for image_id, (image, semantic, boxes) in enumerate(samples, start=1):
        stem = f'{split}_{image_id:06d}'
        height, width = semantic.shape
        Image.fromarray(image).save(root / 'JPEGImages' / f'{stem}.jpg', quality=85)
        (root / 'Annotations' / f'{stem}.xml').write_bytes(_voc_xml(stem, width, height, boxes))
        mask = Image.fromarray(_with_void_outlines(semantic), mode='P')
        mask.putpalette([c for color in voc_palette(256) for c in color])
        mask.save(root / 'SegmentationClass' / f'{stem}.png')
        stems.append(stem)
    for sub in ('Main', 'Segmentation'):
        (root / 'ImageSets' / sub).mkdir(parents=True, exist_ok=True)
        (root / 'ImageSets' / sub / f'{split}.txt').write_text(''.join(f'{s}\n' for s in stems))
    return root / 'ImageSets' / 'Main' / f'{split}.txt'


def _write_coco_split(root: Path, split: str, samples: Iterable) -> Path:
    """The samples as ``images/<split>/<n>.png``, ``masks/<split>/<n>.png``; returns the COCO json."""
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    coco = dict(images=[], annotations=[], categories=[
        dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(SHAPE_CLASSES)])
    for image_id, (image, semantic, boxes) in enumerate(samples, start=1):
        name = f'{image_id:06d}.png'
        Image.fromarray(image).save(root / 'images' / split / name)
        Image.fromarray(semantic).save(root / 'masks' / split / name)
        height, width = semantic.shape
        coco['images'].append(dict(id=image_id, file_name=name, width=width, height=height))
        for bbox, cls, area, rle in boxes:
            coco['annotations'].append(dict(
                id=len(coco['annotations']) + 1, image_id=image_id, category_id=cls,
                bbox=bbox, area=area, iscrowd=0, segmentation=rle))
    path = root / 'annotations' / f'{split}.json'
    path.write_text(json.dumps(coco))
    return path


def make_shapes_dataset(
        root: Union[str, Path],
        splits: Dict[str, int] = None,
        image_size: Tuple[int, int] = (128, 128),
        max_shapes: int = 4,
        seed: int = 0,
        progress: bool = True,
        layout: str = 'coco',
) -> Dict[str, Path]:
    """Write the shapes dataset and return the annotation file of each split (COCO json, or the VOC split file).

    Args:
        root: output folder.
        splits: images per split, default ``{'train': 200, 'val': 50}``.
        image_size: ``(height, width)`` in pixels.
        max_shapes: at most this many shapes per image (at least one).
        seed: the same seed writes the same files.
        progress: show a tqdm bar.
        layout: 'coco' (PNG images, COCO json, index masks), 'voc' (a Pascal VOC folder) or 'classification'
            (crops of the shapes in class folders; the returned paths are the split folders), see above.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    splits = splits or {'train': 200, 'val': 50}
    root = Path(root)
    if layout == 'classification':
        import tempfile
        with tempfile.TemporaryDirectory() as scenes:
            annotations = make_shapes_dataset(scenes, splits, image_size, max_shapes, seed, progress)
            return {split: _write_crops(Path(scenes), root, split, path) for split, path in annotations.items()}
    height, width = image_size
    out = {}
    for split_index, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, split_index])
        if layout == 'voc':
            folders = [root / 'JPEGImages', root / 'Annotations', root / 'SegmentationClass']
        else:
            folders = [root / 'images' / split, root / 'masks' / split]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        samples = (_make_sample(rng, height, width, max_shapes)
                   for _ in progress_bar(range(count), desc=f'shapes/{split}', disable=not progress))
        write_split = _write_voc_split if layout == 'voc' else _write_coco_split
        out[split] = write_split(root, split, samples)
    return out


def _write_crops(scenes: Path, root: Path, split: str, ann_file: Path) -> Path:
    """Crops (15 % margin, ``CROP_SIZE`` px) of every shape of at least 8 px of a COCO split, one folder per class."""
    coco = json.loads(ann_file.read_text())
    files = {image['id']: image['file_name'] for image in coco['images']}
    names = {c['id']: c['name'] for c in coco['categories']}
    for name in names.values():
        (root / split / name).mkdir(parents=True, exist_ok=True)
    for n, ann in enumerate(coco['annotations']):
        x, y, w, h = ann['bbox']
        if max(w, h) < 8:
            continue
        pad = 0.15 * max(w, h)
        with Image.open(scenes / 'images' / split / files[ann['image_id']]) as image:
            crop = image.convert('RGB').crop((round(x - pad), round(y - pad), round(x + w + pad), round(y + h + pad)))
        crop.resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR).save(
            root / split / names[ann['category_id']] / f'{ann["image_id"]:05d}_{n:05d}.png')
    return root / split
