"""Building blocks of HarDNet: conv layers and the harmonic dense block.

Module and parameter names inside these blocks match the published checkpoints
(``conv``/``norm``/``dwconv``/``layer1``/``layer2``/``layers``), so only the top-level
``base.N`` index needs remapping when loading the original weights.
"""
from typing import List, Type

import torch
import torch.fx
import torch.nn as nn
from timm.layers import register_notrace_function

__all__ = [
    'ConvLayer', 'StemConvLayer', 'DWConvLayer', 'CombConvLayer', 'HarmonicBlock',
    'harmonic_links', 'harmonic_layer_widths', 'default_init', 'check_image_input', 'MIN_INPUT_SIZE',
]

# the smallest image side the networks take: their deepest maps are at stride 32, and a smaller input leaves
# nothing to pool (every consumer of images of any size pads to it or refuses below it)
MIN_INPUT_SIZE = 32


@torch.fx.wrap
def check_image_input(x: torch.Tensor, in_chans: int, min_size: int, what: str) -> torch.Tensor:
    """Raise ``ValueError`` unless ``x`` is ``(B, in_chans, H, W)`` with ``H, W >= min_size``; returns ``x``.

    A leaf for torch.fx (``torch.fx.wrap`` here, timm's ``register_notrace_function`` below): symbolic
    tracing records the call instead of branching on the traced shape, so FX feature extraction works.
    """
    if torch.jit.is_tracing():  # the ONNX / TorchScript tracer: shapes are traced values, nothing to check
        return x
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(f'{what} expects input of shape (B, {in_chans}, H, W), got {list(x.shape)}')
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(f'Input {x.shape[2]}x{x.shape[3]} is too small: {what} needs at least '
                         f'{min_size}x{min_size} pixels')
    return x


register_notrace_function(check_image_input)


class ConvLayer(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation (ReLU6 for the classifiers)."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 3,
            stride: int = 1,
            dilation: int = 1,
            act_layer: Type[nn.Module] = nn.ReLU6,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        padding = dilation * (kernel_size // 2)
        self.add_module('conv', nn.Conv2d(
            in_chs, out_chs, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False, **dd))
        self.add_module('norm', nn.BatchNorm2d(out_chs, **dd))
        self.add_module('relu', act_layer(inplace=True))


class StemConvLayer(ConvLayer):
    """The first ConvLayer of a network: checks the input (channels, rank, minimum size) before convolving.

    Same modules and parameter names as ``ConvLayer``, so checkpoints load unchanged; every entry point
    (classifier, ``features_only``, detection and segmentation backbones) passes through it.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, *,
                 min_input_size: int = MIN_INPUT_SIZE, what: str = 'HarDNet', **kwargs):
        super().__init__(in_chs, out_chs, kernel_size, stride, **kwargs)
        self.min_input_size = min_input_size
        self.what = what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_image_input(x, self.conv.in_channels, self.min_input_size, self.what)
        return self.relu(self.norm(self.conv(x)))


class DWConvLayer(nn.Sequential):
    """Depthwise Conv2d 3x3 (no bias) -> BatchNorm2d, without activation."""

    def __init__(
            self,
            chs: int,
            stride: int = 1,
            dilation: int = 1,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.add_module('dwconv', nn.Conv2d(
            chs, chs, 3, stride=stride, padding=dilation, dilation=dilation, groups=chs, bias=False, **dd))
        self.add_module('norm', nn.BatchNorm2d(chs, **dd))


class CombConvLayer(nn.Sequential):
    """Pointwise ConvLayer (in -> out) followed by a depthwise 3x3 DWConvLayer on ``out`` channels."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            dilation: int = 1,
            act_layer: Type[nn.Module] = nn.ReLU6,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.add_module('layer1', ConvLayer(in_chs, out_chs, kernel_size=1, act_layer=act_layer, **dd))
        self.add_module('layer2', DWConvLayer(out_chs, stride=stride, dilation=dilation, **dd))


def harmonic_links(layer: int) -> List[int]:
    """Indices of the earlier layers that harmonic layer ``layer`` (1-based) reads.

    Layer ``k`` links to ``k - 2**i`` for every ``i`` with ``k`` divisible by ``2**i``, nearest first.
    Layer 0 is the block input.
    """
    links = []
    step = 1
    while step <= layer and layer % step == 0:
        links.append(layer - step)
        step *= 2
    return links


def harmonic_layer_widths(in_chs: int, growth: int, grmul: float, depth: int) -> List[int]:
    """Channel widths of the block input (index 0) and of each of its ``depth`` layers.

    A layer with ``m`` links has ``growth * grmul ** (m - 1)`` channels, rounded to an even number
    exactly as the reference implementation does.
    """
    widths = [in_chs]
    for layer in range(1, depth + 1):
        width = growth * grmul ** (len(harmonic_links(layer)) - 1)
        widths.append(int(int(width + 1) / 2) * 2)
    return widths


class HarmonicBlock(nn.Module):
    """Harmonic dense block (HarDBlock).

    Layer ``k`` convolves the channel concatenation of the layers in ``harmonic_links(k)``. The block
    returns the concatenation of every odd layer and the last one (plus the block input when
    ``keep_base``), in layer order.

    Args:
        in_chs: channels of the block input.
        growth: base growth rate of the layers.
        grmul: width multiplier applied per extra link.
        depth: number of layers.
        depthwise: use CombConvLayer (1x1 + depthwise 3x3) instead of a 3x3 ConvLayer.
        keep_base: include the block input in the output concatenation.
        dilation: dilation of the 3x3 convolutions (for reduced output strides).
        act_layer: activation of the conv layers.
    """

    def __init__(
            self,
            in_chs: int,
            growth: int,
            grmul: float,
            depth: int,
            depthwise: bool = False,
            keep_base: bool = False,
            dilation: int = 1,
            act_layer: Type[nn.Module] = nn.ReLU6,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        widths = harmonic_layer_widths(in_chs, growth, grmul, depth)
        self.links: List[List[int]] = [harmonic_links(k) for k in range(1, depth + 1)]
        self.out_layers: List[int] = [
            k for k in range(depth + 1) if (k == 0 and keep_base) or k == depth or k % 2 == 1]
        self.out_chs = sum(widths[k] for k in self.out_layers)
        layers = []
        for k, links in enumerate(self.links, start=1):
            layer_in_chs = sum(widths[j] for j in links)
            if depthwise:
                layers.append(CombConvLayer(layer_in_chs, widths[k], dilation=dilation, act_layer=act_layer, **dd))
            else:
                layers.append(ConvLayer(
                    layer_in_chs, widths[k], kernel_size=3, dilation=dilation, act_layer=act_layer, **dd))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = [x]
        for i, layer in enumerate(self.layers):
            inputs = [outputs[j] for j in self.links[i]]
            layer_in = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
            outputs.append(layer(layer_in))
        return torch.cat([outputs[k] for k in self.out_layers], 1)


def default_init(module: nn.Module) -> None:
    """He-normal convolutions, unit BatchNorm, zero Linear bias (the reference initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
