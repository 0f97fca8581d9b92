"""SSD512-HarDNet68 and -HarDNet85 as published (PingoLH/PytorchSSD-HarDNet, 2019), in torchvision's ``SSD``.

The published backbone (the ImageNet HarDNet's first modules with max pooling, an L2-normalised stride-8 map and a
"bridge" at stride 16), its ten extra convolutions (with bias, no BatchNorm), torchvision's ``SSDHead`` in the
published anchor layout (6, 6, 6, 6, 6, 4, 4 boxes per location) and ``DefaultBoxGenerator`` settings that give
the published priors exactly. The published COCO files (plain state dicts, keys with or without ``module.``) load
strictly through :func:`ssd512_checkpoint_filter`. Pre-processing: the published network takes BGR images minus
the means (104, 117, 123) on the 0-255 scale; here the RGB image goes through torchvision's transform with mean
(123, 117, 104) / 255 and std 1 / 255, and the first convolution's input channels are reversed on loading, which
is the same computation.
"""
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import Weights, WeightsEnum
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSDHead

from ..errors import CheckpointError
from .backbone import WeightsBackbone, check_detector_classes, resolve_trainable_levels
from .detection_transform import check_detector_images, check_detector_kwargs
from .layers import ConvLayer
from .published_base import BaseSpec, base_levels, build_base, freeze_base_levels, imagenet_base_weights, load_base
from .published_weights import classes_with_weights, coco_categories, resolve_weights, to_image_tensor
from .registry import register_model
from .ssd512_postprocess import INCLUSIVE_BOXES_KEY, InclusiveBoxesTransform, PublishedSSD, inclusive_boxes_entry
from .state_dict import match_state_dict, rename_prefixes, unwrap_state_dict

__all__ = ['SSD512HarDNetBackbone', 'L2Norm', 'SSD512_HarDNet68_Weights', 'SSD512_HarDNet85_Weights',
           'ssd512_hardnet68', 'ssd512_hardnet85', 'ssd512_checkpoint_filter', 'published_ssd512_anchors']

# the published input: BGR - (104, 117, 123) on 0-255; in RGB order for torchvision's transform
SSD512_MEAN_RGB = (123 / 255, 117 / 255, 104 / 255)
SSD512_STD_RGB = (1 / 255, 1 / 255, 1 / 255)
_ANCHORS_PER_LOCATION = (6, 6, 6, 6, 6, 4, 4)
_MIN_SIZE = 257


@dataclass(frozen=True)
class _SSD512Spec:
    base: BaseSpec
    bridge_in_base: bool  # HarDNet68: the dilated bridge is base.13; HarDNet85: a top-level `bridge`


_SPECS = {
    'hardnet68': _SSD512Spec(BaseSpec(stem=(32, 64), blocks=((14, 8), (16, 16), (20, 16), (40, 16)),
                                      transitions=(128, 256, 320, 640), pools=('ceil', None, 'floor', None)), True),
    'hardnet85': _SSD512Spec(BaseSpec(stem=(48, 96), blocks=((24, 8), (24, 16), (28, 16), (36, 16), (48, 16)),
                                      transitions=(192, 256, 320, 480, 720),
                                      pools=('ceil', None, 'floor', None, None)), False),
}
_L2NORM_AFTER = 9  # base index of the stride-8 source (the 1x1 transition to 320 channels)


class L2Norm(nn.Module):
    """Per position: ``weight[c] * x / (||x||_2 over channels + 1e-10)`` (the epsilon after the square root)."""

    def __init__(self, channels: int, scale: float = 20.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return self.weight[None, :, None, None] * x / norm


def _bridge(variant: str, chs: int) -> nn.Sequential:
    if variant == 'hardnet68':  # 3x3 max pool (stride 1), a 3x3 conv dilated 4, BatchNorm, ReLU, then a 1x1 ConvLayer
        return nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                             nn.Conv2d(chs, chs, 3, padding=4, dilation=4, bias=False), nn.BatchNorm2d(chs),
                             nn.ReLU(inplace=True), ConvLayer(chs, chs, 1, act_layer=nn.ReLU))
    return nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), ConvLayer(chs, 960, 3, act_layer=nn.ReLU),
                         ConvLayer(960, chs, 1, act_layer=nn.ReLU))


