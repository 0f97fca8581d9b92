"""torch.hub entry points of this repository.

    model = torch.hub.load('<owner>/hardnet-backbones', 'hardnet68', pretrained=True)   # or a local checkout,
    model = torch.hub.load('path/to/hardnet-backbones', 'hardnet68', source='local', num_classes=10)

The four ImageNet classifiers take timm's keyword arguments (``num_classes``: a new head on the pretrained body;
``features_only=True``: the multi-scale backbone; ``pretrained_cfg_overlay=dict(file=PATH)``: a local weights file);
the detection and segmentation builders take torchvision's (``num_classes``, ``weights_backbone``, ...).
"""
dependencies = ['torch', 'torchvision', 'timm']

import timm as _timm  # noqa: E402  (torch.hub reads `dependencies` first)
import torch as _torch  # noqa: E402

import hardnet_backbones as _hardnet_backbones  # noqa: E402,F401  (registers the HarDNet models with timm)
from hardnet_backbones.models import (  # noqa: E402,F401
    centernet_hardnet68, centernet_hardnet85, deeplabv3_hardnet68, fasterrcnn_hardnet39ds_320_fpn,
    fasterrcnn_hardnet39ds_fpn, fasterrcnn_hardnet68_fpn, fchardnet70, fcn_hardnet39ds, fcn_hardnet68, fcn_hardnet68ds,
    fcn_hardnet85, fcos_hardnet68_fpn, lraspp_hardnet39ds, maskrcnn_hardnet68_fpn, retinanet_hardnet68_fpn,
    ssd300_hardnet68, ssd512_hardnet68, ssd512_hardnet85, ssdlite320_hardnet39ds, ssdlite320_hardnet68ds)


def _classifier(name: str, pretrained: bool, **kwargs) -> _torch.nn.Module:
    return _timm.create_model(name, pretrained=pretrained, **kwargs)


_CLASSIFIER_DOC = """{title}, ImageNet-1k classifier: {params} M parameters, {gmacs} GMACs at 224 px,
    published top-1 / top-5 {top1} / {top5} % (1 crop: resize 256, centre crop 224, bilinear, ImageNet mean, std).

    Args:
        pretrained: load the published ImageNet weights (downloaded once, SHA-256 checked, cached where timm
            looks); offline with no cached copy this raises one clear ``DownloadError``.
        kwargs: passed to ``timm.create_model``: ``num_classes=10`` gives a new 10-class head on the pretrained
            body, ``features_only=True`` (with ``out_indices``) the multi-scale backbone, ``drop_rate``,
            ``in_chans``, ``pretrained_cfg_overlay=dict(file=PATH)`` for a local weights file.
    """


def hardnet39ds(pretrained: bool = False, **kwargs) -> _torch.nn.Module:
    return _classifier('hardnet39ds', pretrained, **kwargs)


def hardnet68ds(pretrained: bool = False, **kwargs) -> _torch.nn.Module:
    return _classifier('hardnet68ds', pretrained, **kwargs)


def hardnet68(pretrained: bool = False, **kwargs) -> _torch.nn.Module:
    return _classifier('hardnet68', pretrained, **kwargs)


def hardnet85(pretrained: bool = False, **kwargs) -> _torch.nn.Module:
    return _classifier('hardnet85', pretrained, **kwargs)


for _entry, _facts in ((hardnet39ds, ('HarDNet-39DS (depthwise-separable)', 3.49, 0.44, 72.08, 90.43)),
                       (hardnet68ds, ('HarDNet-68DS (depthwise-separable)', 4.18, 0.8, 74.29, 91.87)),
                       (hardnet68, ('HarDNet-68', 17.57, 4.3, 76.48, 93.01)),
                       (hardnet85, ('HarDNet-85', 36.67, 9.1, 78.04, 93.89))):
    _entry.__doc__ = _CLASSIFIER_DOC.format(**dict(zip(('title', 'params', 'gmacs', 'top1', 'top5'), _facts)))
