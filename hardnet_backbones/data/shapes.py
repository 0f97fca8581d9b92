"""A generated dataset of coloured circles, rectangles and triangles on textured backgrounds.

Layout written under ``root`` (deterministic for a given seed):

- ``images/<split>/<id>.png``: RGB images.
- ``masks/<split>/<id>.png``: class index per pixel (0 background, 1 circle, 2 rectangle, 3 triangle).
- ``annotations/<split>.json``: COCO detection annotations (boxes of the visible part of each shape),
  ``file_name`` relative to ``images/<split>/`` (the COCO layout).
"""
import json
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

__all__ = ['SHAPE_CLASSES', 'make_shapes_dataset']

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
    boxes: List[Tuple[List[float], int, int]] = []
    for inst, cls in enumerate(classes, start=1):
        visible = instances == inst
        area = int(visible.sum())
        if area < 16:
            continue
        semantic[visible] = cls
        ys, xs = np.nonzero(visible)
        x1, y1 = float(xs.min()), float(ys.min())
        boxes.append(([x1, y1, float(xs.max()) + 1 - x1, float(ys.max()) + 1 - y1], cls, area))
    return image, semantic, boxes


def make_shapes_dataset(
        root: Union[str, Path],
        splits: Dict[str, int] = None,
        image_size: Tuple[int, int] = (128, 128),
        max_shapes: int = 4,
        seed: int = 0,
        progress: bool = True,
) -> Dict[str, Path]:
    """Write the shapes dataset and return the COCO json path of each split.

    Args:
        root: output folder.
        splits: images per split, default ``{'train': 200, 'val': 50}``.
        image_size: ``(height, width)`` in pixels.
        max_shapes: at most this many shapes per image (at least one).
        seed: the same seed writes the same files.
        progress: show a tqdm bar.
    """
    splits = splits or {'train': 200, 'val': 50}
    root = Path(root)
    height, width = image_size
    out = {}
    for split_index, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, split_index])
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'masks' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations').mkdir(parents=True, exist_ok=True)
        coco = dict(images=[], annotations=[], categories=[
            dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(SHAPE_CLASSES)])
        for image_id in tqdm(range(1, count + 1), desc=f'shapes/{split}', disable=not progress):
            image, semantic, boxes = _make_sample(rng, height, width, max_shapes)
            name = f'{image_id:06d}.png'
            Image.fromarray(image).save(root / 'images' / split / name)
            Image.fromarray(semantic).save(root / 'masks' / split / name)
            coco['images'].append(dict(id=image_id, file_name=name, width=width, height=height))
            for bbox, cls, area in boxes:
                coco['annotations'].append(dict(
                    id=len(coco['annotations']) + 1, image_id=image_id, category_id=cls,
                    bbox=bbox, area=area, iscrowd=0))
        path = root / 'annotations' / f'{split}.json'
        path.write_text(json.dumps(coco))
        out[split] = path
    return out
