"""HarDNet (Harmonic DenseNet) for timm.

"HarDNet: A Low Memory Traffic Network", Chao et al., ICCV 2019 (arXiv 1909.00948).

Reading order, as in timm's own model files: variant table -> model class -> checkpoint filter ->
``_create_hardnet`` -> ``default_cfgs`` -> one ``@register_model`` function per variant.

The model keeps the published module order in one flat ``features`` sequence
(stem, then block / [dropout] / transition / [downsample] per stage), so the original
``base.N`` checkpoint keys map onto it by position.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import create_classifier, get_device_dtype
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import MATCH_PREV_GROUP, checkpoint_seq

from .hub import ensure_pretrained_cached, load_weights_file
from .layers import MIN_INPUT_SIZE, ConvLayer, DWConvLayer, HarmonicBlock, StemConvLayer, default_init
from .registry import register_timm_model
from .state_dict import match_state_dict, remap_by_position, unwrap_state_dict

__all__ = ['HarDNet', 'HarDNetCfg', 'checkpoint_filter_fn', 'model_cfgs']


@dataclass(frozen=True)
class HarDNetCfg:
    """Hyper-parameters of one HarDNet variant (see docs/architecture.md)."""
    stem_chs: Tuple[int, int]
    stem_kernel2: int  # kernel of the second stem conv: 3 (plain) or 1 (depthwise variants)
    depthwise: bool  # CombConv layers and depthwise-conv downsampling instead of max-pooling
    grmul: float
    growth: Tuple[int, ...]
    depths: Tuple[int, ...]
    widths: Tuple[int, ...]  # 1x1 transition width after each block
    downsample: Tuple[bool, ...]  # downsample by 2 after each block
    drop_rate: float  # head dropout
    last_block_drop: float = 0.  # dropout between the last block and its transition (hardnet85)


model_cfgs: Dict[str, HarDNetCfg] = dict(
    hardnet39ds=HarDNetCfg(
        stem_chs=(24, 48), stem_kernel2=1, depthwise=True, grmul=1.6,
        growth=(16, 20, 64, 160), depths=(4, 16, 8, 4), widths=(96, 320, 640, 1024),
        downsample=(True, True, True, False), drop_rate=0.05),
    hardnet68ds=HarDNetCfg(
        stem_chs=(32, 64), stem_kernel2=1, depthwise=True, grmul=1.7,
        growth=(14, 16, 20, 40, 160), depths=(8, 16, 16, 16, 4), widths=(128, 256, 320, 640, 1024),
        downsample=(True, False, True, True, False), drop_rate=0.05),
    hardnet68=HarDNetCfg(
        stem_chs=(32, 64), stem_kernel2=3, depthwise=False, grmul=1.7,
        growth=(14, 16, 20, 40, 160), depths=(8, 16, 16, 16, 4), widths=(128, 256, 320, 640, 1024),
        downsample=(True, False, True, True, False), drop_rate=0.1),
    hardnet85=HarDNetCfg(
        stem_chs=(48, 96), stem_kernel2=3, depthwise=False, grmul=1.7,
        growth=(24, 24, 28, 36, 48, 256), depths=(8, 16, 16, 16, 16, 4),
        widths=(192, 256, 320, 480, 720, 1280),
        downsample=(True, False, True, False, True, False), drop_rate=0.2, last_block_drop=0.1),
)


class HarDNet(nn.Module):
    """HarDNet classifier / backbone.

    Args:
        cfg: variant hyper-parameters.
        num_classes: classifier outputs, 0 for no classifier.
        in_chans: input image channels.
        global_pool: timm global pooling type ('avg', 'max', 'avgmax', ... or '' for none).
        drop_rate: head dropout; the variant's published value when None.
        output_stride: 32 (default), 16 or 8; downsampling past it is replaced by dilation.
        act_layer: activation of every conv layer.

    Input ``(B, in_chans, H, W)`` with H, W >= 32 (any size, not only multiples of 32); features at
    stride ``s`` have spatial size ``ceil(H / s) x ceil(W / s)``.
    """

    def __init__(
            self,
            cfg: HarDNetCfg,
            num_classes: int = 1000,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: Optional[float] = None,
            output_stride: int = 32,
            act_layer: Type[nn.Module] = nn.ReLU6,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}')
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f'num_classes must be >= 0 (0: no classifier), got {num_classes!r}')
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f'in_chans must be >= 1, got {in_chans!r}')
        if drop_rate is not None and not 0 <= drop_rate < 1:  # nan fails this too
            raise ValueError(f'drop_rate must be in [0, 1), got {drop_rate!r}')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = cfg.drop_rate if drop_rate is None else drop_rate
        self.grad_checkpointing = False

        builder = _FeatureBuilder(cfg, in_chans, output_stride, act_layer, dd)
        self.features = nn.Sequential(builder.modules)
        self.feature_info: List[Dict[str, Any]] = builder.feature_info
        feat_names = [name for name, _ in self.features.named_children()]
        self.feature_ends: List[int] = [feat_names.index(f['module'].split('.', 1)[1]) for f in self.feature_info]
        self.min_input_size = MIN_INPUT_SIZE
        self.num_features = self.head_hidden_size = cfg.widths[-1]

        self.global_pool, self.classifier = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **dd)
        self.head_drop = nn.Dropout(self.drop_rate)
        default_init(self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for layer-wise LR decay: the stem, then one group per stage (or per layer)."""
        return dict(
            stem=r'^features\.stem_',
            blocks=r'^features\.(?:block|drop|transition|down)(\d+)' if coarse else [
                (r'^features\.block(\d+)\.layers\.(\d+)', None),
                (r'^features\.(?:drop|transition|down)(\d+)', MATCH_PREV_GROUP),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Memory-efficient training: store only the input of each stem conv, harmonic block, transition
        and downsample, and recompute their activations in the backward pass."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier with a freshly initialised one with ``num_classes`` outputs (0 removes it)."""
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.classifier = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **dd)
        self.global_pool.train(self.training)  # the new head keeps the model's train/eval mode
        self.classifier.train(self.training)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward that also returns the feature maps at strides 2, 4, 8, 16, 32.

        Args:
            x: input ``(B, C, H, W)``.
            indices: feature levels to return: last n if int, all if None, else the listed indices
                (0 = stride 2 ... 4 = stride 32).
            norm: unused (HarDNet has no final norm).
            stop_early: stop after the last requested level.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of feature maps.
        """
        assert output_fmt == 'NCHW', 'Output format must be NCHW.'
        intermediates: List[torch.Tensor] = []
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        if torch.jit.is_scripting() or not stop_early:
            layers = self.features
        else:
            layers = self.features[:self.feature_ends[max_index] + 1]
        feat_idx = 0
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in self.feature_ends:
                if feat_idx in take_indices:
                    intermediates.append(x)
                feat_idx += 1
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the layers after the last requested feature level (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        prune_end = max_index < len(self.feature_ends) - 1
        self.features = self.features[:self.feature_ends[max_index] + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> stride-32 feature map ``(B, num_features, ceil(H/32), ceil(W/32))``.

        The stem checks the input: wrong rank or channels, or a side below 32 pixels, raise ``ValueError``.
        """
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.features, x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.head_drop(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _FeatureBuilder:
    """Lays out the ``features`` modules in the published order and records the feature taps."""

    def __init__(
            self,
            cfg: HarDNetCfg,
            in_chans: int,
            output_stride: int,
            act_layer: Type[nn.Module],
            dd: Dict[str, Any],
    ):
        self.cfg = cfg
        self.output_stride = output_stride
        self.dd = dd
        self.modules: 'OrderedDict[str, nn.Module]' = OrderedDict()
        self.feature_info: List[Dict[str, Any]] = []
        self.stride = 2
        self.dilation = 1

        stem1, stem2 = cfg.stem_chs
        self.modules['stem_conv1'] = StemConvLayer(in_chans, stem1, 3, stride=2, act_layer=act_layer, **dd)
        self.modules['stem_conv2'] = ConvLayer(stem1, stem2, cfg.stem_kernel2, act_layer=act_layer, **dd)
        self._add_tap('stem_conv2', stem2)
        self.modules['stem_down'] = self._downsample(stem2, stem=True)

        chs = stem2
        num_stages = len(cfg.depths)
        for i in range(num_stages):
            idx = i + 1
            block = HarmonicBlock(
                chs, cfg.growth[i], cfg.grmul, cfg.depths[i], depthwise=cfg.depthwise,
                dilation=self.dilation, act_layer=act_layer, **dd)
            self.modules[f'block{idx}'] = block
            if i == num_stages - 1 and cfg.last_block_drop:
                self.modules[f'drop{idx}'] = nn.Dropout(cfg.last_block_drop)
            chs = cfg.widths[i]
            self.modules[f'transition{idx}'] = ConvLayer(block.out_chs, chs, 1, act_layer=act_layer, **dd)
            if cfg.downsample[i] or i == num_stages - 1:
                self._add_tap(f'transition{idx}', chs)
            if cfg.downsample[i]:
                self.modules[f'down{idx}'] = self._downsample(chs)

    def _add_tap(self, name: str, chs: int) -> None:
        self.feature_info.append(dict(num_chs=chs, reduction=self.stride, module=f'features.{name}'))

    def _downsample(self, chs: int, stem: bool = False) -> nn.Module:
        """A stride-2 downsample, or its stride-1 dilated equivalent once ``output_stride`` is reached."""
        dilate = self.stride >= self.output_stride
        prev_dilation = self.dilation
        if dilate:
            self.dilation *= 2
        else:
            self.stride *= 2
        stride = 1 if dilate else 2
        if self.cfg.depthwise:
            return DWConvLayer(chs, stride=stride, dilation=prev_dilation, **self.dd)
        if dilate:
            return nn.Identity()
        if stem:
            return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # ceil_mode keeps odd sizes ceil-divided; identical to the reference on even sizes
        return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: HarDNet) -> Dict[str, torch.Tensor]:
    """Convert a checkpoint (published ``base.N`` layout or ours) to this model's state-dict keys.

    Accepts a bare state dict or one wrapped under 'state_dict' / 'model', with or without a
    DistributedDataParallel ``module.`` prefix. Missing ``num_batches_tracked`` buffers are filled in.
    ``base.N`` maps to the N-th module of ``features`` (same order as the original), and the final
    ``base.N.3`` Linear to ``classifier``. The first conv and the classifier are left for timm to
    adapt (``in_chans``) or drop (``num_classes``); every other key must be present with the
    model's shape, else a ``RuntimeError`` names the offending keys.
    """
    state_dict = unwrap_state_dict(state_dict)
    if any(k.startswith('base.') for k in state_dict):
        head = f'base.{len(model.features)}.3.'
        state_dict = {f'classifier.{k[len(head):]}' if k.startswith(head) else k: v for k, v in state_dict.items()}
        state_dict = remap_by_position(state_dict, 'base', model.features, 'features')
    adaptable = ('features.stem_conv1.conv.weight', 'classifier.weight', 'classifier.bias')
    return match_state_dict(state_dict, model, adaptable, what='HarDNet model')


_NUM_FEATURE_LEVELS = 5  # strides 2, 4, 8, 16, 32


def _check_out_indices(out_indices: Any) -> None:
    levels = range(-_NUM_FEATURE_LEVELS, _NUM_FEATURE_LEVELS)
    indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    if not indices or any(not isinstance(i, int) or i not in levels for i in indices):
        raise ValueError(f'out_indices {out_indices!r}: HarDNet has {_NUM_FEATURE_LEVELS} feature levels, '
                         f'0..4 for strides 2, 4, 8, 16, 32 (or -5..-1)')


def _create_hardnet(variant: str, pretrained: bool = False, **kwargs) -> HarDNet:
    if 'out_indices' in kwargs:
        _check_out_indices(kwargs['out_indices'])
    if pretrained:
        overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
        if overlay.get('file') and not overlay.get('state_dict'):
            # read here, for clear errors on broken or foreign files (and safetensors), then hand to timm
            overlay['state_dict'] = load_weights_file(overlay.pop('file'))
            kwargs['pretrained_cfg_overlay'] = overlay
        else:
            ensure_pretrained_cached(
                variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'), kwargs.get('cache_dir'))
    return build_model_with_cfg(
        HarDNet,
        variant,
        pretrained,
        model_cfg=model_cfgs[variant.split('.')[0]],
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'features.stem_conv1.conv', 'classifier': 'classifier',
        'license': 'mit', 'paper_ids': 'arXiv:1909.00948',
        'paper_name': 'HarDNet: A Low Memory Traffic Network',
        'origin_url': 'https://github.com/PingoLH/Pytorch-HarDNet',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'hardnet39ds.orig_in1k': _cfg(url='https://ping-chao.com/hardnet/hardnet39ds-0e6c6fa9.pth'),
    'hardnet68ds.orig_in1k': _cfg(url='https://ping-chao.com/hardnet/hardnet68ds-632474d2.pth'),
    'hardnet68.orig_in1k': _cfg(url='https://ping-chao.com/hardnet/hardnet68-5d684880.pth'),
    'hardnet85.orig_in1k': _cfg(url='https://ping-chao.com/hardnet/hardnet85-a28faa00.pth'),
})


@register_model
def hardnet39ds(pretrained: bool = False, **kwargs) -> HarDNet:
    """HarDNet-39DS (depthwise-separable), 3.49 M params."""
    return _create_hardnet('hardnet39ds', pretrained=pretrained, **kwargs)


@register_model
def hardnet68ds(pretrained: bool = False, **kwargs) -> HarDNet:
    """HarDNet-68DS (depthwise-separable), 4.18 M params."""
    return _create_hardnet('hardnet68ds', pretrained=pretrained, **kwargs)


@register_model
def hardnet68(pretrained: bool = False, **kwargs) -> HarDNet:
    """HarDNet-68, 17.57 M params."""
    return _create_hardnet('hardnet68', pretrained=pretrained, **kwargs)


@register_model
def hardnet85(pretrained: bool = False, **kwargs) -> HarDNet:
    """HarDNet-85, 36.67 M params."""
    return _create_hardnet('hardnet85', pretrained=pretrained, **kwargs)


for _variant in model_cfgs:
    register_timm_model(_variant, input_size=224)
