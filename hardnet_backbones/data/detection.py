"""Detection datasets: COCO json and Pascal VOC xml, both evaluated through a pycocotools ``COCO``.

Each item is ``(image, target)``: a float ``(3, H, W)`` image in [0, 1] and a dict with ``boxes``
(``(N, 4)`` xyxy pixels), ``labels`` (``(N,)`` int64, 1..K, 0 is the background) and ``image_id``; with
``masks=True`` (COCO data with ``segmentation``, for instance segmentation) also ``masks`` (``(N, H, W)`` uint8,
one binary mask per object). Augmentation moves masks with the image; the boxes of masked objects are then
the tight boxes of their masks, and objects whose mask left the image are dropped.

Annotations are validated when the dataset is created: malformed entries raise an error naming the
file and the entry. One box policy holds for training targets and evaluation ground truth alike:
boxes leaving the image are clipped to it; boxes with nothing left (zero area, or outside the image)
are dropped from training targets and marked ignored (``iscrowd``) in the evaluation ground truth,
so they never count as missed objects. Crowd boxes (and VOC 'difficult' ones) are likewise left out
of training targets and ignored in evaluation. Images are decoded by
:func:`hardnet_backbones.data.image_io.read_image` (EXIF orientation, 16-bit, palette...) and must have
the size their annotation states.
"""
import contextlib
import io
import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from pycocotools.coco import COCO

from ..errors import DataError
from .coco_json import read_coco_json
from .image_io import read_image_array
from .instance_masks import boxes_from_masks, check_segmentation, decode_segmentation
from .sampling import AugmentedDataset, EpochIndex

__all__ = ['CocoDetectionDataset', 'VOCDetectionDataset', 'VOC_CLASSES', 'collate_detection', 'coco_from_dict']

_logger = logging.getLogger(__name__)

VOC_CLASSES = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
    'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

# transform(image=HWC uint8, bboxes=(N, 4) xyxy, labels=(N,)) -> dict with the same keys
DetectionTransform = Callable[..., Dict[str, Any]]
PathLike = Union[str, Path]


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


def _ground_truth_entry(ann: Dict[str, Any], width: int, height: int) -> Tuple[Optional[List[float]], Dict[str, Any]]:
    """The training box (clipped xyxy, or None when dropped) and the evaluation annotation of ``ann``.

    The evaluation annotation holds the same clipped box; a dropped box is kept as an ignored
    (``iscrowd``) region so that evaluation never counts it as a missed object.
    """
    box = _clip_box(ann['bbox'], width, height)
    entry = dict(ann)
    if box is None:
        entry['iscrowd'] = 1
    else:
        entry['bbox'] = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        entry.setdefault('iscrowd', 0)
    entry['area'] = float(entry.get('area') or entry['bbox'][2] * entry['bbox'][3])
    return box, entry