def _extras(in_chs: int) -> nn.ModuleList:
    """Ten convolutions with bias (each followed by ReLU); the odd ones give the maps at strides 32 to 512."""
    layers: List[nn.Module] = [nn.Conv2d(in_chs, 256, 1), nn.Conv2d(256, 512, 3, stride=2, padding=1),
                               nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, stride=2, padding=1)]
    for _ in range(2):
        layers += [nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 3, stride=2, padding=1)]
    layers += [nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 4, stride=1, padding=1)]
    for m in layers:
        nn.init.zeros_(m.bias)
    return nn.ModuleList(layers)


class SSD512HarDNetBackbone(nn.Module):
    """The published SSD512-HarDNet feature extractor: 7 maps (strides 8 to 512 at 512 px) for ``SSDHead``.

    ``out_channels``: 320, 640 (68) / 720 (85), 512, 256, 256, 256, 256.
    """

    def __init__(self, variant: str):
        super().__init__()
        if variant not in _SPECS:
            raise ValueError(f'variant must be one of {sorted(_SPECS)}, got {variant!r}')
        spec = _SPECS[variant]
        modules, channels = build_base(spec.base, nn.MaxPool2d)
        last = channels[-1]
        if spec.bridge_in_base:
            modules.append(_bridge(variant, last))
        self.base = nn.ModuleList(modules)
        self.bridge = nn.Identity() if spec.bridge_in_base else _bridge(variant, last)
        for m in self.bridge.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out')
        self.l2norm = L2Norm(channels[_L2NORM_AFTER])
        self.l2norm_after = _L2NORM_AFTER  # an attribute: TorchScript reads no module globals
        self.extras = _extras(last)
        self.levels = base_levels(self.base)
        self.out_channels = [channels[_L2NORM_AFTER], last, 512, 256, 256, 256, 256]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        maps: List[torch.Tensor] = []
        for i, module in enumerate(self.base):
            x = module(x)
            if i == self.l2norm_after:
                maps.append(self.l2norm(x))
        x = self.bridge(x)
        maps.append(x)
        for i, conv in enumerate(self.extras):
            x = F.relu(conv(x), inplace=True)
            if i % 2 == 1:
                maps.append(x)
        return OrderedDict([(str(i), m) for i, m in enumerate(maps)])


def published_ssd512_anchors() -> DefaultBoxGenerator:
    """torchvision's generator set to give the published COCO_512 priors, in their order: scales = the min sizes
    / 512 then 1.06 (each level's max size is the next one's min size), aspect ratios 2 and 3 on the first five
    levels and 2 on the last two, the published steps, clipped."""
    return DefaultBoxGenerator([[2, 3]] * 5 + [[2], [2]], scales=[0.04, 0.10, 0.26, 0.42, 0.58, 0.74, 0.90, 1.06],
                               steps=[8, 16, 32, 64, 128, 256, 512], clip=True)


_PUBLISHED_NAMES = (('base.', 'backbone.base.'), ('bridge.', 'backbone.bridge.'), ('extras.', 'backbone.extras.'),
                    ('L2Norm.', 'backbone.l2norm.'), ('loc.', 'head.regression_head.module_list.'),
                    ('conf.', 'head.classification_head.module_list.'))


def ssd512_checkpoint_filter(state_dict: Dict[str, Any], model: PublishedSSD,
                             replace_classifier: bool = False) -> Dict[str, torch.Tensor]:
    """Published SSD512-HarDNet keys (``base.*``, ``L2Norm.weight``, ``loc.*``, ``conf.*``; with or without
    ``module.``) or ours -> this model's, validated strictly. A published file's first convolution takes BGR: its
    input channels are reversed for the RGB images this model normalises. ``replace_classifier`` leaves the class
    head out (fine-tuning to another class count keeps everything else). ``transform.inclusive_boxes`` follows
    :func:`~hardnet_backbones.models.ssd512_postprocess.inclusive_boxes_entry` (1 for a published file with its
    class head, unless the model was built with ``inclusive_boxes`` set)."""
    tensors = unwrap_state_dict(state_dict)
    published = 'L2Norm.weight' in tensors
    renamed = rename_prefixes(tensors, _PUBLISHED_NAMES) if published else dict(tensors)
    if published:
        renamed['backbone.base.0.conv.weight'] = renamed['backbone.base.0.conv.weight'].flip(1)
    renamed[INCLUSIVE_BOXES_KEY] = inclusive_boxes_entry(getattr(model, 'inclusive_boxes', None),
                                                         published and not replace_classifier,
                                                         renamed.get(INCLUSIVE_BOXES_KEY),
                                                         model.transform.inclusive_boxes)
    classifier = 'head.classification_head.'
    if replace_classifier:
        renamed = {k: v for k, v in renamed.items() if not k.startswith(classifier)}
        return match_state_dict(renamed, model, adaptable=[k for k in model.state_dict() if k.startswith(classifier)],
                                what=f'{type(model).__name__} model')
    found, expected = weights_classes(renamed), model.head.classification_head.num_columns
    if found is not None and found != expected:
        raise CheckpointError(f'the weights have {found} classes (the background included), the model '
                              f'{expected}: build it with num_classes={found}')
    return match_state_dict(renamed, model, what=f'{type(model).__name__} model')


