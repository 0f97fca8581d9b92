"""Detection datasets: COCO json and Pascal VOC xml, both evaluated through a pycocotools ``COCO``.

Each item is ``(image, target)``: a float ``(3, H, W)`` image in [0, 1] and a dict with ``boxes``
(``(N, 4)`` xyxy pixels), ``labels`` (``(N,)`` int64, 1..K, 0 is the background) and ``image_id``.
Annotations are validated when the dataset is created: malformed entries raise an error naming
the file and the annotation; degenerate boxes are dropped, boxes leaving the image are clipped,
crowd boxes (and VOC 'difficult' ones) are left out of training targets but kept, as ignored
regions, in the COCO ground truth used for evaluation.
"""
import contextlib
import io
import json
import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset

__all__ = ['CocoDetectionDataset', 'VOCDetectionDataset', 'VOC_CLASSES', 'collate_detection', 'coco_from_dict',
           'sample_seed']

_logger = logging.getLogger(__name__)

VOC_CLASSES = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
    'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

# transform(image=HWC uint8, bboxes=(N, 4) xyxy, labels=(N,)) -> dict with the same keys
DetectionTransform = Callable[..., Dict[str, Any]]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation seed of one sample: a pure function of the run seed, the epoch and the index."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2 ** 32)


def coco_from_dict(dataset: Dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` built from an in-memory dict (without its console chatter)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def collate_detection(batch: Sequence[Tuple[torch.Tensor, Dict[str, Any]]]) -> Tuple[List[torch.Tensor], List[Dict]]:
    """Keep images as a list: torchvision detectors take images of different sizes."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def _clip_box(box: Sequence[float], width: int, height: int) -> Optional[List[float]]:
    """xywh -> clipped xyxy, or None when nothing of positive area is left."""
    x, y, w, h = box
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 - x1 < 1e-3 or y2 - y1 < 1e-3:
        return None
    return [x1, y1, x2, y2]


class _DetectionDataset(Dataset):
    """Common loading/augmentation; subclasses fill ``records`` and ``coco``."""

    def __init__(self, transform: Optional[DetectionTransform] = None):
        self.transform = transform
        self.records: List[Dict[str, Any]] = []  # {'file', 'image_id', 'boxes', 'labels'}
        self.coco: COCO
        self.class_names: List[str] = []
        self.label_to_cat_id: Dict[int, int] = {}
        self.epoch = 0
        self.seed = 0

    @property
    def num_classes(self) -> int:
        """Classes including the background."""
        return len(self.class_names) + 1

    def set_epoch(self, epoch: int) -> None:
        """Augmentation depends only on (seed, epoch, index): runs resume and shard reproducibly."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _check_files(self, source: Path) -> None:
        missing = [str(r['file']) for r in self.records if not Path(r['file']).is_file()]
        if missing:
            shown = ', '.join(missing[:5]) + (f' ... ({len(missing)} in all)' if len(missing) > 5 else '')
            raise FileNotFoundError(f'{source}: image files not found: {shown}')

    def load_image(self, index: int) -> np.ndarray:
        path = self.records[index]['file']
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert('RGB'))
        except OSError as e:
            raise OSError(f'Cannot read image {path}: {e}') from e

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Dict[str, Any]]:
        record = self.records[index]
        image = self.load_image(index)
        boxes = np.asarray(record['boxes'], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(record['labels'], dtype=np.int64)
        if self.transform is not None:
            if hasattr(self.transform, 'set_random_seed'):
                self.transform.set_random_seed(sample_seed(self.seed, self.epoch, index))
            out = self.transform(image=image, bboxes=boxes, labels=labels)
            image = out['image']
            boxes = np.asarray(out['bboxes'], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out['labels'], dtype=np.int64)
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        target = dict(boxes=torch.from_numpy(boxes), labels=torch.from_numpy(labels), image_id=record['image_id'])
        return image, target


class CocoDetectionDataset(_DetectionDataset):
    """COCO-format detection data (``images``, ``annotations``, ``categories``; xywh boxes).

    Args:
        images_dir: folder the ``file_name`` entries are relative to.
        ann_file: COCO json file.
        transform: albumentations-style callable (see ``hardnet_backbones.data.transforms``).
        skip_empty: drop images without any usable box (training only; evaluation keeps all).
    """

    def __init__(
            self,
            images_dir: Union[str, Path],
            ann_file: Union[str, Path],
            transform: Optional[DetectionTransform] = None,
            skip_empty: bool = False,
    ):
        super().__init__(transform)
        ann_file = Path(ann_file)
        data = self._read_json(ann_file)
        categories = sorted(data['categories'], key=lambda c: c['id'])
        self.class_names = [c['name'] for c in categories]
        self.label_to_cat_id = {i + 1: c['id'] for i, c in enumerate(categories)}
        cat_to_label = {cat: label for label, cat in self.label_to_cat_id.items()}
        images = {img['id']: img for img in data['images']}
        per_image: Dict[Any, Dict[str, list]] = {i: dict(boxes=[], labels=[]) for i in images}
        dropped = 0
        for ann in data['annotations']:
            self._check_annotation(ann, images, cat_to_label, ann_file)
            if ann.get('iscrowd', 0):
                continue
            img = images[ann['image_id']]
            box = _clip_box(ann['bbox'], img['width'], img['height'])
            if box is None:
                dropped += 1
                continue
            per_image[ann['image_id']]['boxes'].append(box)
            per_image[ann['image_id']]['labels'].append(cat_to_label[ann['category_id']])
        if dropped:
            _logger.warning('%s: dropped %d degenerate boxes (zero area inside the image)', ann_file, dropped)
        for image_id, img in images.items():
            if skip_empty and not per_image[image_id]['boxes']:
                continue
            self.records.append(dict(
                file=Path(images_dir) / img['file_name'], image_id=image_id, **per_image[image_id]))
        for ann in data['annotations']:
            ann.setdefault('iscrowd', 0)
            ann.setdefault('area', float(ann['bbox'][2] * ann['bbox'][3]))
        self.coco = coco_from_dict(data)
        self._check_files(ann_file)

    @staticmethod
    def _read_json(path: Path) -> Dict[str, Any]:
        if not path.is_file():
            raise FileNotFoundError(f'COCO annotation file not found: {path}')
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f'{path} is not valid JSON: {e}') from e
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected a JSON object with images/annotations/categories')
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data.get(key), list):
                raise ValueError(f'{path}: missing or malformed "{key}" list (COCO format)')
        for img in data['images']:
            if not {'id', 'file_name', 'width', 'height'} <= set(img):
                raise ValueError(f'{path}: image entry {img} needs id, file_name, width and height')
        return data

    @staticmethod
    def _check_annotation(ann: Dict[str, Any], images: Dict, cat_to_label: Dict, path: Path) -> None:
        ann_id = ann.get('id', '?')
        bbox = ann.get('bbox')
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            raise ValueError(f'{path}: annotation {ann_id} has a malformed bbox {bbox!r} (expected [x, y, w, h])')
        if ann.get('image_id') not in images:
            raise ValueError(f'{path}: annotation {ann_id} refers to unknown image_id {ann.get("image_id")!r}')
        if ann.get('category_id') not in cat_to_label:
            raise ValueError(
                f'{path}: annotation {ann_id} has category_id {ann.get("category_id")!r} not in "categories"')


class VOCDetectionDataset(_DetectionDataset):
    """Pascal VOC layout: ``JPEGImages/``, ``Annotations/*.xml``, ``ImageSets/Main/<split>.txt``.

    'difficult' objects are excluded from training targets and ignored in evaluation.
    """

    def __init__(
            self,
            root: Union[str, Path],
            split: str = 'trainval',
            transform: Optional[DetectionTransform] = None,
            class_names: Sequence[str] = VOC_CLASSES,
    ):
        super().__init__(transform)
        root = Path(root)
        split_file = root / 'ImageSets' / 'Main' / f'{split}.txt'
        if not split_file.is_file():
            raise FileNotFoundError(f'VOC split file not found: {split_file}')
        self.class_names = list(class_names)
        self.label_to_cat_id = {i + 1: i + 1 for i in range(len(class_names))}
        name_to_label = {n: i + 1 for i, n in enumerate(class_names)}
        coco = dict(images=[], annotations=[], categories=[
            dict(id=i + 1, name=n) for i, n in enumerate(class_names)])
        for image_id, stem in enumerate(split_file.read_text().split()):
            record, image, anns = self._parse_xml(root / 'Annotations' / f'{stem}.xml', name_to_label, image_id)
            record['file'] = root / 'JPEGImages' / image['file_name']
            self.records.append(record)
            coco['images'].append(image)
            for ann in anns:
                ann['id'] = len(coco['annotations']) + 1
                coco['annotations'].append(ann)
        self.coco = coco_from_dict(coco)
        self._check_files(split_file)

    @staticmethod
    def _parse_xml(path: Path, name_to_label: Dict[str, int], image_id: int):
        try:
            root = ET.parse(path).getroot()
            size = root.find('size')
            width, height = int(size.find('width').text), int(size.find('height').text)
            file_name = root.find('filename').text
        except (ET.ParseError, OSError, AttributeError, TypeError, ValueError) as e:
            raise ValueError(f'{path}: malformed VOC annotation ({e})') from e
        record = dict(image_id=image_id, boxes=[], labels=[])
        anns = []
        for i, obj in enumerate(root.iter('object')):
            name = (obj.findtext('name') or '').strip()
            if name not in name_to_label:
                raise ValueError(f'{path}: object {i} has unknown class {name!r}')
            try:
                bb = obj.find('bndbox')
                x1, y1, x2, y2 = (float(bb.find(k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
            except (AttributeError, TypeError, ValueError) as e:
                raise ValueError(f'{path}: object {i} ({name}) has a malformed bndbox') from e
            x1 -= 1  # VOC pixel indices are 1-based and inclusive
            y1 -= 1
            box = _clip_box([x1, y1, x2 - x1, y2 - y1], width, height)
            if box is None:
                continue
            difficult = obj.findtext('difficult', '0').strip() == '1'
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append(dict(image_id=image_id, category_id=name_to_label[name], bbox=[box[0], box[1], w, h],
                             area=w * h, iscrowd=int(difficult)))
            if not difficult:
                record['boxes'].append(box)
                record['labels'].append(name_to_label[name])
        return record, dict(id=image_id, file_name=file_name, width=width, height=height), anns
