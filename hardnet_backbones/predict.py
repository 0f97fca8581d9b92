"""Running trained models on image files: inputs (files, folders, globs), batches, sliding windows.

Used by the ``detect``, ``segment`` and ``classify`` tools; every image is decoded by
:func:`hardnet_backbones.image_io.read_image` (EXIF orientation, 16-bit, palettes...).
"""
import glob
import math
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .errors import DataError
from .image_io import IMAGE_SUFFIXES

__all__ = ['expand_image_paths', 'batched', 'image_to_input', 'model_device', 'segment_logits', 'SEGMENT_MODES']

T = TypeVar('T')
SEGMENT_MODES = ('whole', 'slide')
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


def image_to_input(image: Union[np.ndarray, Image.Image], task: str) -> torch.Tensor:
    """An RGB image (HWC uint8 array or PIL) -> the ``(3, H, W)`` float tensor a trained model takes:
    values in [0, 1] for detectors (they normalise inside), ImageNet-normalised for segmenters."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f'expected an RGB uint8 image (H, W, 3), got {array.dtype} {array.shape}')
    tensor = torch.from_numpy(np.array(array, order='C', copy=True)).permute(2, 0, 1).float().div_(255)
    if task == 'segmentation':
        mean = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
        tensor = (tensor - mean) / std
    return tensor


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live; the CPU for a model without any (an onnxruntime model)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device('cpu')


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive chunks of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _window_starts(length: int, window: int, stride: int) -> List[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride)) + [length - window]
    return sorted(set(starts))


@torch.inference_mode()
def segment_logits(model: nn.Module, image: torch.Tensor, mode: str = 'whole',
                   window: Tuple[int, int] = (512, 512), batch_size: int = 4) -> torch.Tensor:
    """Class scores ``(K, H, W)`` of one normalised ``(3, H, W)`` image.

    ``mode='whole'`` runs the image at its own size (the models are fully convolutional);
    ``mode='slide'`` averages the logits of ``window``-sized crops overlapping by a third (the training
    crop size is the natural window), so images far larger than the training crops keep the scale
    the model learnt and a bounded memory. Images smaller than the window are zero-padded (the mean
    colour after normalisation).
    """
    if mode not in SEGMENT_MODES:
        raise ValueError(f'mode must be one of {SEGMENT_MODES}, got {mode!r}')
    if mode == 'whole':
        return model(image[None])['out'][0]
    height, width = image.shape[-2:]
    win_h, win_w = window
    padded = torch.nn.functional.pad(image, (0, max(0, win_w - width), 0, max(0, win_h - height)))
    full_h, full_w = padded.shape[-2:]
    boxes = [(y, x) for y in _window_starts(full_h, win_h, math.ceil(win_h * 2 / 3))
             for x in _window_starts(full_w, win_w, math.ceil(win_w * 2 / 3))]
    logits = counts = None
    for chunk in batched(boxes, batch_size):
        crops = torch.stack([padded[:, y:y + win_h, x:x + win_w] for y, x in chunk])
        out = model(crops)['out']
        if logits is None:
            logits = out.new_zeros(out.shape[1], full_h, full_w)
            counts = out.new_zeros(1, full_h, full_w)
        for (y, x), crop_logits in zip(chunk, out):
            logits[:, y:y + win_h, x:x + win_w] += crop_logits
            counts[:, y:y + win_h, x:x + win_w] += 1
    return (logits / counts)[:, :height, :width]