def weights_classes(state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
    """The class count (background included) of SSD512 weights, published or ours; None if it has no class head."""
    for key in ('conf.0.weight', 'head.classification_head.module_list.0.weight'):
        if key in state_dict:
            return state_dict[key].shape[0] // _ANCHORS_PER_LOCATION[0]
    return None


_META = dict(categories=['__background__', *coco_categories()], num_classes=81, input_size=512,
             channel_order='BGR (the first convolution is reversed on loading: the model takes RGB)',
             mean=(104, 117, 123), std=(1, 1, 1), license='MIT (PingoLH/PytorchSSD-HarDNet)',
             recipe='https://github.com/PingoLH/PytorchSSD-HarDNet')


class SSD512_HarDNet68_Weights(WeightsEnum):
    """The published COCO weights of SSD512-HarDNet68 (no hash published: pinned on first use)."""
    COCO = Weights(url='https://ping-chao.com/hardnet/SSD512_HarDNet68_COCO.pth', transforms=partial(to_image_tensor),
                   meta=dict(_META, _metrics={'COCO-test-dev': {'box_map': 31.7}}, fps_gtx1080ti=46.7))
    DEFAULT = COCO


class SSD512_HarDNet85_Weights(WeightsEnum):
    """The published COCO weights of SSD512-HarDNet85 (no hash published: pinned on first use)."""
    COCO = Weights(url='https://ping-chao.com/hardnet/SSD512_HarDNet85_COCO.pth', transforms=partial(to_image_tensor),
                   meta=dict(_META, _metrics={'COCO-test-dev': {'box_map': 35.1}}, fps_gtx1080ti=39.4))
    DEFAULT = COCO


_WEIGHTS = {'hardnet68': SSD512_HarDNet68_Weights, 'hardnet85': SSD512_HarDNet85_Weights}


def _ssd512(variant: str, *, weights: Any, progress: bool, num_classes: Optional[int],
            weights_backbone: WeightsBackbone, trainable_backbone_layers: Optional[int], size: Optional[int],
            inclusive_boxes: Optional[bool], **kwargs: Any) -> PublishedSSD:
    state_dict = resolve_weights(weights, _WEIGHTS[variant], progress) if weights is not None else None
    published_classes = weights_classes(unwrap_state_dict(state_dict)) if state_dict is not None else None
    num_classes, replace = classes_with_weights(num_classes, published_classes, 91, f'ssd512_{variant}', 'class head')
    check_detector_classes(num_classes)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < _MIN_SIZE):
        raise ValueError(f'size must be an integer of at least {_MIN_SIZE} pixels (the last extra layer, a 4x4 '
                         f'convolution, needs a 2x2 map at stride 256), got {size!r}')
    if inclusive_boxes is not None and not isinstance(inclusive_boxes, bool):
        raise ValueError(f'inclusive_boxes must be true, false or null (automatic), got {inclusive_boxes!r}')
    check_detector_kwargs(PublishedSSD, kwargs)
    backbone = SSD512HarDNetBackbone(variant)
    anchors = published_ssd512_anchors()
    head = SSDHead(backbone.out_channels, anchors.num_anchors_per_location(), num_classes)
    # the published post-processing: score 0.02, NMS 0.45, the best 50 per class, 200 per image
    defaults: Dict[str, Any] = dict(image_mean=list(SSD512_MEAN_RGB), image_std=list(SSD512_STD_RGB),
                                    score_thresh=0.02, nms_thresh=0.45, detections_per_img=200)
    model = PublishedSSD(backbone, anchors, (size or 512,) * 2, num_classes, head=head, **{**defaults, **kwargs})
    levels = backbone.levels[-1] + 1
    pretrained = weights is not None or weights_backbone not in (None, False)
    trainable = resolve_trainable_levels(trainable_backbone_layers, pretrained, levels, 3)
    model = check_detector_images(model, InclusiveBoxesTransform)
    model.inclusive_boxes = inclusive_boxes  # the setting; None: the weights' (see ssd512_checkpoint_filter)
    model.transform.inclusive_boxes.fill_(bool(inclusive_boxes))
    if state_dict is not None:
        model.load_state_dict(ssd512_checkpoint_filter(state_dict, model, replace_classifier=replace),
                              strict=not replace)
    elif weights_backbone not in (None, False):
        bridge = (len(backbone.base) - 1,) if _SPECS[variant].bridge_in_base else ()
        load_base(backbone.base, imagenet_base_weights(weights_backbone, variant), 'SSD512 backbone', optional=bridge)
    if trainable < levels:
        freeze_base_levels(backbone.base, trainable)
    return model


