"""torchvision's FPN detectors on HarDNet: Faster R-CNN, RetinaNet, FCOS and Mask R-CNN.

Modelled on torchvision's ``fasterrcnn_resnet50_fpn``, ``fasterrcnn_mobilenet_v3_large_fpn`` (and its
320-px form), ``retinanet_resnet50_fpn_v2``, ``fcos_resnet50_fpn`` and ``maskrcnn_resnet50_fpn``: the same
heads, anchors and defaults on a :class:`~hardnet_backbones.models.fpn.HarDNetFPN` backbone, public builders
with keyword-only ``num_classes``, ``weights_backbone``, ``trainable_backbone_layers`` and ``**kwargs`` for
the detector class. The models resize their images themselves (``min_size`` / ``max_size``, 800 / 1333 by
default) and take a list of ``(3, H, W)`` float images in [0, 1].
"""
from functools import partial
from typing import Any, Optional

import torch.nn as nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.mask_rcnn import MaskRCNN
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from .backbone import WeightsBackbone, check_detector_classes
from .detection_transform import check_detector_images, check_detector_kwargs
from .fpn import HarDNetFPN, hardnet_fpn_backbone
from .registry import register_model

__all__ = ['fasterrcnn_hardnet68_fpn', 'fasterrcnn_hardnet39ds_fpn', 'fasterrcnn_hardnet39ds_320_fpn',
           'retinanet_hardnet68_fpn', 'fcos_hardnet68_fpn', 'maskrcnn_hardnet68_fpn']


def _pyramid(name: str, weights_backbone: WeightsBackbone, trainable: Optional[int], **kwargs: Any) -> HarDNetFPN:
    return hardnet_fpn_backbone(name, weights_backbone=weights_backbone, trainable_layers=trainable, **kwargs)


def _detector(detector_class: type, backbone: nn.Module, num_classes: int, **kwargs: Any) -> nn.Module:
    check_detector_kwargs(detector_class, kwargs)
    return check_detector_images(detector_class(backbone, num_classes, **kwargs))


def _anchors_per_level(sizes, levels: int) -> AnchorGenerator:
    return AnchorGenerator((tuple(sizes),) * levels, ((0.5, 1.0, 2.0),) * levels)


def _retinanet_anchors() -> AnchorGenerator:
    """torchvision's RetinaNet anchors: three scales an octave apart per level, three aspect ratios."""
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


_ARGS_DOC = """
    Args:
        num_classes: classes including the background (COCO: 91).
        weights_backbone: None for random init, True/'DEFAULT' for the published ImageNet weights,
            or a path to a local HarDNet checkpoint.
        trainable_backbone_layers: backbone feature levels trained, counted from the deepest (0..5; the
            rest is frozen, BatchNorm included); None: 3. All train when weights_backbone is None.
        kwargs: passed to the torchvision detector class (``min_size``, ``max_size``, score thresholds, ...).
"""


