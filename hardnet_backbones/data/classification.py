"""Image classification data: torchvision's ``ImageFolder`` layout and ``path,label`` CSV lists.

- Folder: ``root/<split>/<class name>/<image>`` (images may sit in sub-folders of their class folder). The class
  names are the class folders' names in sorted order, as ``ImageFolder`` orders them, or ``class_names`` to fix
  the order (then a missing or an extra folder is refused). An ImageNet validation folder with one folder per
  synset is this format: sorted synsets are the published heads' class order.
- CSV: one ``path,label`` row per image (an optional ``path,label`` header), paths relative to ``images_root``;
  labels are class names (``class_names`` gives their order, else sorted).

One rule for files, in both: a file without an image suffix (``.jpg``, ``.png``, ...) is not an image and is
skipped, with a count in the log (a README in a class folder); an image file that does not decode is refused,
naming it, when the dataset is built (headers) or read (pixels), as every loader here does.
"""
import contextlib
import csv
import logging
import random
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .image_io import IMAGE_SUFFIXES, image_size, read_image
from .sampling import AugmentedDataset, EpochIndex, sample_seed

__all__ = ['ClassificationDataset', 'folder_classification', 'csv_classification']

_logger = logging.getLogger(__name__)
PathLike = Union[str, Path]
Transform = Callable[[Image.Image], torch.Tensor]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Every RNG timm's and torchvision's transforms draw from seeded with ``seed``, and restored afterwards (so a
    transform in the main process leaves the training RNG untouched)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class ClassificationDataset(AugmentedDataset):
    """``(image tensor, class index)`` items; the transform is seeded per (seed, epoch, index), so augmentation is
    the same in any worker and after a resume.

    Attributes:
        samples: ``(image path, class index)`` pairs. class_names: by index. num_classes: ``len(class_names)``.
    """

    def __init__(self, samples: List[Tuple[Path, int]], class_names: Sequence[str],
                 transform: Optional[Transform] = None, exif_orientation: bool = True, seed: int = 0):
        super().__init__(seed)
        self.samples = samples
        self.class_names = list(class_names)
        self.transform = transform
        self.exif_orientation = exif_orientation

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        return read_image(self.samples[index][0], self.exif_orientation)

    def __getitem__(self, key: Union[int, EpochIndex]) -> Tuple[torch.Tensor, int]:
        epoch, index = self._resolve(key)
        image = self.load_image(index)
        if self.transform is not None:
            with _seeded(sample_seed(self.seed, epoch, index)):
                image = self.transform(image)
        return image, self.samples[index][1]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _check_headers(samples: List[Tuple[Path, int]]) -> None:
    for path, _ in samples:
        image_size(path)  # a corrupt or non-image file raises DataError naming it


def _log_skipped(skipped: List[Path], where: Path) -> None:
    if skipped:
        _logger.info('%s: skipped %d files that are not images (e.g. %s)', where, len(skipped), skipped[0].name)


def folder_classification(root: PathLike, split: str, class_names: Optional[Sequence[str]] = None,
                          transform: Optional[Transform] = None, exif_orientation: bool = True,
                          seed: int = 0) -> ClassificationDataset:
    """The ``root/<split>/<class>/<image>`` folder as a dataset (see the module docstring).

    Raises:
        FileNotFoundError: no split folder. DataError: no class folders, images beside them, a class folder
        without images, class folders that differ from ``class_names``, an image that does not decode.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f'split folder not found: {folder} (the layout is root/<split>/<class>/<image>; '
                                f'set data.root, data.train_split / data.val_split)')
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith('.'))
    loose = sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p))
    if not found:
        what = f'{len(loose)} images but no class folders' if loose else 'no class folders'
        raise DataError(f'{folder}: {what}; the layout is root/<split>/<class name>/<image>, one folder per class')
    if loose:
        raise DataError(f'{folder}: {len(loose)} images lie beside the class folders (e.g. {loose[0].name}); '
                        f'move each into the folder of its class')
    if class_names is not None:
        missing, extra = sorted(set(class_names) - set(found)), sorted(set(found) - set(class_names))
        if missing or extra:
            raise DataError(f'{folder}: the class folders differ from data.class_names: '
                            + '; '.join(part for part in (f'no folder for {missing}' if missing else '',
                                                          f'folders not listed {extra}' if extra else '') if part))
    names = list(class_names) if class_names is not None else found
    samples, skipped = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (folder / name).rglob('*') if p.is_file())
        images = [p for p in files if _is_image(p)]
        skipped += [p for p in files if not _is_image(p)]
        if not images:
            raise DataError(f'{folder / name}: the class folder holds no images ({", ".join(IMAGE_SUFFIXES)}); '
                            f'add images or remove the folder')
        samples += [(p, label) for p in images]
    _log_skipped(skipped, folder)
    _check_headers(samples)
    return ClassificationDataset(samples, names, transform, exif_orientation, seed)


def csv_classification(csv_file: PathLike, images_root: PathLike, class_names: Optional[Sequence[str]] = None,
                       transform: Optional[Transform] = None, exif_orientation: bool = True,
                       seed: int = 0) -> ClassificationDataset:
    """A ``path,label`` list as a dataset (see the module docstring).

    Raises:
        FileNotFoundError: no such CSV file. DataError: a malformed row, a row naming a missing or non-image file or
        a label outside ``class_names``, an empty list, an image that does not decode.
    """
    csv_file, images_root = Path(csv_file), Path(images_root)
    if not csv_file.is_file():
        raise FileNotFoundError(f'CSV list not found: {csv_file} (one "path,label" row per image)')
    with open(csv_file, newline='', encoding='utf-8-sig') as f:
        rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if row and any(c.strip() for c in row)]
    if rows and [c.strip().lower() for c in rows[0][1]] == ['path', 'label']:
        rows = rows[1:]
    if not rows:
        raise DataError(f'{csv_file}: no rows; one "path,label" row per image')
    entries = []
    for line, row in rows:
        if len(row) != 2:
            raise DataError(f'{csv_file}, line {line}: expected "path,label", got {len(row)} fields')
        path, label = images_root / row[0].strip(), row[1].strip()
        if not path.is_file() or not _is_image(path):
            problem = 'not found' if not path.is_file() else 'not an image file'
            raise DataError(f'{csv_file}, line {line}: {path} is {problem} (paths are relative to {images_root})')
        entries.append((line, path, label))
    names = list(class_names) if class_names is not None else sorted({label for _, _, label in entries})
    index = {name: i for i, name in enumerate(names)}
    for line, path, label in entries:
        if label not in index:
            raise DataError(f'{csv_file}, line {line}: label {label!r} is not one of data.class_names '
                            f'({", ".join(names[:10])}{" ..." if len(names) > 10 else ""})')
    samples = [(path, index[label]) for _, path, label in entries]
    _check_headers(samples)
    return ClassificationDataset(samples, names, transform, exif_orientation, seed)
