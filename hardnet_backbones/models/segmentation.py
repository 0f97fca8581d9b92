"""torchvision FCN / DeepLabV3 / LR-ASPP segmentation models on HarDNet backbones.

Modelled on torchvision's ``fcn_resnet50`` / ``deeplabv3_resnet50`` / ``lraspp_mobilenet_v3_large``:
a backbone adapter returning the named maps the heads expect, a private assembler and thin
public builders with keyword-only ``num_classes``, ``aux_loss``, ``weights_backbone``.

All models take normalised ``(B, 3, H, W)`` images and return ``{"out": (B, K, H, W)}`` logits
(plus ``"aux"`` when built with ``aux_loss=True``) at the input resolution.
"""
from collections import OrderedDict
from typing import Dict, Sequence

import torch
import torch.nn as nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCN, FCNHead
from torchvision.models.segmentation.lraspp import LRASPP

from .backbone import WeightsBackbone, check_segmenter_classes, create_feature_backbone
from .registry import register_model

__all__ = [
    'HarDNetSegmentationBackbone', 'fcn_hardnet39ds', 'fcn_hardnet68ds', 'fcn_hardnet68', 'fcn_hardnet85',
    'deeplabv3_hardnet68', 'lraspp_hardnet39ds',
]

_STRIDE_16, _STRIDE_32 = 3, 4  # feature levels of timm's features_only HarDNet
_STRIDE_8 = 2


class HarDNetSegmentationBackbone(nn.Module):
    """A timm ``features_only`` HarDNet whose maps come out as a dict under the names a head expects.

    Args:
        body: timm ``features_only`` model.
        names: one key per returned map, in ``out_indices`` order (e.g. ``('aux', 'out')``).
    """
    __jit_unused_properties__ = ['channels']

    def __init__(self, body: nn.Module, names: Sequence[str]):
        super().__init__()
        if len(names) != len(body.feature_info.out_indices):
            raise ValueError(f'{len(names)} names for {len(body.feature_info.out_indices)} feature maps')
        self.body = body
        self.names = list(names)

    @property
    def channels(self) -> Dict[str, int]:
        return dict(zip(self.names, self.body.feature_info.channels()))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = OrderedDict()
        for name, feature in zip(self.names, self.body(x)):
            out[name] = feature
        return out


def _backbone(
        name: str, levels: Dict[str, int], weights_backbone: WeightsBackbone,
        output_stride: int) -> HarDNetSegmentationBackbone:
    ordered = sorted(levels.items(), key=lambda item: item[1])
    body = create_feature_backbone(
        name, [level for _, level in ordered], weights_backbone, output_stride=output_stride)
    return HarDNetSegmentationBackbone(body, [key for key, _ in ordered])


def _fcn_hardnet(
        backbone_name: str, num_classes: int, aux_loss: bool, weights_backbone: WeightsBackbone,
        output_stride: int) -> FCN:
    check_segmenter_classes(num_classes)
    levels = {'out': _STRIDE_32, **({'aux': _STRIDE_16} if aux_loss else {})}
    backbone = _backbone(backbone_name, levels, weights_backbone, output_stride)
    channels = backbone.channels
    aux = FCNHead(channels['aux'], num_classes) if aux_loss else None
    return FCN(backbone, FCNHead(channels['out'], num_classes), aux)


@register_model('segmentation')
def fcn_hardnet39ds(*, num_classes: int = 21, aux_loss: bool = True, weights_backbone: WeightsBackbone = None,
                    output_stride: int = 32) -> FCN:
    """FCN on HarDNet-39DS: FCNHead on the stride-32 map, auxiliary FCNHead on the stride-16 map.

    Args:
        num_classes: output classes, background included (VOC: 21).
        aux_loss: add the auxiliary head (its output is ``"aux"``).
        weights_backbone: None, True/'DEFAULT' (published ImageNet weights) or a checkpoint path.
        output_stride: 32, 16 or 8; deeper stages run dilated below 32.
    """
    return _fcn_hardnet('hardnet39ds', num_classes, aux_loss, weights_backbone, output_stride)


@register_model('segmentation')
def fcn_hardnet68ds(*, num_classes: int = 21, aux_loss: bool = True, weights_backbone: WeightsBackbone = None,
                    output_stride: int = 32) -> FCN:
    """FCN on HarDNet-68DS; arguments as :func:`fcn_hardnet39ds`."""
    return _fcn_hardnet('hardnet68ds', num_classes, aux_loss, weights_backbone, output_stride)


@register_model('segmentation')
def fcn_hardnet68(*, num_classes: int = 21, aux_loss: bool = True, weights_backbone: WeightsBackbone = None,
                  output_stride: int = 32) -> FCN:
    """FCN on HarDNet-68; arguments as :func:`fcn_hardnet39ds`."""
    return _fcn_hardnet('hardnet68', num_classes, aux_loss, weights_backbone, output_stride)


@register_model('segmentation')
def fcn_hardnet85(*, num_classes: int = 21, aux_loss: bool = True, weights_backbone: WeightsBackbone = None,
                  output_stride: int = 32) -> FCN:
    """FCN on HarDNet-85; arguments as :func:`fcn_hardnet39ds`."""
    return _fcn_hardnet('hardnet85', num_classes, aux_loss, weights_backbone, output_stride)


@register_model('segmentation')
def deeplabv3_hardnet68(*, num_classes: int = 21, aux_loss: bool = True, weights_backbone: WeightsBackbone = None,
                        output_stride: int = 8) -> DeepLabV3:
    """DeepLabV3 (ASPP head) on HarDNet-68, dilated to output stride 8 by default like torchvision's.

    Args: as :func:`fcn_hardnet39ds`; ``output_stride`` 8 (default) or 16.
    """
    if output_stride not in (8, 16):
        raise ValueError(f'deeplabv3_hardnet68 supports output_stride 8 or 16, got {output_stride}')
    check_segmenter_classes(num_classes)
    levels = {'out': _STRIDE_32, **({'aux': _STRIDE_16} if aux_loss else {})}
    backbone = _backbone('hardnet68', levels, weights_backbone, output_stride)
    channels = backbone.channels
    aux = FCNHead(channels['aux'], num_classes) if aux_loss else None
    return DeepLabV3(backbone, DeepLabHead(channels['out'], num_classes), aux)


@register_model('segmentation')
def lraspp_hardnet39ds(*, num_classes: int = 21, weights_backbone: WeightsBackbone = None,
                       inter_channels: int = 128, dilated_last_stage: bool = False) -> LRASPP:
    """LR-ASPP on HarDNet-39DS: low-level branch on the stride-8 map, high-level branch on the stride-16 map.

    Args:
        num_classes: output classes, background included.
        weights_backbone: None, True/'DEFAULT' (published ImageNet weights) or a checkpoint path.
        inter_channels: width of the high-level branch.
        dilated_last_stage: feed the high-level branch from the last stage run dilated at stride 16,
            as torchvision's ``lraspp_mobilenet_v3_large`` does (the layout before 0.2). On HarDNet-39DS
            that stage costs as much as the rest of the network at stride 16, so by default the branch
            taps the end of the third stage and the last stage is not run.
    """
    high = _STRIDE_32 if dilated_last_stage else _STRIDE_16
    check_segmenter_classes(num_classes)
    backbone = _backbone('hardnet39ds', {'low': _STRIDE_8, 'high': high}, weights_backbone, output_stride=16)
    channels = backbone.channels
    return LRASPP(backbone, channels['low'], channels['high'], num_classes, inter_channels)
