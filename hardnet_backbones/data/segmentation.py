"""Semantic segmentation datasets: Pascal VOC, Cityscapes, generic images/ + masks/ folders.

Each item is ``(image, mask)``: a float ``(3, H, W)`` tensor (normalised by the transform) and an
int64 ``(H, W)`` class-index mask where ``ignore_index`` (255) marks pixels without a label.

Every mask is checked when the dataset is built, in one pass over the files (cached by file size and
modification time, so later runs skip unchanged files): a mask whose size differs from its image's,
or with values outside ``[0, num_classes)`` that are not ``ignore_index``, raises an error naming the
file before any training starts. Masks saved as 0/255 (a common way to store a binary foreground
mask) would have all foreground ignored, so they are refused unless ``mask_values`` maps them
(e.g. ``{255: 1}``).
"""
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import DataError
from ..utils.progress import progress_bar
from .image_io import IMAGE_SUFFIXES, image_size, read_image_array, read_mask
from .sampling import AugmentedDataset, EpochIndex

__all__ = ['SegmentationDataset', 'VOC_SEG_CLASSES', 'CITYSCAPES_CLASSES',
           'CITYSCAPES_ID_TO_TRAIN_ID', 'voc_segmentation', 'cityscapes_segmentation', 'folder_segmentation',
           'cache_dir']

_logger = logging.getLogger(__name__)

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

_MAX_MASK_VALUE = 65535  # 16-bit masks at most
PathLike = Union[str, Path]


def cache_dir() -> Path:
    """Where the package caches derived data (``$HARDNET_CACHE_DIR``, default ``~/.cache/hardnet_backbones``)."""
    return Path(os.environ.get('HARDNET_CACHE_DIR') or Path.home() / '.cache' / 'hardnet_backbones')


def _file_stamp(path: Path) -> List[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _scan_pair(pair: Tuple[Path, Path], exif_orientation: bool) -> Dict[str, list]:
    """What the checks need of one pair: raw mask values, mask shape, image size, file stamps."""
    image_path, mask_path = pair
    mask = read_mask(mask_path)
    width, height = image_size(image_path, exif_orientation)
    return dict(stamp=_file_stamp(image_path) + _file_stamp(mask_path) + [int(exif_orientation)],
                values=np.unique(mask).tolist(), mask_shape=list(mask.shape), image_shape=[height, width])


class _MaskScanCache:
    """Scan results per image/mask pair, kept in a JSON file under :func:`cache_dir`."""

    def __init__(self, pairs: Sequence[Tuple[Path, Path]]):
        key = hashlib.sha1('\n'.join(f'{i.resolve()}|{m.resolve()}' for i, m in pairs).encode()).hexdigest()[:20]
        self.path = cache_dir() / 'mask_scans' / f'{key}.json'
        try:
            self.entries: Dict[str, dict] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, pair: Tuple[Path, Path], exif_orientation: bool) -> Optional[dict]:
        entry = self.entries.get(str(pair[1]))
        stamp = _file_stamp(pair[0]) + _file_stamp(pair[1]) + [int(exif_orientation)]
        return entry if entry is not None and entry['stamp'] == stamp else None

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f'{self.path.name}.{os.getpid()}.tmp')
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only home only costs a rescan next time
            _logger.debug('mask scan cache not written: %s', e)


def scan_masks(pairs: Sequence[Tuple[Path, Path]], exif_orientation: bool = True) -> List[dict]:
    """Scan every pair once (cached): raw mask values, mask shape and upright image shape."""
    cache = _MaskScanCache(pairs)
    results: List[Optional[dict]] = [cache.get(pair, exif_orientation) for pair in pairs]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            scanned = pool.map(lambda i: _scan_pair(pairs[i], exif_orientation), todo)
            bar = progress_bar(scanned, total=len(todo), desc='checking masks', unit='mask', disable=len(todo) < 200,
                               leave=False)
            for i, result in zip(todo, bar):
                results[i] = result
                cache.entries[str(pairs[i][1])] = result
        cache.save()
    return results  # type: ignore[return-value]