@register_model('detection', kwargs_class=FasterRCNN)
def fasterrcnn_hardnet68_fpn(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                             trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FasterRCNN:
    check_detector_classes(num_classes)
    backbone = _pyramid('hardnet68', weights_backbone, trainable_backbone_layers)
    return _detector(FasterRCNN, backbone, num_classes, **kwargs)


def _fasterrcnn_hardnet39ds(num_classes: int, weights_backbone: WeightsBackbone, trainable: Optional[int],
                            **kwargs: Any) -> FasterRCNN:
    """The mobile pair of torchvision's MobileNetV3 Faster R-CNN: the stride-16 and stride-32 maps and a pooled
    stride-64 one, five anchor sizes at every level."""
    check_detector_classes(num_classes)
    backbone = _pyramid('hardnet39ds', weights_backbone, trainable, returned_layers=[3, 4])
    anchors = _anchors_per_level((32, 64, 128, 256, 512), levels=3)
    return _detector(FasterRCNN, backbone, num_classes, rpn_anchor_generator=anchors, **kwargs)


@register_model('detection', kwargs_class=FasterRCNN)
def fasterrcnn_hardnet39ds_fpn(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                               trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FasterRCNN:
    return _fasterrcnn_hardnet39ds(num_classes, weights_backbone, trainable_backbone_layers, **kwargs)


@register_model('detection', kwargs_class=FasterRCNN)
def fasterrcnn_hardnet39ds_320_fpn(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                                   trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FasterRCNN:
    defaults = dict(min_size=320, max_size=640, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150,
                    rpn_score_thresh=0.05)
    return _fasterrcnn_hardnet39ds(num_classes, weights_backbone, trainable_backbone_layers, **{**defaults, **kwargs})


@register_model('detection', kwargs_class=RetinaNet)
def retinanet_hardnet68_fpn(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                            trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> RetinaNet:
    check_detector_classes(num_classes)
    check_detector_kwargs(RetinaNet, kwargs)
    last_channels = 1024  # hardnet68's stride-32 map feeds P6, as C5 does in retinanet_resnet50_fpn_v2
    backbone = _pyramid('hardnet68', weights_backbone, trainable_backbone_layers, returned_layers=[2, 3, 4],
                        extra_blocks=LastLevelP6P7(last_channels, 256))
    anchors = _retinanet_anchors()
    head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes,
                         norm_layer=partial(nn.GroupNorm, 32))
    head.regression_head._loss_type = 'giou'
    model = RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, **kwargs)
    return check_detector_images(model)


@register_model('detection', kwargs_class=FCOS)
def fcos_hardnet68_fpn(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                       trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FCOS:
    check_detector_classes(num_classes)
    backbone = _pyramid('hardnet68', weights_backbone, trainable_backbone_layers, returned_layers=[2, 3, 4],
                        extra_blocks=LastLevelP6P7(256, 256))
    return _detector(FCOS, backbone, num_classes, **kwargs)


@register_model('detection', kwargs_class=MaskRCNN)
def maskrcnn_hardnet68_fpn(*, num_classes: int = 91, weights_backbone: WeightsBackbone = None,
                           trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> MaskRCNN:
    check_detector_classes(num_classes)
    backbone = _pyramid('hardnet68', weights_backbone, trainable_backbone_layers, extra_blocks=LastLevelMaxPool())
    return _detector(MaskRCNN, backbone, num_classes, **kwargs)


fasterrcnn_hardnet68_fpn.__doc__ = ('Faster R-CNN on HarDNet-68 with an FPN on strides 4-32 (+ pooled 64), as '
                                    '``fasterrcnn_resnet50_fpn``.' + _ARGS_DOC)
fasterrcnn_hardnet39ds_fpn.__doc__ = ('Faster R-CNN on HarDNet-39DS with an FPN on strides 16, 32 (+ pooled 64), '
                                      'as ``fasterrcnn_mobilenet_v3_large_fpn``.' + _ARGS_DOC)
fasterrcnn_hardnet39ds_320_fpn.__doc__ = ('The low-resolution form of :func:`fasterrcnn_hardnet39ds_fpn` (images '
                                          'resized to 320-640 px), as ``fasterrcnn_mobilenet_v3_large_320_fpn``.'
                                          + _ARGS_DOC)
retinanet_hardnet68_fpn.__doc__ = ('RetinaNet on HarDNet-68, P3-P7, GroupNorm head and GIoU box loss, as '
                                   '``retinanet_resnet50_fpn_v2``.' + _ARGS_DOC)
fcos_hardnet68_fpn.__doc__ = 'FCOS on HarDNet-68, P3-P7, as ``fcos_resnet50_fpn``.' + _ARGS_DOC
maskrcnn_hardnet68_fpn.__doc__ = ('Mask R-CNN on HarDNet-68 with an FPN on strides 4-32 (+ pooled 64), as '
                                  '``maskrcnn_resnet50_fpn``; predicts a mask per detection.' + _ARGS_DOC)
