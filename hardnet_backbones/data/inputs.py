"""Decoded images made into the tensors trained models take."""
from typing import Union

import numpy as np
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ['image_to_input']


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
