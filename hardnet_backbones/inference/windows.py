"""Segmentation of images of any size: whole, or in overlapping windows of the training crop size."""
import math
from typing import List, Tuple

import torch
import torch.nn as nn

from ..models.layers import MIN_INPUT_SIZE
from .batching import batched

__all__ = ['segment_logits', 'SEGMENT_MODES']

SEGMENT_MODES = ('whole', 'slide')


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
    the model learnt and a bounded memory. Images smaller than the window (or than 32 pixels, the least a
    segmenter takes) are zero-padded (the mean colour after normalisation) and the logits cropped back.
    """
    if mode not in SEGMENT_MODES:
        raise ValueError(f'mode must be one of {SEGMENT_MODES}, got {mode!r}')
    if min(window) < MIN_INPUT_SIZE:
        raise ValueError(f'window must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, got {window}')
    height, width = image.shape[-2:]
    if mode == 'whole':
        padded = torch.nn.functional.pad(image, (0, max(0, MIN_INPUT_SIZE - width), 0, max(0, MIN_INPUT_SIZE - height)))
        return model(padded[None])['out'][0, :, :height, :width]
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
