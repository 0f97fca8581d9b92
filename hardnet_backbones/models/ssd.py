"""torchvision SSD / SSDLite detectors on HarDNet backbones.

Modelled on torchvision's ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large``: a backbone adapter
that owns only the extra downsampling layers, and public builders with keyword-only
``num_classes``, ``weights_backbone``, ``trainable_backbone_layers`` and ``**kwargs`` for ``SSD``.

- SSD300/512 take the stride-8 map and, like VGG-SSD's dilated fc6/fc7, the last HarDNet stage
  run dilated at stride 16 (``output_stride=16``); extra blocks add maps down to 1x1
  (6 maps at 300 px, 7 at 512 px, as in the SSD paper).
- SSDLite320 takes the stride-16 and stride-32 maps plus 4 depthwise extra blocks (6 maps).
"""
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.models.detection.ssdlite import SSDLiteHead

from .backbone import (
    WeightsBackbone, check_detector_classes, create_feature_backbone, freeze_backbone_levels, num_backbone_levels,
    resolve_trainable_levels)
from .detection_transform import check_detector_images, check_detector_kwargs
from .registry import register_model

__all__ = [
    'SSDFeatureExtractorHarDNet', 'ssd300_hardnet68', 'ssdlite320_hardnet39ds', 'ssdlite320_hardnet68ds',
]


def _extra_block(in_chs: int, out_chs: int, depthwise: bool, norm_layer: Callable[[int], nn.Module]) -> nn.Sequential:
    """1x1 reduction to ``out_chs // 2``, then a stride-2 3x3 (depthwise + 1x1 for SSDLite) to ``out_chs``."""
    mid = out_chs // 2
    act = partial(nn.ReLU6 if depthwise else nn.ReLU, inplace=True)
    layers: List[nn.Module] = [nn.Conv2d(in_chs, mid, 1, bias=False), norm_layer(mid), act()]
    if depthwise:
        layers += [nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False), norm_layer(mid), act(),
                   nn.Conv2d(mid, out_chs, 1, bias=False), norm_layer(out_chs), act()]
    else:
        layers += [nn.Conv2d(mid, out_chs, 3, stride=2, padding=1, bias=False), norm_layer(out_chs), act()]
    return nn.Sequential(*layers)


