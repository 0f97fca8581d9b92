"""FC-HarDNet-70: the U-shaped HarDNet segmentation network (Chao et al., ICCV 2019; PingoLH/FCHarDNet).

Built from the same ``ConvLayer`` and ``HarmonicBlock`` as the classifiers, with plain ReLU.
Checkpoints in the original key layout (``base.N``, ``conv1x1_up.i``, ``denseBlocksUp.i``,
``finalConv``) load through :func:`fchardnet_checkpoint_filter`, also the encoder-only ImageNet
'petite' file (``base.*`` keys). The model returns ``{"out": (B, K, H, W)}`` like torchvision's
segmentation models.
"""
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .backbone import check_segmenter_classes
from .hub import load_weights_file
from .layers import MIN_INPUT_SIZE, ConvLayer, HarmonicBlock, check_image_input, default_init
from .registry import register_model
from .state_dict import match_state_dict, remap_by_position, rename_prefixes, unwrap_state_dict

torch.fx.wrap('check_image_input')  # a leaf for symbolic tracing here too

__all__ = ['FCHarDNet', 'fchardnet70', 'fchardnet_checkpoint_filter', 'FCHARDNET70_CFG']

FCHARDNET70_CFG: Dict[str, Any] = dict(
    stem_chs=(16, 24, 32, 48),
    growth=(10, 16, 18, 24, 32),
    depths=(4, 4, 8, 8, 8),
    widths=(64, 96, 160, 224, 320),
    grmul=1.7,
)


class FCHarDNet(nn.Module):
    """Encoder: 4 stem convs (strides 2, 1, 2, 1), then harmonic block -> 1x1 transition -> 2x2 average
    pooling per stage (no pooling after the last). Decoder, from the deepest skip up: bilinear upsampling
    to the skip's size, concatenation [upsampled, skip], 1x1 ConvLayer to half the channels, harmonic
    block. A 1x1 classifier and bilinear upsampling to the input size finish.

    Args:
        num_classes: output classes.
        stem_chs, growth, depths, widths, grmul: architecture (FC-HarDNet-70 by default).

    Input ``(B, 3, H, W)`` normalised images, H and W at least 32; output ``{"out": (B, num_classes, H, W)}``.
    """

    def __init__(
            self,
            num_classes: int = 19,
            stem_chs=FCHARDNET70_CFG['stem_chs'],
            growth=FCHARDNET70_CFG['growth'],
            depths=FCHARDNET70_CFG['depths'],
            widths=FCHARDNET70_CFG['widths'],
            grmul: float = FCHARDNET70_CFG['grmul'],
    ):
        super().__init__()
        check_segmenter_classes(num_classes)
        act = nn.ReLU
        encoder: 'OrderedDict[str, nn.Module]' = OrderedDict()
        in_chs = 3
        for i, (chs, stride) in enumerate(zip(stem_chs, (2, 1, 2, 1)), start=1):
            encoder[f'stem_conv{i}'] = ConvLayer(in_chs, chs, 3, stride=stride, act_layer=act)
            in_chs = chs
        skip_chs: List[int] = []
        self.skip_names: List[str] = []
        num_stages = len(depths)
        for i in range(num_stages):
            block = HarmonicBlock(in_chs, growth[i], grmul, depths[i], act_layer=act)
            encoder[f'block{i + 1}'] = block
            encoder[f'transition{i + 1}'] = ConvLayer(block.out_chs, widths[i], 1, act_layer=act)
            in_chs = widths[i]
            if i < num_stages - 1:
                skip_chs.append(block.out_chs)
                self.skip_names.append(f'block{i + 1}')
                encoder[f'pool{i + 1}'] = nn.AvgPool2d(kernel_size=2, stride=2)
        self.encoder = nn.Sequential(encoder)
        self.skip_indices: List[int] = [list(encoder).index(name) for name in self.skip_names]

        reduce, blocks = [], []
        for i in reversed(range(num_stages - 1)):
            cat_chs = in_chs + skip_chs[i]
            reduce.append(ConvLayer(cat_chs, cat_chs // 2, 1, act_layer=act))
            block = HarmonicBlock(cat_chs // 2, growth[i], grmul, depths[i], act_layer=act)
            blocks.append(block)
            in_chs = block.out_chs
        self.decoder_reduce = nn.ModuleList(reduce)
        self.decoder_blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(in_chs, num_classes, 1, bias=True)
        self.num_classes = num_classes
        default_init(self)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = check_image_input(x, 3, MIN_INPUT_SIZE, 'FC-HarDNet')
        size = x.shape[-2:]
        skips: List[torch.Tensor] = []
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            if i in self.skip_indices:
                skips.append(x)
        for reduce, block in zip(self.decoder_reduce, self.decoder_blocks):
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=True)
            x = block(reduce(torch.cat([x, skip], 1)))
        x = F.interpolate(self.classifier(x), size=size, mode='bilinear', align_corners=True)
        return {'out': x}


_ORIGINAL_NAMES = (
    ('conv1x1_up.', 'decoder_reduce.'), ('denseBlocksUp.', 'decoder_blocks.'), ('finalConv.', 'classifier.'))


def fchardnet_checkpoint_filter(
        state_dict: Dict[str, Any], model: FCHarDNet, encoder_only: bool = False) -> Dict[str, torch.Tensor]:
    """Original FC-HarDNet keys (or ours) -> this model's keys, validated (missing / unexpected / shape).

    With ``encoder_only`` (the ImageNet 'petite' backbone file), only ``encoder.*`` keys are expected
    and returned.
    """
    renamed = rename_prefixes(unwrap_state_dict(state_dict), _ORIGINAL_NAMES)
    renamed = remap_by_position(renamed, 'base', model.encoder, 'encoder')
    if encoder_only:
        encoder = {k[len('encoder.'):]: v for k, v in renamed.items() if k.startswith('encoder.')}
        encoder = match_state_dict(encoder, model.encoder, what='FC-HarDNet encoder')
        return {f'encoder.{k}': v for k, v in encoder.items()}
    return match_state_dict(renamed, model, what='FC-HarDNet model')


@register_model('segmentation')
def fchardnet70(
        *,
        num_classes: int = 19,
        weights: Optional[Union[str, Path]] = None,
        weights_backbone: Optional[Union[str, Path]] = None,
) -> FCHarDNet:
    """FC-HarDNet-70 (4.12 M parameters with 19 classes).

    Args:
        num_classes: output classes (Cityscapes: 19).
        weights: a full checkpoint (original layout or ours) to load; its classes must match.
        weights_backbone: the encoder-only ImageNet checkpoint (original 'hardnet_petite_base.pth' layout).
            No download URL is published for it, so pass a local file.
    """
    model = FCHarDNet(num_classes=num_classes)
    if weights_backbone in (True, 'DEFAULT'):
        raise ValueError('No download URL is published for the FC-HarDNet ImageNet encoder; pass the local '
                         'hardnet_petite_base.pth file as weights_backbone')
    if weights_backbone is not None:
        encoder = fchardnet_checkpoint_filter(load_weights_file(weights_backbone), model, encoder_only=True)
        model.load_state_dict(encoder, strict=False)
    if weights is not None:
        model.load_state_dict(fchardnet_checkpoint_filter(load_weights_file(weights), model))
    return model