_DOC = """
    Args:
        weights: ``'COCO'`` (or :class:`{enum}`): the published COCO weights, downloaded once and pinned; or a local
            file (published or ours).
        progress: show a download progress bar.
        num_classes: classes with the background (default: the weights', else 91). Another count than the
            weights' replaces the class head and keeps the rest (fine-tuning).
        weights_backbone: ImageNet weights for ``base`` (DEFAULT: the published {variant} classifier; or a file in
            the published layout).
        trainable_backbone_layers: ``base`` levels trained, counted from the deepest (0-4; default 3 with weights).
        size: the square input (default 512, as published).
        inclusive_boxes: add 1 to each output box's ``x2`` and ``y2``, for weights trained on inclusive boxes
            (``x2 = x1 + w - 1``) as the published ones were. Default (None): the weights' own: on for a published
            file with its class head (also loaded later, as ``tools/evaluate.py --checkpoint`` does), kept from a
            checkpoint of ours, else off.
        kwargs: passed to :class:`~hardnet_backbones.models.ssd512_postprocess.PublishedSSD`, torchvision's
            ``SSD`` with the published post-processing (``score_thresh`` 0.02, ``nms_thresh`` 0.45,
            ``per_class_detections`` 50, ``detections_per_img`` 200, ties kept).
"""


@register_model('detection', input_size=512, kwargs_class=PublishedSSD, checkpoint_filter=ssd512_checkpoint_filter)
def ssd512_hardnet68(*, weights: Optional[Union[str, Path, SSD512_HarDNet68_Weights]] = None, progress: bool = True,
                     num_classes: Optional[int] = None, weights_backbone: WeightsBackbone = None,
                     trainable_backbone_layers: Optional[int] = None, size: Optional[int] = None,
                     inclusive_boxes: Optional[bool] = None, **kwargs: Any) -> PublishedSSD:
    return _ssd512('hardnet68', weights=weights, progress=progress, num_classes=num_classes,
                   weights_backbone=weights_backbone, trainable_backbone_layers=trainable_backbone_layers, size=size,
                   inclusive_boxes=inclusive_boxes, **kwargs)


@register_model('detection', input_size=512, kwargs_class=PublishedSSD, checkpoint_filter=ssd512_checkpoint_filter)
def ssd512_hardnet85(*, weights: Optional[Union[str, Path, SSD512_HarDNet85_Weights]] = None, progress: bool = True,
                     num_classes: Optional[int] = None, weights_backbone: WeightsBackbone = None,
                     trainable_backbone_layers: Optional[int] = None, size: Optional[int] = None,
                     inclusive_boxes: Optional[bool] = None, **kwargs: Any) -> PublishedSSD:
    return _ssd512('hardnet85', weights=weights, progress=progress, num_classes=num_classes,
                   weights_backbone=weights_backbone, trainable_backbone_layers=trainable_backbone_layers, size=size,
                   inclusive_boxes=inclusive_boxes, **kwargs)


ssd512_hardnet68.__doc__ = ('SSD512-HarDNet68 as published (25.7 M parameters with 81 classes; 31.7 COCO test-dev '
                            'AP).' + _DOC.format(enum='SSD512_HarDNet68_Weights', variant='hardnet68'))
ssd512_hardnet85.__doc__ = ('SSD512-HarDNet85 as published (38.8 M parameters with 81 classes; 35.1 COCO test-dev '
                            'AP).' + _DOC.format(enum='SSD512_HarDNet85_Weights', variant='hardnet85'))
