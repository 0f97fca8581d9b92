"""torchvision's detection transform with one clear error for images a detector cannot take."""
import torch
import torch.nn as nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

__all__ = ['CheckedTransform', 'check_detector_images']


class CheckedTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` that refuses images which are not ``(3, H, W)`` floats, naming the detector."""

    detector = 'the detector'

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (image.dim() != 3 or image.shape[0] != 3):
            raise ValueError(f'{self.detector} expects images of shape (3, H, W) with values in [0, 1], '
                             f'got {list(image.shape)}')
        if not image.is_floating_point():
            raise ValueError(f'{self.detector} expects float images with values in [0, 1], got {image.dtype}')
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]


def check_detector_images(model: nn.Module) -> nn.Module:
    """Give a torchvision detector a :class:`CheckedTransform` with the settings of its own; returns the model."""
    t = model.transform
    checked = CheckedTransform(t.min_size, t.max_size, t.image_mean, t.image_std, t.size_divisible, t.fixed_size,
                               _skip_resize=t._skip_resize)
    checked.detector = type(model).__name__
    model.transform = checked
    return model