class _DetectionDataset(AugmentedDataset):
    """Common loading/augmentation; subclasses fill ``records`` and ``coco``."""

    def __init__(self, transform: Optional[DetectionTransform] = None, exif_orientation: bool = True,
                 masks: bool = False):
        super().__init__()
        self.transform = transform
        self.exif_orientation = exif_orientation
        self.masks = masks
        # {'file', 'image_id', 'width', 'height', 'boxes', 'labels'} and, with masks, 'segmentations'
        self.records: List[Dict[str, Any]] = []
        self.coco: COCO
        self.class_names: List[str] = []
        self.label_to_cat_id: Dict[int, int] = {}

    @property
    def num_classes(self) -> int:
        """Classes including the background."""
        return len(self.class_names) + 1

    def __len__(self) -> int:
        return len(self.records)

    def _check_files(self, source: Path) -> None:
        missing = [str(r['file']) for r in self.records if not Path(r['file']).is_file()]
        if missing:
            shown = ', '.join(missing[:5]) + (f' ... ({len(missing)} in all)' if len(missing) > 5 else '')
            raise FileNotFoundError(f'{source}: image files not found: {shown}')

    def load_image(self, index: int) -> np.ndarray:
        """The upright RGB image of item ``index`` (HWC uint8), checked against its annotated size."""
        record = self.records[index]
        return read_image_array(record['file'], self.exif_orientation, (record['width'], record['height']))

    def __getitem__(self, key: Union[int, EpochIndex]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        _, index = self._resolve(key)
        record = self.records[index]
        image = self.load_image(index)
        boxes = np.asarray(record['boxes'], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(record['labels'], dtype=np.int64)
        masks = self._instance_masks(record) if self.masks else None
        if self.transform is not None:
            image, boxes, labels, masks = self._augment(image, boxes, labels, masks)
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        target = dict(boxes=torch.from_numpy(boxes), labels=torch.from_numpy(labels), image_id=record['image_id'])
        if masks is not None:
            target['masks'] = torch.from_numpy(np.ascontiguousarray(masks))
        return image, target

    @staticmethod
    def _instance_masks(record: Dict[str, Any]) -> np.ndarray:
        height, width = record['height'], record['width']
        masks = [decode_segmentation(s, height, width) for s in record['segmentations']]
        return np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)

    def _augment(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, masks: Optional[np.ndarray]):
        if masks is None or len(masks) == 0:  # albumentations cannot stack an empty list of masks
            out = self.transform(image=image, bboxes=boxes, labels=labels)
            no_masks = None if masks is None else np.zeros((0, *out['image'].shape[:2]), np.uint8)
            return (out['image'], np.asarray(out['bboxes'], dtype=np.float32).reshape(-1, 4),
                    np.asarray(out['labels'], dtype=np.int64), no_masks)
        # the object indices ride along as labels, so the masks of the objects the transform kept can be picked
        out = self.transform(image=image, bboxes=boxes, labels=np.arange(len(labels)), masks=masks)
        kept = np.asarray(out['labels'], dtype=np.int64)
        masks = np.asarray(out['masks'], dtype=np.uint8).reshape(-1, *out['image'].shape[:2])[kept]
        visible = masks.any(axis=(1, 2))
        masks = masks[visible]
        boxes = np.asarray(boxes_from_masks(masks), dtype=np.float32).reshape(-1, 4)
        return out['image'], boxes, labels[kept][visible], masks


class CocoDetectionDataset(_DetectionDataset):
    """COCO-format detection data (``images``, ``annotations``, ``categories``; xywh boxes).

    Args:
        images_dir: folder the ``file_name`` entries are relative to.
        ann_file: COCO json file.
        transform: albumentations-style callable (see ``hardnet_backbones.data.transforms``).
        skip_empty: drop images without any usable box (training only; evaluation keeps all).
        exif_orientation: apply the images' EXIF orientation tags (annotations made on upright images).
        masks: also give each object's mask (every annotation then needs a ``segmentation``).
    """

    def __init__(
            self,
            images_dir: PathLike,
            ann_file: PathLike,
            transform: Optional[DetectionTransform] = None,
            skip_empty: bool = False,
            exif_orientation: bool = True,
            masks: bool = False,
    ):
        super().__init__(transform, exif_orientation, masks)
        ann_file = Path(ann_file)
        data = read_coco_json(ann_file)
        categories = sorted(data['categories'], key=lambda c: c['id'])
        self.class_names = [c['name'] for c in categories]
        self.label_to_cat_id = {i + 1: c['id'] for i, c in enumerate(categories)}
        cat_to_label = {cat: label for label, cat in self.label_to_cat_id.items()}
        images = {img['id']: img for img in data['images']}
        per_image: Dict[Any, Dict[str, list]] = {
            i: dict(boxes=[], labels=[], **({'segmentations': []} if masks else {})) for i in images}
        ground_truth, dropped = [], 0
        for ann in data['annotations']:
            self._check_annotation(ann, images, cat_to_label, ann_file)
            img = images[ann['image_id']]
            if masks:
                self._check_segmentation(ann, img, ann_file)
            box, entry = _ground_truth_entry(ann, img['width'], img['height'])
            ground_truth.append(entry)
            if ann.get('iscrowd', 0):
                continue
            if box is None:
                dropped += 1
                continue
            per_image[ann['image_id']]['boxes'].append(box)
            per_image[ann['image_id']]['labels'].append(cat_to_label[ann['category_id']])
            if masks:
                per_image[ann['image_id']]['segmentations'].append(ann['segmentation'])
        if dropped:
            _logger.warning('%s: %d boxes have no area inside their image; they are left out of training and '
                            'ignored in evaluation', ann_file, dropped)
        for image_id, img in images.items():
            if skip_empty and not per_image[image_id]['boxes']:
                continue
            self.records.append(dict(file=Path(images_dir) / img['file_name'], image_id=image_id,
                                     width=img['width'], height=img['height'], **per_image[image_id]))
        self.coco = coco_from_dict(dict(data, annotations=ground_truth))
        self._check_files(ann_file)

    @staticmethod
    def _check_segmentation(ann: Dict[str, Any], img: Dict[str, Any], path: Path) -> None:
        if 'segmentation' not in ann:
            raise DataError(f'{path}: annotation {ann["id"]} has no "segmentation"; instance segmentation needs a '
                            f'polygon or RLE mask for every object (train a box detector on box-only data)')
        try:
            check_segmentation(ann['segmentation'], img['height'], img['width'])
        except ValueError as e:
            raise DataError(f'{path}: annotation {ann["id"]}: {e}') from None

    @staticmethod
    def _check_annotation(ann: Dict[str, Any], images: Dict, cat_to_label: Dict, path: Path) -> None:
        ann_id = ann['id']
        bbox = ann.get('bbox')
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            raise DataError(f'{path}: annotation {ann_id} has a malformed bbox {bbox!r} (expected [x, y, w, h])')
        if ann.get('image_id') not in images:
            raise DataError(f'{path}: annotation {ann_id} refers to unknown image_id {ann.get("image_id")!r}')
        if ann.get('category_id') not in cat_to_label:
            raise DataError(
                f'{path}: annotation {ann_id} has category_id {ann.get("category_id")!r} not in "categories"')


class VOCDetectionDataset(_DetectionDataset):
    """Pascal VOC layout: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt``.

    Images are found from the ids of the split file, as torchvision and mmdetection do (the XML's
    ``<filename>`` is not used). Several roots are joined into one dataset (VOC2007 + VOC2012
    trainval). 'difficult' objects are excluded from training targets and ignored in evaluation.

    Args:
        root: a ``VOC20xx`` folder, or a list of them.
        split: the ``ImageSets/Main`` split name (``trainval``, ``test``, ...).
        transform: albumentations-style callable.
        class_names: object classes in label order (default: the 20 VOC classes).
        exif_orientation: apply the images' EXIF orientation tags.
    """

    def __init__(
            self,
            root: Union[PathLike, Sequence[PathLike]],
            split: str = 'trainval',
            transform: Optional[DetectionTransform] = None,
            class_names: Sequence[str] = VOC_CLASSES,
            exif_orientation: bool = True,
    ):
        super().__init__(transform, exif_orientation)
        roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
        self.class_names = list(class_names)
        self.label_to_cat_id = {i + 1: i + 1 for i in range(len(class_names))}
        name_to_label = {n: i + 1 for i, n in enumerate(class_names)}
        coco = dict(images=[], annotations=[], categories=[
            dict(id=i + 1, name=n) for i, n in enumerate(class_names)])
        for voc_root in roots:
            split_file = voc_root / 'ImageSets' / 'Main' / f'{split}.txt'
            if not split_file.is_file():
                raise FileNotFoundError(f'VOC split file not found: {split_file}')
            for stem in split_file.read_text().split():
                image_id = len(self.records)
                record, image, anns = self._parse_xml(
                    voc_root / 'Annotations' / f'{stem}.xml', name_to_label, image_id)
                record['file'] = voc_root / 'JPEGImages' / f'{stem}.jpg'
                image['file_name'] = str(record['file'])
                self.records.append(record)
                coco['images'].append(image)
                for ann in anns:
                    ann['id'] = len(coco['annotations']) + 1
                    coco['annotations'].append(ann)
            self._check_files(split_file)
        self.coco = coco_from_dict(coco)

    @staticmethod
    def _parse_xml(path: Path, name_to_label: Dict[str, int], image_id: int):
        if not path.is_file():
            raise FileNotFoundError(f'VOC annotation file not found: {path} (listed in the split file)')
        try:
            root = ET.parse(path).getroot()
            size = root.find('size')
            width, height = int(size.find('width').text), int(size.find('height').text)
        except (ET.ParseError, OSError, AttributeError, TypeError, ValueError) as e:
            raise DataError(f'{path}: malformed VOC annotation, it needs <size><width>/<height> ({e})') from e
        record = dict(image_id=image_id, width=width, height=height, boxes=[], labels=[])
        anns = []
        for i, obj in enumerate(root.iter('object')):
            name = (obj.findtext('name') or '').strip()
            if name not in name_to_label:
                raise DataError(f'{path}: object {i} has class {name!r}, which is not among the dataset\'s '
                                f'classes (set data.class_names for a custom class list)')
            try:
                bb = obj.find('bndbox')
                x1, y1, x2, y2 = (float(bb.find(k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
            except (AttributeError, TypeError, ValueError) as e:
                raise DataError(f'{path}: object {i} ({name}) has a malformed bndbox') from e
            x1 -= 1  # VOC pixel indices are 1-based and inclusive
            y1 -= 1
            ignored = obj.findtext('difficult', '0').strip() == '1'
            ann = dict(image_id=image_id, category_id=name_to_label[name], bbox=[x1, y1, x2 - x1, y2 - y1],
                       iscrowd=int(ignored))
            box, entry = _ground_truth_entry(ann, width, height)
            anns.append(entry)
            if box is not None and not ignored:
                record['boxes'].append(box)
                record['labels'].append(name_to_label[name])
        return record, dict(id=image_id, width=width, height=height), anns
