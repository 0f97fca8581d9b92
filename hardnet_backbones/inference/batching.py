"""Inputs of the prediction tools: image files from files, folders and globs, in batches.

Used by the ``detect``, ``segment`` and ``classify`` tools; every image is decoded by
:func:`hardnet_backbones.data.image_io.read_image` (EXIF orientation, 16-bit, palettes...).
"""
import glob
from pathlib import Path
from typing import Iterator, List, Sequence, TypeVar, Union

from ..data.image_io import IMAGE_SUFFIXES
from ..errors import DataError

__all__ = ['expand_image_paths', 'batched']

T = TypeVar('T')
_GLOB_CHARS = set('*?[')


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def expand_image_paths(inputs: Sequence[Union[str, Path]]) -> List[Path]:
    """Image files from files, folders (their images, sorted) and glob patterns (``'photos/**/*.jpg'``).

    Raises:
        FileNotFoundError: an input is neither a file, a folder nor a pattern that matches.
        DataError: nothing to process.
    """
    paths: List[Path] = []
    for item in inputs:
        text = str(item)
        if Path(text).is_dir():
            paths += _images_in(Path(text))
        elif Path(text).is_file():
            paths.append(Path(text))
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f'no file matches {text}')
            paths += [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            raise FileNotFoundError(f'no such image file or folder: {text}')
    if not paths:
        raise DataError(f'no images found in {", ".join(map(str, inputs))} '
                        f'(image files end in {", ".join(IMAGE_SUFFIXES)})')
    return list(dict.fromkeys(paths))  # each once, in order


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive chunks of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
