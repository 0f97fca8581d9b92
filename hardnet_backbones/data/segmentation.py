"""Semantic segmentation datasets: Pascal VOC, Cityscapes, generic images/ + masks/ folders.

Each item is ``(image, mask)``: a float ``(3, H, W)`` tensor (normalised by the transform) and an
int64 ``(H, W)`` class-index mask where ``ignore_index`` (255) marks pixels without a label.
Mask values outside ``[0, num_classes)`` that are not ``ignore_index`` raise an error naming the file.
"""
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .detection import sample_seed

__all__ = ['SegmentationDataset', 'VOC_SEG_CLASSES', 'CITYSCAPES_CLASSES', 'CITYSCAPES_ID_TO_TRAIN_ID',
           'voc_segmentation', 'cityscapes_segmentation', 'folder_segmentation']

VOC_SEG_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation',
    'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')

# Cityscapes labelIds -> the 19 evaluated trainIds; every other id is ignored
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


class SegmentationDataset(Dataset):
    """Pairs of image and mask files.

    Args:
        pairs: ``(image_path, mask_path)`` per sample.
        class_names: names of the ``num_classes`` classes (index order).
        transform: albumentations-style ``t(image=HWC uint8, mask=HW) -> {'image', 'mask'}``.
        ignore_index: label of unlabelled pixels.
        label_map: optional lookup applied to raw mask values first (e.g. Cityscapes labelIds -> trainIds).
    """

    def __init__(
            self,
            pairs: Sequence[Tuple[Path, Path]],
            class_names: Sequence[str],
            transform: Optional[Callable] = None,
            ignore_index: int = 255,
            label_map: Optional[Dict[int, int]] = None,
    ):
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        if not self.pairs:
            raise ValueError('segmentation dataset is empty: no image/mask pairs found')
        missing = [str(p) for pair in self.pairs for p in pair if not p.is_file()]
        if missing:
            raise FileNotFoundError(f'segmentation files not found: {", ".join(missing[:5])}'
                                    + (f' ... ({len(missing)} in all)' if len(missing) > 5 else ''))
        self.class_names = list(class_names)
        self.transform = transform
        self.ignore_index = ignore_index
        self.lookup = None
        if label_map is not None:
            self.lookup = np.full(256, ignore_index, dtype=np.int64)
            for raw, label in label_map.items():
                self.lookup[raw] = label
        self.epoch = 0
        self.seed = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def load_mask(self, index: int) -> np.ndarray:
        """The label mask of one sample (after ``label_map``), validated against the class range."""
        path = self.pairs[index][1]
        try:
            with Image.open(path) as mask_image:
                mask = np.asarray(mask_image)
        except OSError as e:
            raise OSError(f'Cannot read mask {path}: {e}') from e
        if mask.ndim != 2:
            raise ValueError(f'{path}: a mask must be single-channel class indices, got shape {mask.shape}')
        mask = mask.astype(np.int64)
        if self.lookup is not None:
            mask = self.lookup[np.clip(mask, 0, 255)]
        bad = ((mask >= self.num_classes) & (mask != self.ignore_index)) | (mask < 0)
        if bad.any():
            values = sorted(set(np.unique(mask[bad]).tolist()))
            raise ValueError(f'{path}: mask values {values[:10]} are outside the {self.num_classes} classes '
                             f'(0..{self.num_classes - 1}, ignore {self.ignore_index})')
        return mask

    def load_image(self, index: int) -> np.ndarray:
        path = self.pairs[index][0]
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert('RGB'))
        except OSError as e:
            raise OSError(f'Cannot read image {path}: {e}') from e

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_image(index), self.load_mask(index)
        if image.shape[:2] != mask.shape:
            raise ValueError(f'{self.pairs[index][1]}: mask size {mask.shape} differs from image {image.shape[:2]}')
        if self.transform is not None:
            if hasattr(self.transform, 'set_random_seed'):
                self.transform.set_random_seed(sample_seed(self.seed, self.epoch, index))
            out = self.transform(image=image, mask=mask)
            image, mask = out['image'], out['mask']
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if image_t.dtype == torch.uint8:
            image_t = image_t.float().div_(255)
        return image_t.float(), torch.from_numpy(np.ascontiguousarray(mask)).long()


def _paired(images: List[Path], mask_for: Callable[[Path], Path]) -> List[Tuple[Path, Path]]:
    return [(img, mask_for(img)) for img in sorted(images)]


def voc_segmentation(root: Union[str, Path], split: str = 'train',
                     transform: Optional[Callable] = None) -> SegmentationDataset:
    """Pascal VOC: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNG, 255 = ignore),
    ``ImageSets/Segmentation/<split>.txt``; 21 classes."""
    root = Path(root)
    split_file = root / 'ImageSets' / 'Segmentation' / f'{split}.txt'
    if not split_file.is_file():
        raise FileNotFoundError(f'VOC segmentation split file not found: {split_file}')
    pairs = [(root / 'JPEGImages' / f'{s}.jpg', root / 'SegmentationClass' / f'{s}.png')
             for s in split_file.read_text().split()]
    return SegmentationDataset(pairs, VOC_SEG_CLASSES, transform)


def cityscapes_segmentation(root: Union[str, Path], split: str = 'train',
                            transform: Optional[Callable] = None) -> SegmentationDataset:
    """Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/.../*_gtFine_labelIds.png``,
    mapped to the 19 trainIds (other ids ignored)."""
    root = Path(root)
    images = list((root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))
    if not images:
        raise FileNotFoundError(f'no Cityscapes images under {root / "leftImg8bit" / split}')

    def mask_for(img: Path) -> Path:
        stem = img.name.replace('_leftImg8bit.png', '_gtFine_labelIds.png')
        return root / 'gtFine' / split / img.parent.name / stem

    return SegmentationDataset(_paired(images, mask_for), CITYSCAPES_CLASSES, transform,
                               label_map=CITYSCAPES_ID_TO_TRAIN_ID)


def folder_segmentation(
        root: Union[str, Path], split: str, class_names: Sequence[str],
        transform: Optional[Callable] = None, ignore_index: int = 255) -> SegmentationDataset:
    """Generic layout: ``images/<split>/<name>.<ext>`` with ``masks/<split>/<name>.png`` class-index masks."""
    root = Path(root)
    image_dir = root / 'images' / split
    images = [p for p in image_dir.glob('*') if p.suffix.lower() in ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')]
    if not images:
        raise FileNotFoundError(f'no images under {image_dir}')
    return SegmentationDataset(
        _paired(images, lambda img: root / 'masks' / split / f'{img.stem}.png'), class_names, transform, ignore_index)
