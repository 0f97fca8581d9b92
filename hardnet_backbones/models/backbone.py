"""Shared helpers to use a timm ``features_only`` HarDNet inside torchvision models."""
from typing import Any, Dict, List, Optional, Sequence, Union

import timm
import torch.nn as nn
from timm.layers import freeze_batch_norm_2d

__all__ = [
    'WeightsBackbone', 'create_feature_backbone', 'freeze_backbone_levels', 'num_backbone_levels',
    'resolve_trainable_levels', 'child_levels', 'check_detector_classes', 'check_segmenter_classes', 'MAX_CLASSES',
    'freeze_classifier_levels',
]

# None/False: random init; True or 'DEFAULT': the published ImageNet weights; a str path: a local checkpoint
WeightsBackbone = Optional[Union[bool, str]]


def create_feature_backbone(
        model_name: str,
        out_indices: Sequence[int],
        weights_backbone: WeightsBackbone = None,
        **kwargs: Any,
) -> nn.Module:
    """A timm ``features_only`` HarDNet returning the maps at ``out_indices`` (0..4 = strides 2..32).

    Args:
        model_name: ``hardnet39ds``, ``hardnet68ds``, ``hardnet68`` or ``hardnet85``.
        out_indices: feature levels to return.
        weights_backbone: None/False for random weights, True or ``'DEFAULT'`` for the published
            ImageNet weights (downloaded, SHA-256 checked), or a path to a local checkpoint.
        kwargs: passed to ``timm.create_model`` (``output_stride``, ``drop_rate``, ...).
    """
    pretrained_kwargs: Dict[str, Any] = {}
    if weights_backbone not in (None, False):
        pretrained_kwargs['pretrained'] = True
        if weights_backbone not in (True, 'DEFAULT'):
            pretrained_kwargs['pretrained_cfg_overlay'] = dict(file=str(weights_backbone))
    return timm.create_model(
        model_name, features_only=True, out_indices=tuple(out_indices), **pretrained_kwargs, **kwargs)


def child_levels(backbone: nn.Module) -> List[int]:
    """Feature level of each child of a ``features_only`` HarDNet: level k ends at the stride-2**(k+1) tap."""
    taps = {info['module'].replace('.', '_') for info in backbone.feature_info.info}
    levels, level = [], 0
    for name, _ in backbone.named_children():
        levels.append(level)
        if name in taps:
            level += 1
    return levels


def num_backbone_levels(backbone: nn.Module) -> int:
    """Number of feature levels (stem = 1) present in a ``features_only`` HarDNet."""
    return child_levels(backbone)[-1] + 1


# more classes than any detection or segmentation set has (LVIS: 1,203; ImageNet-21k: 21,841): a larger count is a
# mistake, which would otherwise end in an out-of-memory error minutes later (a head of a billion weights)
MAX_CLASSES = 100_000


def _check_class_count(num_classes: Any, low: int, what: str) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not low <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes {what} and must be an integer in [{low}, {MAX_CLASSES:,}], got {num_classes!r}')


def check_detector_classes(num_classes: int) -> None:
    """A torchvision detector's ``num_classes`` counts the background: 2 to ``MAX_CLASSES``."""
    _check_class_count(num_classes, 2, 'counts the background too')


def check_segmenter_classes(num_classes: int) -> None:
    """A segmenter's ``num_classes`` (the background included when there is one): 1 to ``MAX_CLASSES``."""
    _check_class_count(num_classes, 1, 'counts the background too, where there is one,')


def resolve_trainable_levels(trainable: Optional[int], pretrained: bool, max_value: int, default: int) -> int:
    """torchvision's rule: everything trains without pretrained weights, else ``trainable`` (0..max_value).

    The range is checked either way, so a value is refused or accepted the same with and without weights.
    """
    value = default if trainable is None else trainable
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= max_value:
        raise ValueError(f'trainable_backbone_layers must be an integer in [0, {max_value}], got {trainable!r}')
    return value if pretrained else max_value


def freeze_backbone_levels(backbone: nn.Module, trainable_levels: int) -> None:
    """Freeze all but the last ``trainable_levels`` levels: no gradients, BatchNorm frozen too."""
    levels = child_levels(backbone)
    frozen_below = levels[-1] + 1 - trainable_levels
    for (name, child), level in zip(list(backbone.named_children()), levels):
        if level < frozen_below:
            child.requires_grad_(False)
            setattr(backbone, name, freeze_batch_norm_2d(child))


def freeze_classifier_levels(model: nn.Module, trainable_levels: int) -> None:
    """Freeze a timm classifier below its last ``trainable_levels`` feature levels, counted from the deepest (its
    ``feature_info``, as ``trainable_backbone_layers`` counts them for the detectors): 0 trains the head alone (a
    linear probe), the number of levels trains everything. Frozen parts get no gradients and frozen BatchNorm.

    Raises:
        ValueError: ``trainable_levels`` outside [0, number of levels].
    """
    taps = [info['module'] for info in model.feature_info]
    if isinstance(trainable_levels, bool) or not isinstance(trainable_levels, int) or not (
            0 <= trainable_levels <= len(taps)):
        raise ValueError(f'trainable_backbone_layers must be an integer in [0, {len(taps)}] for '
                         f'{type(model).__name__} (0: the head alone), got {trainable_levels!r}')
    if trainable_levels == len(taps):
        return
    boundary = taps[len(taps) - trainable_levels - 1]  # the deepest level that stays frozen
    names = [name for name, _ in model.named_parameters()]
    last = max(i for i, name in enumerate(names) if name.startswith(boundary + '.'))
    frozen = set(names[:last + 1])
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    for name, module in list(model.named_modules()):
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.BatchNorm2d) and own and not any(p.requires_grad for p in own):
            parent_name, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent_name) if parent_name else model, child, freeze_batch_norm_2d(module))