class SSDFeatureExtractorHarDNet(nn.Module):
    """HarDNet ``features_only`` maps followed by extra stride-2 blocks, as an SSD backbone.

    Args:
        body: timm ``features_only`` HarDNet; its ``feature_info`` sizes the first extra block.
        extra_channels: output channels of each extra block (one new map each).
        depthwise: SSDLite-style depthwise extra blocks.
        norm_layer: normalisation of the extra blocks.

    Returns from forward: ``OrderedDict`` ``'0'..'N-1'`` of maps, finest first.
    """

    def __init__(
            self,
            body: nn.Module,
            extra_channels: Sequence[int],
            depthwise: bool = False,
            norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        self.body = body
        in_chs = [body.feature_info.channels()[-1]] + list(extra_channels[:-1])
        self.extra = nn.ModuleList(
            _extra_block(i, o, depthwise, norm_layer) for i, o in zip(in_chs, extra_channels))
        for m in self.extra.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        maps = list(self.body(x))
        for block in self.extra:
            maps.append(block(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


@dataclass(frozen=True)
class _SSDSpec:
    backbone: str
    size: int
    out_indices: Tuple[int, ...]
    output_stride: int
    extra_channels: Tuple[int, ...]
    aspect_ratios: Tuple[Tuple[int, ...], ...]
    lite: bool
    min_ratio: float = 0.15
    max_ratio: float = 0.9


_SSD_SPECS: Dict[str, _SSDSpec] = {
    'ssd300_hardnet68': _SSDSpec(
        'hardnet68', 300, (2, 4), 16, (512, 256, 256, 256),
        ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), lite=False),
    'ssdlite320_hardnet39ds': _SSDSpec(
        'hardnet39ds', 320, (3, 4), 32, (512, 256, 256, 128),
        ((2, 3),) * 6, lite=True, min_ratio=0.2, max_ratio=0.95),
    'ssdlite320_hardnet68ds': _SSDSpec(
        'hardnet68ds', 320, (3, 4), 32, (512, 256, 256, 128),
        ((2, 3),) * 6, lite=True, min_ratio=0.2, max_ratio=0.95),
}


def _ssdlite_scratch_init(backbone: nn.Module) -> None:
    """torchvision's recipe for SSDLite trained from scratch (its ``ssdlite320_mobilenet_v3_large`` without
    backbone weights): convolutions drawn from N(0, 0.03), BatchNorm with eps 0.001 and momentum 0.03."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=0.03)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 0.001, 0.03


def _check_ssd_arguments(size: Optional[int], kwargs: Dict[str, Any]) -> None:
    """A square size of at least 32 pixels, and keywords SSD takes."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 32):
        raise ValueError(f'size must be an integer of at least 32 pixels, got {size!r}')
    check_detector_kwargs(SSD, kwargs)


def _build_ssd(
        spec: _SSDSpec,
        num_classes: int,
        weights_backbone: WeightsBackbone,
        trainable_backbone_layers: Optional[int],
        size: Optional[int],
        **kwargs: Any,
) -> SSD:
    check_detector_classes(num_classes)
    _check_ssd_arguments(size, kwargs)
    body = create_feature_backbone(
        spec.backbone, spec.out_indices, weights_backbone, output_stride=spec.output_stride)
    max_levels = num_backbone_levels(body)
    pretrained = weights_backbone not in (None, False)
    # torchvision's defaults: ssd300_vgg16 trains its last levels, ssdlite trains everything
    default = max_levels if spec.lite else 3
    trainable = resolve_trainable_levels(trainable_backbone_layers, pretrained, max_levels, default)
    freeze_backbone_levels(body, trainable)

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03) if spec.lite else nn.BatchNorm2d
    backbone = SSDFeatureExtractorHarDNet(body, spec.extra_channels, depthwise=spec.lite, norm_layer=norm_layer)
    if spec.lite and not pretrained:
        _ssdlite_scratch_init(backbone)
    anchor_generator = DefaultBoxGenerator(
        [list(r) for r in spec.aspect_ratios], min_ratio=spec.min_ratio, max_ratio=spec.max_ratio)
    out_channels = list(body.feature_info.channels()) + list(spec.extra_channels)
    num_anchors = anchor_generator.num_anchors_per_location()
    if spec.lite:
        head = SSDLiteHead(out_channels, num_anchors, num_classes, norm_layer)
    else:
        head = SSDHead(out_channels, num_anchors, num_classes)
    cfg = body.pretrained_cfg
    defaults: Dict[str, Any] = dict(image_mean=list(cfg['mean']), image_std=list(cfg['std']))
    if spec.lite:
        defaults.update(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)
    size = spec.size if size is None else size
    model = SSD(backbone, anchor_generator, (size, size), num_classes, head=head, **{**defaults, **kwargs})
    return check_detector_images(model)


_BUILDER_ARGS_DOC = """
    Args:
        num_classes: classes including the background (COCO: 91).
        weights_backbone: None for random init, True/'DEFAULT' for the published ImageNet weights,
            or a path to a local HarDNet checkpoint.
        trainable_backbone_layers: backbone feature levels trained, counted from the deepest (the
            rest is frozen, BatchNorm included); ignored (all train) when weights_backbone is None.
        size: the square input resolution in pixels (default: the builder's, e.g. 320 for SSDLite320).
        kwargs: passed to ``torchvision.models.detection.SSD`` (score_thresh, nms_thresh, ...).

    The model takes a list of ``(3, H, W)`` float images in [0, 1] of any sizes and resizes them itself.
"""


@register_model('detection', input_size=_SSD_SPECS['ssd300_hardnet68'].size, kwargs_class=SSD)
def ssd300_hardnet68(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                     trainable_backbone_layers: Optional[int] = None, size: Optional[int] = None,
                     **kwargs: Any) -> SSD:
    return _build_ssd(
        _SSD_SPECS['ssd300_hardnet68'], num_classes, weights_backbone, trainable_backbone_layers, size, **kwargs)


@register_model('detection', input_size=_SSD_SPECS['ssdlite320_hardnet39ds'].size, kwargs_class=SSD)
def ssdlite320_hardnet39ds(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                           trainable_backbone_layers: Optional[int] = None, size: Optional[int] = None,
                           **kwargs: Any) -> SSD:
    return _build_ssd(
        _SSD_SPECS['ssdlite320_hardnet39ds'], num_classes, weights_backbone, trainable_backbone_layers, size, **kwargs)


@register_model('detection', input_size=_SSD_SPECS['ssdlite320_hardnet68ds'].size, kwargs_class=SSD)
def ssdlite320_hardnet68ds(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                           trainable_backbone_layers: Optional[int] = None, size: Optional[int] = None,
                           **kwargs: Any) -> SSD:
    return _build_ssd(
        _SSD_SPECS['ssdlite320_hardnet68ds'], num_classes, weights_backbone, trainable_backbone_layers, size, **kwargs)


ssd300_hardnet68.__doc__ = 'SSD300 on HarDNet-68 (stride 8 + dilated stride 16, 4 extra maps).' + _BUILDER_ARGS_DOC
ssdlite320_hardnet39ds.__doc__ = 'SSDLite320 on HarDNet-39DS (strides 16, 32, 4 extra maps).' + _BUILDER_ARGS_DOC
ssdlite320_hardnet68ds.__doc__ = 'SSDLite320 on HarDNet-68DS (strides 16, 32, 4 extra maps).' + _BUILDER_ARGS_DOC