class SegmentationDataset(AugmentedDataset):
    """Pairs of image and mask files, checked when the dataset is built.

    Args:
        pairs: ``(image_path, mask_path)`` per sample.
        class_names: names of the ``num_classes`` classes (index order).
        transform: albumentations-style ``t(image=HWC uint8, mask=HW) -> {'image', 'mask'}``.
        ignore_index: label of unlabelled pixels.
        label_map: raw mask value -> class, applied first (e.g. Cityscapes labelIds -> trainIds, or
            ``{255: 1}`` for 0/255 binary masks).
        unmapped: what happens to raw values missing from ``label_map``: ``'keep'`` them as they are,
            or ``'ignore'`` them (Cityscapes).
        exif_orientation: apply the images' EXIF orientation tags (masks are never rotated).
        nonzero_class: every non-zero raw value but ``ignore_index`` becomes this class (instead of a
            ``label_map``), e.g. 1 to read instance-id or 0/1/2... masks as one foreground class.
    """

    def __init__(
            self,
            pairs: Sequence[Tuple[PathLike, PathLike]],
            class_names: Sequence[str],
            transform: Optional[Callable] = None,
            ignore_index: int = 255,
            label_map: Optional[Mapping[int, int]] = None,
            unmapped: str = 'keep',
            exif_orientation: bool = True,
            nonzero_class: Optional[int] = None,
    ):
        super().__init__()
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        if not self.pairs:
            raise DataError('segmentation dataset is empty: no image/mask pairs found')
        missing = [str(p) for pair in self.pairs for p in pair if not p.is_file()]
        if missing:
            raise FileNotFoundError(f'segmentation files not found: {", ".join(missing[:5])}'
                                    + (f' ... ({len(missing)} in all)' if len(missing) > 5 else ''))
        if unmapped not in ('keep', 'ignore'):
            raise ValueError(f"unmapped must be 'keep' or 'ignore', got {unmapped!r}")
        self.class_names = list(class_names)
        self.transform = transform
        self.ignore_index = ignore_index
        self.exif_orientation = exif_orientation
        self.label_map = dict(label_map) if label_map else None
        if nonzero_class is not None and self.label_map is not None:
            raise ValueError('give label_map or nonzero_class, not both')
        self.lookup = self._build_lookup(self.label_map, unmapped, nonzero_class)
        self.image_shapes: List[Tuple[int, int]] = []  # (height, width) of every image, from the check
        self._check_all()

    def _build_lookup(self, label_map: Optional[Dict[int, int]], unmapped: str,
                      nonzero_class: Optional[int]) -> Optional[np.ndarray]:
        if nonzero_class is not None:
            lookup = np.full(_MAX_MASK_VALUE + 1, nonzero_class, dtype=np.int64)
            lookup[0], lookup[self.ignore_index] = 0, self.ignore_index
            return lookup
        if label_map is None:
            return None
        if unmapped == 'keep':
            lookup = np.arange(_MAX_MASK_VALUE + 1, dtype=np.int64)
        else:
            lookup = np.full(_MAX_MASK_VALUE + 1, self.ignore_index, dtype=np.int64)
        for raw, label in label_map.items():
            if not 0 <= int(raw) <= _MAX_MASK_VALUE:
                raise DataError(f'mask value map: raw value {raw} is outside 0..{_MAX_MASK_VALUE}')
            lookup[int(raw)] = label
        return lookup

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def _map(self, values: np.ndarray) -> np.ndarray:
        return values if self.lookup is None else self.lookup[np.clip(values, 0, _MAX_MASK_VALUE)]

    def _bad_values(self, values: np.ndarray) -> List[int]:
        bad = ((values >= self.num_classes) & (values != self.ignore_index)) | (values < 0)
        return sorted(set(np.unique(values[bad]).tolist()))

    def _values_error(self, offending: Dict[int, List[Path]]) -> DataError:
        """One error for every value outside the classes, with a few of the masks holding each."""
        def files(paths: List[Path]) -> str:
            more = f' and {len(paths) - 3} more' if len(paths) > 3 else ''
            return ', '.join(str(p) for p in paths[:3]) + more
        found = '; '.join(f'{value} in {files(paths)}' for value, paths in sorted(offending.items())[:20])
        return DataError(
            f'mask values outside the {self.num_classes} classes (0..{self.num_classes - 1}, ignore '
            f'{self.ignore_index}): {found}. Set data.mask_values to map raw values to classes, data.nonzero_class: 1 '
            f'to make every non-zero value one foreground class, or fix the class list; masks with one value per '
            f'object (instance ids) can also become COCO annotations with tools/instances_to_coco.py for an '
            f'instance segmenter (Mask R-CNN)')

    def _check_values(self, path: Path, values: np.ndarray) -> None:
        bad = self._bad_values(values)
        if bad:
            raise self._values_error({value: [path] for value in bad})

    def _check_all(self) -> None:
        """One pass over every mask (cached): sizes, value ranges, 0/255 binary masks."""
        scans = scan_masks(self.pairs, self.exif_orientation)
        raw_values = set()
        offending: Dict[int, List[Path]] = {}
        for (image_path, mask_path), scan in zip(self.pairs, scans):
            if scan['mask_shape'] != scan['image_shape']:
                h, w = scan['mask_shape']
                ih, iw = scan['image_shape']
                raise DataError(f'{mask_path}: the mask is {w}x{h} pixels but its image {image_path} is {iw}x{ih} '
                                f'(width x height, after the EXIF orientation); they must match')
            self.image_shapes.append(tuple(scan['image_shape']))
            values = np.asarray(scan['values'], dtype=np.int64)
            for value in self._bad_values(self._map(values)):
                offending.setdefault(value, []).append(mask_path)
            raw_values.update(scan['values'])
        if offending:
            raise self._values_error(offending)
        if self.label_map is None and self.ignore_index == 255 and raw_values and raw_values <= {0, 255} \
                and 255 in raw_values:
            raise DataError(
                f'every mask ({self.pairs[0][1].parent} and the rest) holds only the values 0 and 255: binary masks '
                f'saved as 0/255? 255 is the ignore value, so all foreground would be ignored and the model would '
                f'learn background only. Map the value to a class with data.mask_values: {{255: 1}} '
                f'(and 2 classes), or save masks as class indices 0/1')

    def load_mask(self, index: int) -> np.ndarray:
        """The label mask of one sample (after ``label_map``), validated against the class range."""
        path = self.pairs[index][1]
        mask = self._map(read_mask(path))
        self._check_values(path, mask)
        return mask

    def load_image(self, index: int) -> np.ndarray:
        """The upright RGB image of one sample (HWC uint8)."""
        return read_image_array(self.pairs[index][0], self.exif_orientation)

    def __getitem__(self, key: Union[int, EpochIndex]) -> Tuple[torch.Tensor, torch.Tensor]:
        _, index = self._resolve(key)
        image, mask = self.load_image(index), self.load_mask(index)
        if image.shape[:2] != mask.shape:
            raise DataError(f'{self.pairs[index][1]}: mask size {mask.shape} differs from image {image.shape[:2]}')
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out['image'], out['mask']
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if image_t.dtype == torch.uint8:
            image_t = image_t.float().div_(255)
        return image_t.float(), torch.from_numpy(np.ascontiguousarray(mask)).long()


