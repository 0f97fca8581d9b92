"""torchvision's detection transform with one clear error for images and targets a detector cannot take, and the
checks of the arguments torchvision's detector classes would swallow or take without a look."""
import difflib
import inspect
import math
import re
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from .backbone import check_detector_classes
from .layers import MIN_INPUT_SIZE

__all__ = ['CheckedTransform', 'check_detector_images', 'check_detector_kwargs', 'check_detector_settings',
           'init_parameters', 'MAX_IMAGE_SIDE', 'SET_BY_BUILDERS']

# the largest side a detector may resize its images to: a 8192 x 8192 float image batch is already ~800 MB
MAX_IMAGE_SIDE = 8192
_PROPORTION = re.compile(r'(?:thresh|fraction)$')  # settings in [0, 1]
# settings of at least 1
_COUNT = re.compile(r'(?:top_n_(?:train|test)|per_img|per_image|topk_candidates|per_class_detections)$')

# the detector classes' arguments that our builders set themselves
SET_BY_BUILDERS = ('self', 'backbone', 'num_classes', 'anchor_generator', 'size', 'head', 'kwargs')


def init_parameters(cls: type) -> List[inspect.Parameter]:
    """The named parameters of ``cls.__init__``, and of its bases' while each passes ``**kwargs`` on (a subclass
    of torchvision's ``SSD`` that adds one argument takes all of ``SSD``'s too)."""
    found: Dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if '__init__' not in vars(klass) or klass in (nn.Module, object):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        for p in parameters:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                found.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(found.values())


def check_detector_kwargs(detector_class: type, kwargs: Dict[str, Any]) -> None:
    """Refuse keywords ``detector_class`` does not name: torchvision's detectors pass their ``**kwargs`` on to
    their transform, which ignores unknown ones, so a typo (``score_thres``) would be dropped silently.

    Raises:
        TypeError: naming the keyword, the closest valid one and the list.
    """
    known = [p.name for p in init_parameters(detector_class) if p.name not in SET_BY_BUILDERS]
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise TypeError(f'{detector_class.__name__} takes no argument {key!r}{hint}; valid: {", ".join(known)}')
    check_detector_settings(kwargs)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_side(value: Any) -> bool:
    return _is_number(value) and MIN_INPUT_SIZE <= value <= MAX_IMAGE_SIDE


def _check_sizes(min_size: Any, max_size: Any) -> None:
    sides = list(min_size) if isinstance(min_size, (list, tuple)) else [min_size]
    valid = f'a number of pixels in [{MIN_INPUT_SIZE}, {MAX_IMAGE_SIDE}]'
    if not sides or not all(_is_side(v) for v in sides):
        raise ValueError(f'min_size must be {valid} (or a list of them, one drawn per training image), '
                         f'got {min_size!r}')
    if not _is_side(max_size):
        raise ValueError(f'max_size must be {valid}, got {max_size!r}')
    if max_size < max(sides):
        raise ValueError(f'max_size={max_size!r} is smaller than min_size={min_size!r}: the longer side is capped '
                         f'at max_size, so set max_size >= min_size (torchvision: 800 and 1333)')


def _check_normalisation(name: str, value: Any) -> None:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(v) for v in value)):
        raise ValueError(f'{name} must be 3 finite numbers (one per RGB channel, for images in [0, 1]), got {value!r}')
    if name == 'image_std' and min(value) <= 0:
        raise ValueError(f'image_std must be positive (images are divided by it), got {value!r}')


def check_detector_settings(kwargs: Dict[str, Any], defaults: Optional[Dict[str, Any]] = None) -> None:
    """Refuse detector settings that torchvision would take and then fail on late or use silently wrong.

    Checked by name, for every detector family: ``min_size`` / ``max_size`` (pixels in [32, 8192], max >= min),
    thresholds and fractions (``*_thresh``, ``*_fraction``: in [0, 1]), counts (``*_top_n_*``, ``*per_img``,
    ``*per_image``, ``topk_candidates``: integers >= 1), ``image_mean`` / ``image_std`` (3 numbers, std > 0),
    ``num_classes`` and ``trainable_backbone_layers`` (integers). ``defaults`` fills in what ``kwargs`` leaves
    out when the two sizes are compared.

    Raises:
        ValueError: naming the argument, its value and the valid range.
    """
    merged = {**(defaults or {}), **kwargs}
    if 'min_size' in kwargs or 'max_size' in kwargs:
        _check_sizes(merged.get('min_size', 800), merged.get('max_size', 1333))
    for name, value in kwargs.items():
        if _PROPORTION.search(name) and not (_is_number(value) and 0 <= value <= 1):
            raise ValueError(f'{name} must be a number in [0, 1], got {value!r}')
        if _COUNT.search(name) and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
        if name in ('image_mean', 'image_std') and value is not None:
            _check_normalisation(name, value)
    if 'num_classes' in kwargs:
        check_detector_classes(kwargs['num_classes'])
    layers = kwargs.get('trainable_backbone_layers')
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int)):
        raise ValueError(f'trainable_backbone_layers must be an integer (feature levels trained, counted from the '
                         f'deepest) or None, got {layers!r}')


def _check_targets(images: List[torch.Tensor], targets: List[Dict[str, torch.Tensor]], detector: str) -> None:
    if len(targets) != len(images):
        raise ValueError(f'{detector} got {len(images)} images but {len(targets)} targets: one target per image')
    for i, (image, target) in enumerate(zip(images, targets)):
        boxes = target.get('boxes')
        if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f'{detector}: target {i} needs "boxes" of shape (N, 4) (xyxy pixels; (0, 4) for an '
                             f'image without objects), got {None if boxes is None else list(boxes.shape)}')
        masks = target.get('masks')
        if masks is not None and (masks.dim() != 3 or tuple(masks.shape) != (len(boxes), *image.shape[-2:])):
            raise ValueError(f'{detector}: target {i} has masks of shape {list(masks.shape)}, but its image is '
                             f'{image.shape[-2]}x{image.shape[-1]} with {len(boxes)} boxes: masks must be '
                             f'(N, H, W), one per box, at the image\'s size')


class CheckedTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` that refuses images which are not ``(3, H, W)`` floats, naming the detector."""

    detector = 'the detector'

    # the targets are checked in __call__, not forward: TorchScript compiles forward and cannot call super() there
    def __call__(self, images: List[torch.Tensor], targets: Optional[List[Dict[str, torch.Tensor]]] = None):
        if targets is not None and not torch.jit.is_tracing():
            _check_targets(images, targets, self.detector)
        return super().__call__(images, targets)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (image.dim() != 3 or image.shape[0] != 3):
            raise ValueError(f'{self.detector} expects images of shape (3, H, W) with values in [0, 1], '
                             f'got {list(image.shape)}')
        if not image.is_floating_point():
            raise ValueError(f'{self.detector} expects float images with values in [0, 1], got {image.dtype}')
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]


def check_detector_images(model: nn.Module, transform_class: type = CheckedTransform) -> nn.Module:
    """Give a torchvision detector a :class:`CheckedTransform` (or ``transform_class``, a subclass) with the
    settings of its own; returns the model."""
    t = model.transform
    _check_sizes(t.min_size, t.max_size)
    checked = transform_class(t.min_size, t.max_size, t.image_mean, t.image_std, t.size_divisible, t.fixed_size,
                              _skip_resize=t._skip_resize)
    checked.detector = type(model).__name__
    model.transform = checked
    return model
