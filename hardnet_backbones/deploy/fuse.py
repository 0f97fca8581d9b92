"""Inference conversion: fold every BatchNorm into the convolution before it and drop dropout.

Works on any module tree whose conv -> norm pairs sit next to each other in an ``nn.Sequential``:
HarDNet's ConvLayer / DWConvLayer / CombConvLayer, timm feature wrappers, our SSD extra blocks and
torchvision's SSD / SSDLite / FCN / DeepLabV3 / LR-ASPP heads.
"""
import copy

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

__all__ = ['fuse_for_inference']

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _fused(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    fused = copy.deepcopy(conv)
    eps = norm.eps
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, eps, norm.weight, norm.bias)
    fused.weight = weight
    fused.bias = bias
    return fused


@torch.no_grad()
def fuse_for_inference(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """A copy of ``model`` in eval mode with BatchNorm folded into convolutions and Dropout removed.

    Outputs equal the unfused model's in eval mode (to float rounding). The original is untouched.
    ``channels_last`` also converts the weights to NHWC: on CPUs (oneDNN) that is where most of the
    inference speed-up comes from, and inputs may stay NCHW.
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = [name for name, _ in module.named_children()]
        for first, second in zip(names, names[1:]):
            conv, norm = getattr(module, first), getattr(module, second)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, _NORMS) and norm.num_features == conv.out_channels:
                setattr(module, first, _fused(conv, norm))
                setattr(module, second, nn.Identity())
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Dropout) and name:
            parent_name, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Identity())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
