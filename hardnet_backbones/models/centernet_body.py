"""The published CenterNet-HarDNet network: a truncated average-pooling HarDNet (``base``), a neck of harmonic
blocks with "context" concatenations up to stride 4, and the heatmap and box heads. Module indices inside ``base``
are the published ones; :mod:`.centernet` renames the published top-level names to these."""
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvLayer, HarmonicBlock
from .published_base import GRMUL, BaseSpec, base_levels, build_base

__all__ = ['CenterNetHarDNetBackbone', 'CenterNetHead', 'context', 'HEATMAP_PRIOR_BIAS']

HEATMAP_PRIOR_BIAS = -2.19  # the last heatmap bias at initialisation: sigmoid(-2.19) = 0.1


@dataclass(frozen=True)
class _UpStep:
    """One neck step: upsample, concatenate the skip (``concat``), 1x1 to ``out_chs``, set the last ``aside``
    channels aside, context op, harmonic block ``(growth, depth)``."""
    out_chs: int
    aside: int
    growth: int
    depth: int
    concat: bool = True


@dataclass(frozen=True)
class _CenterNetSpec:
    base: BaseSpec
    skip_blocks: Tuple[int, int, int]  # blocks whose outputs the neck takes (1/4, 1/8, 1/16)
    last_proj: int
    last_block: Tuple[int, int]
    up: Tuple[_UpStep, _UpStep, _UpStep]


_SPECS = {
    'hardnet85': _CenterNetSpec(
        BaseSpec(stem=(48, 96), blocks=((24, 8), (24, 16), (28, 16), (36, 16), (48, 16)),
                 transitions=(192, 256, 320, 480), pools=('ceil', None, 'floor', None)),
        skip_blocks=(0, 2, 4), last_proj=256, last_block=(80, 8),
        up=(_UpStep(256, 32, 64, 8), _UpStep(192, 32, 48, 8), _UpStep(96, 0, 28, 4))),
    'hardnet68': _CenterNetSpec(
        BaseSpec(stem=(32, 64), blocks=((14, 8), (16, 16), (20, 16), (40, 16)), transitions=(128, 256, 320),
                 pools=('ceil', None, 'floor')), skip_blocks=(0, 2, 3), last_proj=192, last_block=(72, 8),
        up=(_UpStep(256, 32, 48, 8), _UpStep(128, 32, 32, 8), _UpStep(64, 0, 20, 4, concat=False))),
}


def context(x: torch.Tensor) -> torch.Tensor:
    """The neck's context op: ``[x, 9x9 average (padding counted), x / (its spatial sum + 0.1)]``, 3x the channels."""
    pooled = F.avg_pool2d(x, 9, stride=1, padding=4)
    return torch.cat([x, pooled, x / (x.sum(dim=(2, 3), keepdim=True) + 0.1)], 1)


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=True)


class CenterNetHarDNetBackbone(nn.Module):
    """The published CenterNet-HarDNet body: a truncated average-pooling HarDNet (``base``, indexed as published)
    and the neck up to stride 4. ``forward(x)`` gives ``(B, out_channels, H/4, W/4)`` (200 for HarDNet85, 162 for
    HarDNet68); H and W must be multiples of 32."""

    def __init__(self, variant: str):
        super().__init__()
        if variant not in _SPECS:
            raise ValueError(f'variant must be one of {sorted(_SPECS)}, got {variant!r}')
        spec = _SPECS[variant]
        act = nn.ReLU
        base, channels = build_base(spec.base, nn.AvgPool2d)
        blocks_at = [i for i, m in enumerate(base) if isinstance(m, HarmonicBlock)]
        self.skip_indices: List[int] = [blocks_at[b] for b in spec.skip_blocks]
        skip_chs = [channels[i] for i in self.skip_indices]
        in_chs = channels[-1]
        self.base = nn.ModuleList(base)
        self.levels = base_levels(self.base)
        self.last_proj = ConvLayer(in_chs, spec.last_proj, 1, act_layer=act)
        growth, depth = spec.last_block
        self.last_block = HarmonicBlock(3 * spec.last_proj, growth, GRMUL, depth, act_layer=act)
        in_chs = self.last_block.out_chs
        projections, blocks = [], []
        for step, skip in zip(spec.up, reversed(skip_chs)):
            projections.append(ConvLayer(in_chs + (skip if step.concat else 0), step.out_chs, 1, act_layer=act))
            blocks.append(HarmonicBlock(3 * (step.out_chs - step.aside), step.growth, GRMUL, step.depth,
                                        act_layer=act))
            in_chs = blocks[-1].out_chs
        self.up_proj = nn.ModuleList(projections)
        self.up_blocks = nn.ModuleList(blocks)
        self.asides: List[int] = [step.aside for step in spec.up]
        self.concats: List[bool] = [step.concat for step in spec.up]
        self.out_channels = in_chs + sum(self.asides)
        for neck in (self.last_proj, self.last_block, self.up_proj, self.up_blocks):  # the published neck init
            for m in neck.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_uniform_(m.weight, nonlinearity='relu')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: List[torch.Tensor] = []
        for i, module in enumerate(self.base):
            x = module(x)
            if i in self.skip_indices:
                skips.append(x)
        x = self.last_block(context(F.avg_pool2d(self.last_proj(x), 2, stride=2)))
        set_aside: List[torch.Tensor] = []
        for i, (projection, block) in enumerate(zip(self.up_proj, self.up_blocks)):
            skip = skips[len(skips) - 1 - i]
            x = _upsample(x, skip)
            x = projection(torch.cat([x, skip], 1) if self.concats[i] else x)
            if self.asides[i] > 0:
                set_aside.append(x[:, x.shape[1] - self.asides[i]:])
                x = x[:, :x.shape[1] - self.asides[i]]
            x = block(context(x))
        outputs = [x]
        for aside in set_aside:  # the last set aside comes first
            outputs.insert(0, _upsample(aside, x))
        return torch.cat(outputs, 1)


def _head(in_chs: int, out_chs: int) -> nn.Sequential:
    hidden = max(128, 4 * out_chs)
    return nn.Sequential(nn.Conv2d(in_chs, hidden, 3, padding=1, bias=True), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, out_chs, 1, bias=True))


class CenterNetHead(nn.Module):
    """Class heatmap logits ``(B, C, h, w)`` and box maps ``(B, 4, h, w)`` (width, height, centre offset x, y on
    the output grid), each a 3x3 conv, ReLU and 1x1 conv (hidden width ``max(128, 4 * outputs)``)."""

    def __init__(self, in_chs: int, num_heatmaps: int):
        super().__init__()
        self.heatmap = _head(in_chs, num_heatmaps)
        self.box = _head(in_chs, 4)
        self.reset_heatmap()
        self._init(self.box)

    @staticmethod
    def _init(head: nn.Sequential) -> None:
        for m in head:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity='relu')
                nn.init.zeros_(m.bias)

    def reset_heatmap(self) -> None:
        """The published initialisation of the heatmap head (its last bias at the 0.1 prior)."""
        self._init(self.heatmap)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_PRIOR_BIAS)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.heatmap(x), self.box(x)
