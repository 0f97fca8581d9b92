"""HarDNet with a feature pyramid, the backbone of torchvision's FPN detectors.

The counterpart of torchvision's ``resnet_fpn_backbone`` / ``mobilenet_backbone(fpn=True)``, built on the
timm ``features_only`` HarDNet (one copy of the network, whose own ``forward`` runs) and
``torchvision.ops.FeaturePyramidNetwork``, as timm and torchvision users combine them.
"""
from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from .backbone import (
    WeightsBackbone, create_feature_backbone, freeze_backbone_levels, num_backbone_levels, resolve_trainable_levels)

__all__ = ['HarDNetFPN', 'hardnet_fpn_backbone']

_NUM_LEVELS = 5  # timm's features_only HarDNet: levels 0..4 at strides 2, 4, 8, 16, 32


class HarDNetFPN(nn.Module):
    """A ``features_only`` HarDNet followed by a feature pyramid: the maps of every returned level, each
    brought to ``out_channels``, finest first, plus the extra block's (``'pool'`` for ``LastLevelMaxPool``).

    Args:
        body: timm ``features_only`` HarDNet returning the levels the pyramid takes.
        out_channels: channels of every pyramid map.
        extra_blocks: extra maps after the last level (``LastLevelMaxPool``, ``LastLevelP6P7``) or None.
        norm_layer: normalisation inside the pyramid's convolutions (None: plain convolutions with bias).

    Attributes:
        out_channels: what torchvision's detectors read to size their heads.
    """

    def __init__(
            self,
            body: nn.Module,
            out_channels: int = 256,
            extra_blocks: Optional[ExtraFPNBlock] = None,
            norm_layer: Optional[Callable[..., nn.Module]] = None,
    ):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            body.feature_info.channels(), out_channels, extra_blocks=extra_blocks, norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        maps = OrderedDict((str(i), m) for i, m in enumerate(self.body(x)))
        return self.fpn(maps)


def hardnet_fpn_backbone(
        backbone_name: str,
        *,
        weights_backbone: WeightsBackbone = None,
        trainable_layers: Optional[int] = 3,
        returned_layers: Optional[Sequence[int]] = None,
        extra_blocks: Optional[ExtraFPNBlock] = None,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
        out_channels: int = 256,
        output_stride: Optional[int] = None,
) -> HarDNetFPN:
    """A HarDNet FPN backbone for torchvision's Faster / Mask R-CNN, RetinaNet and FCOS.

    Args:
        backbone_name: ``hardnet39ds``, ``hardnet68ds``, ``hardnet68`` or ``hardnet85``.
        weights_backbone: None for random weights, True / ``'DEFAULT'`` for the published ImageNet weights,
            or a path to a local HarDNet checkpoint.
        trainable_layers: feature levels trained, counted from the deepest (0..5; the rest is frozen,
            BatchNorm included, as torchvision freezes them); all train without ``weights_backbone``.
            None: 3, torchvision's default.
        returned_layers: feature levels the pyramid takes (1..4 = strides 4, 8, 16, 32; default 1-4, as
            ``resnet_fpn_backbone``).
        extra_blocks: maps added after the last level; default ``LastLevelMaxPool()`` (a stride-64 map).
        norm_layer: normalisation of the pyramid's convolutions (torchvision's v2 detectors: BatchNorm).
        out_channels: channels of the pyramid maps.
        output_stride: run the deepest stages dilated (16 or 8) instead of striding.

    Returns:
        :class:`HarDNetFPN`: ``model(x)`` gives an ``OrderedDict`` of maps; ``model.out_channels``.
    """
    returned = list(returned_layers) if returned_layers is not None else [1, 2, 3, 4]
    if not returned or min(returned) < 1 or max(returned) >= _NUM_LEVELS or len(set(returned)) != len(returned):
        raise ValueError(f'returned_layers must be distinct levels in [1, {_NUM_LEVELS - 1}] (strides 4..32), '
                         f'got {returned_layers}')
    kwargs = {} if output_stride is None else dict(output_stride=output_stride)
    body = create_feature_backbone(backbone_name, sorted(returned), weights_backbone, **kwargs)
    pretrained = weights_backbone not in (None, False)
    max_levels = num_backbone_levels(body)
    trainable = resolve_trainable_levels(trainable_layers, pretrained, max_levels, default=3)
    freeze_backbone_levels(body, trainable)
    return HarDNetFPN(body, out_channels, extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
                      norm_layer)
