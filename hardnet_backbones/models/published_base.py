"""The truncated HarDNet bodies of the published HarDNet detectors (CenterNet-HarDNet, SSD512-HarDNet): a
``ModuleList`` named ``base`` whose indices are the published ones (parameter-free pools keep their index), its
feature levels, ImageNet weights for it, and freezing by level."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.layers import freeze_batch_norm_2d

from .hub import ensure_pretrained_cached, load_weights_file
from .layers import ConvLayer, HarmonicBlock
from .state_dict import match_state_dict

__all__ = ['BaseSpec', 'build_base', 'base_levels', 'imagenet_base_weights', 'load_base', 'freeze_base_levels']

GRMUL = 1.7


@dataclass(frozen=True)
class BaseSpec:
    """stem widths; ``(growth, depth)`` per harmonic block; the 1x1 transition after each block (as many as the
    base has); the 2x2 pool after each transition ('ceil', 'floor' or None)."""
    stem: Tuple[int, int]
    blocks: Tuple[Tuple[int, int], ...]
    transitions: Tuple[int, ...]
    pools: Tuple[Optional[str], ...]


def build_base(spec: BaseSpec, pool: Type[nn.Module], act_layer: Type[nn.Module] = nn.ReLU
               ) -> Tuple[List[nn.Module], List[int]]:
    """The modules of ``base`` in the published order (stem, 3x3 stride-2 pool, then block, transition, pool, ...)
    and the output channels of each of them (a pool keeps its input's)."""
    modules: List[nn.Module] = [ConvLayer(3, spec.stem[0], 3, stride=2, act_layer=act_layer),
                                ConvLayer(spec.stem[0], spec.stem[1], 3, act_layer=act_layer),
                                pool(3, stride=2, padding=1)]
    channels = [spec.stem[0], spec.stem[1], spec.stem[1]]
    for i, (growth, depth) in enumerate(spec.blocks):
        block = HarmonicBlock(channels[-1], growth, GRMUL, depth, act_layer=act_layer)
        modules.append(block)
        channels.append(block.out_chs)
        if i < len(spec.transitions):
            modules.append(ConvLayer(channels[-1], spec.transitions[i], 1, act_layer=act_layer))
            channels.append(spec.transitions[i])
            if spec.pools[i]:
                modules.append(pool(2, stride=2, ceil_mode=spec.pools[i] == 'ceil'))
                channels.append(channels[-1])
    return modules, channels


def base_levels(base: nn.ModuleList) -> List[int]:
    """Feature level of each ``base`` module: a new level starts at every stride-2 module after the first."""
    levels, level = [], 0
    for i, module in enumerate(base):
        strided = (isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) and module.stride in (2, (2, 2))) or (
            isinstance(module, ConvLayer) and module.conv.stride[0] == 2)
        level += int(strided and i > 0)
        levels.append(level)
    return levels


def imagenet_base_weights(weights_backbone: Union[bool, str, Path], variant: str) -> Dict[str, torch.Tensor]:
    """``base.*`` tensors of an ImageNet HarDNet file in the published layout (True / DEFAULT: the published
    classifier of ``variant``, whose first modules have the detectors' shapes; or a file such as
    ``hardnet85_base.pth``)."""
    path = ensure_pretrained_cached(variant) if weights_backbone in (True, 'DEFAULT') else Path(weights_backbone)
    return {k: v for k, v in load_weights_file(path).items() if k.startswith('base.')}


def load_base(base: nn.ModuleList, state_dict: Dict[str, torch.Tensor], what: str,
              optional: Tuple[int, ...] = ()) -> None:
    """Load the ``base.N.*`` tensors into ``base``: every module's, except those in ``optional`` (a module the
    ImageNet file does not have, such as SSD512-HarDNet68's bridge), which load when present."""
    wanted = {f'{i}.{k}' for i, m in enumerate(base) for k in m.state_dict()}
    kept = {k[len('base.'):]: v for k, v in state_dict.items() if k[len('base.'):] in wanted}
    adaptable = [k for k in wanted if int(k.split('.')[0]) in optional and k not in kept]
    base.load_state_dict(match_state_dict(kept, base, adaptable=adaptable, what=what), strict=not adaptable)


def freeze_base_levels(base: nn.ModuleList, trainable_levels: int) -> None:
    """Freeze the ``base`` levels below the last ``trainable_levels`` (no gradients, frozen BatchNorm)."""
    levels = base_levels(base)
    frozen_below = levels[-1] + 1 - trainable_levels
    for i, level in enumerate(levels):
        if level < frozen_below:
            base[i].requires_grad_(False)
            base[i] = freeze_batch_norm_2d(base[i])