def voc_segmentation(root: PathLike, split: str = 'train', transform: Optional[Callable] = None,
                     exif_orientation: bool = True,
                     class_names: Sequence[str] = VOC_SEG_CLASSES) -> SegmentationDataset:
    """Pascal VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNG, 255 = ignore),
    ids from ``ImageSets/Segmentation/<split>.txt``; the 21 VOC classes, or ``class_names`` for a
    dataset of its own in the VOC layout."""
    root = Path(root)
    split_file = root / 'ImageSets' / 'Segmentation' / f'{split}.txt'
    if not split_file.is_file():
        raise FileNotFoundError(f'VOC segmentation split file not found: {split_file}')
    pairs = [(root / 'JPEGImages' / f'{s}.jpg', root / 'SegmentationClass' / f'{s}.png')
             for s in split_file.read_text().split()]
    return SegmentationDataset(pairs, class_names, transform, exif_orientation=exif_orientation)


CITYSCAPES_LABELS = ('labelIds', 'labelTrainIds')


def cityscapes_segmentation(root: PathLike, split: str = 'train', transform: Optional[Callable] = None,
                            labels: str = 'labelIds', exif_orientation: bool = True) -> SegmentationDataset:
    """Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/.../*_gtFine_<labels>.png``.

    ``labels='labelIds'`` maps the official ids to the 19 trainIds (other ids ignored);
    ``labels='labelTrainIds'`` reads the files made by cityscapesScripts' ``createTrainIdLabelImgs`` as they are.
    """
    if labels not in CITYSCAPES_LABELS:
        raise ValueError(f'labels must be one of {CITYSCAPES_LABELS}, got {labels!r}')
    root = Path(root)
    images = sorted((root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))
    if not images:
        raise FileNotFoundError(f'no Cityscapes images under {root / "leftImg8bit" / split}')
    suffix = f'_gtFine_{labels}.png'
    pairs = [(img, root / 'gtFine' / split / img.parent.name / img.name.replace('_leftImg8bit.png', suffix))
             for img in images]
    if labels == 'labelIds':
        return SegmentationDataset(pairs, CITYSCAPES_CLASSES, transform, label_map=CITYSCAPES_ID_TO_TRAIN_ID,
                                   unmapped='ignore', exif_orientation=exif_orientation)
    return SegmentationDataset(pairs, CITYSCAPES_CLASSES, transform, exif_orientation=exif_orientation)


def folder_segmentation(
        root: PathLike, split: str, class_names: Sequence[str], transform: Optional[Callable] = None,
        ignore_index: int = 255, mask_values: Optional[Mapping[int, int]] = None,
        exif_orientation: bool = True, nonzero_class: Optional[int] = None) -> SegmentationDataset:
    """Generic layout: ``images/<split>/<name>.<ext>`` with ``masks/<split>/<name>.png`` class-index masks.

    ``mask_values`` maps raw mask values to classes (others are kept), e.g. ``{255: 1}`` for 0/255 masks;
    ``nonzero_class`` makes every non-zero value one class (instance-id masks read as foreground).
    """
    root = Path(root)
    image_dir = root / 'images' / split
    images = sorted(p for p in image_dir.glob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f'no images under {image_dir}')
    pairs = [(img, root / 'masks' / split / f'{img.stem}.png') for img in images]
    return SegmentationDataset(pairs, class_names, transform, ignore_index, label_map=mask_values,
                               exif_orientation=exif_orientation, nonzero_class=nonzero_class)
