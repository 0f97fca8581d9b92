"""torchvision's detection transform with one clear error for images a detector cannot take, and the checks of
the arguments torchvision's detector classes would swallow."""
import difflib
import inspect
from typing import Any, Dict

import torch
import torch.nn as nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

__all__ = ['CheckedTransform', 'check_detector_images', 'check_detector_kwargs']

_SET_BY_BUILDERS = ('self', 'backbone', 'num_classes', 'anchor_generator', 'size', 'head', 'kwargs')


def check_detector_kwargs(detector_class: type, kwargs: Dict[str, Any]) -> None:
    """Refuse keywords ``detector_class`` does not name: torchvision's detectors pass their ``**kwargs`` on to
    their transform, which ignores unknown ones, so a typo (``score_thres``) would be dropped silently.

    Raises:
        TypeError: naming the keyword, the closest valid one and the list.
    """
    known = [p for p in inspect.signature(detector_class.__init__).parameters if p not in _SET_BY_BUILDERS]
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise TypeError(f'{detector_class.__name__} takes no argument {key!r}{hint}; valid: {", ".join(known)}')


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
    sizes = [*t.min_size, t.max_size] if isinstance(t.min_size, (tuple, list)) else [t.min_size, t.max_size]
    if not all(isinstance(s, (int, float)) and s >= 1 for s in sizes):
        raise ValueError(f'min_size and max_size must be positive pixel counts, got {t.min_size} and {t.max_size}')
    checked = CheckedTransform(t.min_size, t.max_size, t.image_mean, t.image_std, t.size_divisible, t.fixed_size,
                               _skip_resize=t._skip_resize)
    checked.detector = type(model).__name__
    model.transform = checked
    return model
