"""CenterNet-HarDNet: the published anchor-free HarDNet detectors (PingoLH/CenterNet-HarDNet, 2020), with
torchvision's detector contract.

The network is the published one: a truncated HarDNet with average pooling (``base``), a neck of harmonic blocks
that upsamples to stride 4 with "context" concatenations, and two heads (class heatmap, box size and centre
offset). Pre-processing is the published one too (BGR, its mean and std, the image stretched to a square as
OpenCV's warp does it; ``keep_res`` centres it in a canvas of multiples of 32 instead), and so is decoding
(heatmap peaks, top 100, no NMS, no threshold by default). Published files (``{'epoch', 'state_dict'}``, keys with
or without ``module.``) load strictly through :func:`centernet_checkpoint_filter`; ``weights=`` takes them as a
local file or as named published weights (:class:`CenterNet_HarDNet85_Weights`), pinned on first use.

Labels follow the package's convention for detectors: ``num_classes`` counts the background (81 for COCO's 80
classes), label ``k`` is heatmap channel ``k - 1``; on COCO json data that is the k-th category in id order, so
the published weights evaluate on COCO with no mapping.
"""
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import Weights, WeightsEnum

from ..errors import CheckpointError
from .backbone import check_detector_classes, resolve_trainable_levels
from .centernet_body import CenterNetHarDNetBackbone, CenterNetHead
from .centernet_coding import centernet_losses, decode_detections, encode_targets, flip_merge, stretch_image
from .published_base import freeze_base_levels, imagenet_base_weights, load_base
from .published_weights import classes_with_weights, coco_categories, resolve_weights, to_image_tensor
from .registry import register_model
from .state_dict import match_state_dict, rename_prefixes, unwrap_state_dict

__all__ = ['CenterNet', 'CenterNet_HarDNet85_Weights',
           'centernet_hardnet85', 'centernet_hardnet68', 'centernet_checkpoint_filter', 'CENTERNET_MEAN_BGR',
           'CENTERNET_STD_BGR']

# the published normalisation, in BGR order, for images in [0, 1]
CENTERNET_MEAN_BGR = (0.40789654, 0.44719302, 0.47026115)
CENTERNET_STD_BGR = (0.28863828, 0.27408164, 0.27809835)
OUTPUT_STRIDE = 4


@torch.jit.unused
def _check_images(images: Any) -> None:
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError('CenterNet expects a non-empty list of (3, H, W) images with values in [0, 1]')
    for image in images:
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f'CenterNet expects images of shape (3, H, W) with values in [0, 1], got {shape}')
        if not image.is_floating_point():
            raise ValueError(f'CenterNet expects float images with values in [0, 1], got {image.dtype}')


class CenterNet(nn.Module):
    """An anchor-free detector: a stride-4 body, a heatmap of object centres per class and their box sizes.

    torchvision's detector contract: ``model(images)`` in eval mode takes a list of ``(3, H, W)`` RGB tensors in
    [0, 1] of any size and returns ``[{'boxes', 'scores', 'labels'}]`` in each image's pixels; in train mode
    ``model(images, targets)`` returns the weighted losses (their sum is the training loss). Scripted, it returns
    ``(losses, detections)`` as torchvision's scripted detectors do.

    Args:
        backbone: the body (``out_channels`` at stride 4).
        num_classes: classes, the background counted (COCO: 81); label ``k`` is heatmap channel ``k - 1``.
        size: the square side images are stretched to (a multiple of 32; published: 512).
        keep_res: instead of stretching, centre each image in a zero canvas whose sides are the next multiples of
            32 above its own (the published ``keep_res`` test mode); batches are padded to their largest canvas.
        flip_test: also run the mirrored image and merge (the published flip test).
        score_thresh: detections below this score are dropped (published: 0, for AP).
        detections_per_img: detections kept per image (published: 100).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, size: int = 512, keep_res: bool = False,
                 flip_test: bool = False, score_thresh: float = 0.0, detections_per_img: int = 100):
        super().__init__()
        check_detector_classes(num_classes)
        if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 32:
            raise ValueError(f'size must be a multiple of 32 (pixels of the square input), got {size!r}')
        if not 0 <= score_thresh <= 1:
            raise ValueError(f'score_thresh must be a number in [0, 1], got {score_thresh!r}')
        if isinstance(detections_per_img, bool) or not isinstance(detections_per_img, int) or detections_per_img < 1:
            raise ValueError(f'detections_per_img must be an integer >= 1, got {detections_per_img!r}')
        self.backbone = backbone
        self.head = CenterNetHead(backbone.out_channels, num_classes - 1)
        self.num_classes = num_classes
        self.size = size
        self.keep_res = keep_res
        self.flip_test = flip_test
        self.score_thresh = float(score_thresh)
        self.detections_per_img = detections_per_img
        self.output_stride = OUTPUT_STRIDE
        self.register_buffer('image_mean', torch.tensor(CENTERNET_MEAN_BGR).view(3, 1, 1), persistent=False)
        self.register_buffer('image_std', torch.tensor(CENTERNET_STD_BGR).view(3, 1, 1), persistent=False)

    def _canvas(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The image as the network sees it, unnormalised, and ``[scale_x, scale_y, shift_x, shift_y]``: a network
        pixel ``p`` is image pixel ``(p - shift) * scale`` (a tensor, so that an exported graph keeps the image
        size dynamic when stretching)."""
        if not self.keep_res:
            stretched = stretch_image(image, self.size, self.size)
            sizes = torch.stack([torch.ones_like(image[0, 0, :]).sum(), torch.ones_like(image[0, :, 0]).sum()])
            zeros = torch.zeros(2, dtype=sizes.dtype, device=sizes.device)
            return stretched, torch.cat([sizes / self.size, zeros])
        height, width = image.shape[-2], image.shape[-1]
        canvas_h, canvas_w = (height | 31) + 1, (width | 31) + 1
        top, left = canvas_h // 2 - height // 2, canvas_w // 2 - width // 2
        canvas = image.new_zeros(3, canvas_h, canvas_w)
        canvas[:, top:top + height, left:left + width] = image
        return canvas, torch.tensor([1.0, 1.0, float(left), float(top)], dtype=image.dtype, device=image.device)

    def _normalise(self, canvases: List[torch.Tensor]) -> torch.Tensor:
        height = max([c.shape[-2] for c in canvases])
        width = max([c.shape[-1] for c in canvases])
        batch = torch.stack([F.pad(c, [0, width - c.shape[-1], 0, height - c.shape[-2]]) for c in canvases])
        return (batch.flip(1) - self.image_mean) / self.image_std  # RGB -> BGR, as the published weights expect

    def forward(self, images: List[torch.Tensor], targets: Optional[List[Dict[str, torch.Tensor]]] = None):
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            _check_images(images)
        canvases: List[torch.Tensor] = []
        geometry: List[torch.Tensor] = []
        for image in images:
            canvas, where = self._canvas(image)
            canvases.append(canvas)
            geometry.append(where)
        batch = self._normalise(canvases)
        losses: Dict[str, torch.Tensor] = {}
        detections: List[Dict[str, torch.Tensor]] = []
        if self.training:
            if targets is None:
                raise ValueError('CenterNet in train mode needs targets (a list of {"boxes", "labels"}, one per image)')
            losses = self._losses(batch, targets, geometry)
        else:
            detections = self._detect(batch, geometry)
        if torch.jit.is_scripting():
            return losses, detections
        return self._eager_outputs(losses, detections)

    @torch.jit.unused
    def _eager_outputs(self, losses: Dict[str, torch.Tensor], detections: List[Dict[str, torch.Tensor]]):
        return losses if self.training else detections

    @torch.jit.unused
    def _losses(self, batch: torch.Tensor, targets: List[Dict[str, torch.Tensor]],
                geometry: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        if len(targets) != len(geometry):
            raise ValueError(f'CenterNet got {len(geometry)} images but {len(targets)} targets: one target per image')
        heatmap_logits, box_maps = self.head(self.backbone(batch))
        height, width = heatmap_logits.shape[-2:]
        encoded = []
        for i, (target, where) in enumerate(zip(targets, geometry)):
            sx, sy, dx, dy = where.tolist()
            boxes = target.get('boxes')
            if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f'CenterNet: target {i} needs "boxes" of shape (N, 4) (xyxy pixels; (0, 4) for an '
                                 f'image without objects), got {None if boxes is None else list(boxes.shape)}')
            labels = target['labels']
            if len(labels) and (int(labels.min()) < 1 or int(labels.max()) >= self.num_classes):
                raise ValueError(f'CenterNet: target {i} has labels outside 1..{self.num_classes - 1}')
            grid = boxes.detach().double().cpu().clone()
            grid[:, 0::2] = (grid[:, 0::2] / sx + dx) / OUTPUT_STRIDE
            grid[:, 1::2] = (grid[:, 1::2] / sy + dy) / OUTPUT_STRIDE
            encoded.append(encode_targets(grid, labels.cpu() - 1, self.num_classes - 1, height, width))
        return centernet_losses(heatmap_logits, box_maps, encoded)

    def _detect(self, batch: torch.Tensor, geometry: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        if self.flip_test:
            heatmap_logits, box_maps = self.head(self.backbone(torch.cat([batch, batch.flip(-1)])))
            heatmap, box_maps = flip_merge(heatmap_logits.sigmoid(), box_maps)
        else:
            heatmap_logits, box_maps = self.head(self.backbone(batch))
            heatmap = heatmap_logits.sigmoid()
        boxes, scores, classes = decode_detections(heatmap, box_maps, self.detections_per_img)
        results: List[Dict[str, torch.Tensor]] = []
        for i, where in enumerate(geometry):
            scale, shift = where[:2].repeat(2).to(boxes.dtype), where[2:].repeat(2).to(boxes.dtype)
            image_boxes = (boxes[i] * self.output_stride - shift) * scale
            keep = scores[i] >= self.score_thresh
            results.append({'boxes': image_boxes[keep], 'scores': scores[i][keep], 'labels': classes[i][keep] + 1})
        return results


# ----------------------------------------------------------------------------------------------------------------
# published checkpoints

_PUBLISHED_NAMES = (('base.', 'backbone.base.'), ('last_proj.', 'backbone.last_proj.'),
                    ('last_blk.', 'backbone.last_block.'), ('conv1x1_up.', 'backbone.up_proj.'),
                    ('denseBlocksUp.', 'backbone.up_blocks.'), ('hm.', 'head.heatmap.'), ('wh.', 'head.box.'))


def centernet_checkpoint_filter(state_dict: Dict[str, Any], model: CenterNet,
                                replace_heatmap: bool = False) -> Dict[str, torch.Tensor]:
    """Published CenterNet-HarDNet keys (``base.*``, ``hm.*``, ...; with or without ``module.``) or ours -> this
    model's keys, validated strictly (missing, unexpected, shapes). ``replace_heatmap`` leaves the heatmap head
    out (fine-tuning to another class count keeps everything else)."""
    renamed = rename_prefixes(unwrap_state_dict(state_dict), _PUBLISHED_NAMES)
    if replace_heatmap:
        renamed = {k: v for k, v in renamed.items() if not k.startswith('head.heatmap.')}
        adaptable = [k for k in model.state_dict() if k.startswith('head.heatmap.')]
    else:
        adaptable = []
    heatmaps = renamed.get('head.heatmap.2.weight')
    if heatmaps is not None and heatmaps.shape[0] != model.num_classes - 1:
        raise CheckpointError(f'the weights have {heatmaps.shape[0]} heatmap classes, the model '
                              f'{model.num_classes - 1}: build it with num_classes={heatmaps.shape[0] + 1} (the '
                              f'background counted, as for every detector here)')
    return match_state_dict(renamed, model, adaptable=adaptable, what=f'{type(model).__name__} model')


_COMMON_META = dict(
    categories=coco_categories(), num_classes=81, channel_order='BGR', mean=CENTERNET_MEAN_BGR,
    std=CENTERNET_STD_BGR, license='MIT (PingoLH/CenterNet-HarDNet)',
    recipe='https://github.com/PingoLH/CenterNet-HarDNet',
    labels='label k is the k-th COCO category in id order (1..80), as the package\'s COCO datasets number them',
)


class CenterNet_HarDNet85_Weights(WeightsEnum):
    """The published COCO weights of CenterNet-HarDNet85 (no hash is published: the SHA-256 of the first file
    fetched is pinned, and a different file at the same name later is refused)."""
    COCO_512 = Weights(
        url='https://ping-chao.com/hardnet/centernet_hardnet85_coco.pth',
        transforms=partial(to_image_tensor),
        meta=dict(_COMMON_META, input_size=512, _metrics={'COCO-test-dev': {'box_map': 44.3}, 'COCO-val2017': {
            'box_map': 44.3, 'box_map_416': 42.4}}, _docs='trained at 512 px; 42.4 AP when tested at 416 px',
            fps_gtx1080ti=45),
    )
    COCO_608 = Weights(
        url='https://ping-chao.com/hardnet/centernet_hardnet85_coco_608.pth',
        transforms=partial(to_image_tensor),
        meta=dict(_COMMON_META, input_size=608, _metrics={'COCO-test-dev': {'box_map': 45.3}, 'COCO-val2017': {
            'box_map': 44.9}}, _docs='trained at 608 px', fps_gtx1080ti=32),
    )
    DEFAULT = COCO_512


def _published_state_dict(weights: Union[CenterNet_HarDNet85_Weights, str, Path], progress: bool
                          ) -> Tuple[Dict[str, torch.Tensor], Optional[int]]:
    """The state dict of named weights or of a local file; the input size they were trained at, when named."""
    named = CenterNet_HarDNet85_Weights.__members__.get(weights) if isinstance(weights, str) else weights
    size = named.meta['input_size'] if isinstance(named, CenterNet_HarDNet85_Weights) else None
    return resolve_weights(weights, CenterNet_HarDNet85_Weights, progress), size


def _centernet(variant: str, *, weights: Optional[Union[str, Path, CenterNet_HarDNet85_Weights]],
               progress: bool, num_classes: Optional[int], weights_backbone: Any,
               trainable_backbone_layers: Optional[int], size: Optional[int], **kwargs: Any) -> CenterNet:
    state_dict, trained_size = _published_state_dict(weights, progress) if weights is not None else (None, None)
    published_classes = None
    tensors = unwrap_state_dict(state_dict) if state_dict is not None else {}
    for key in ('hm.2.weight', 'head.heatmap.2.weight'):  # a published file, or one of ours
        if key in tensors:
            published_classes = tensors[key].shape[0] + 1
    num_classes, replace = classes_with_weights(num_classes, published_classes, 81, f'centernet_{variant}',
                                                'heatmap head')
    size = size or trained_size or 512
    model = CenterNet(CenterNetHarDNetBackbone(variant), num_classes, size=size, **kwargs)
    levels = model.backbone.levels[-1] + 1
    trainable = resolve_trainable_levels(trainable_backbone_layers, weights is not None or weights_backbone not in (
        None, False), levels, 3)
    if state_dict is not None:
        model.load_state_dict(centernet_checkpoint_filter(state_dict, model, replace_heatmap=replace),
                              strict=not replace)
    elif weights_backbone not in (None, False):
        load_base(model.backbone.base, imagenet_base_weights(weights_backbone, variant), 'CenterNet backbone')
    if trainable < levels:
        freeze_base_levels(model.backbone.base, trainable)
    return model


@register_model('detection', input_size=512, kwargs_class=CenterNet, checkpoint_filter=centernet_checkpoint_filter)
def centernet_hardnet85(
        *,
        weights: Optional[Union[str, Path, CenterNet_HarDNet85_Weights]] = None,
        progress: bool = True,
        num_classes: Optional[int] = None,
        weights_backbone: Optional[Union[bool, str]] = None,
        trainable_backbone_layers: Optional[int] = None,
        size: Optional[int] = None,
        **kwargs: Any,
) -> CenterNet:
    """CenterNet-HarDNet85 (37.3 M parameters with 80 classes): 44.3 box AP on COCO test-dev at 512 px as published.

    Args:
        weights: ``'COCO_512'`` / ``'COCO_608'`` (or :class:`CenterNet_HarDNet85_Weights`): the published COCO
            weights, downloaded once and pinned; or a local file (published or ours). Its input size becomes the
            default ``size``.
        progress: show a download progress bar.
        num_classes: classes with the background (default: the weights', else 81). Another count than the
            weights' replaces the heatmap head and keeps the rest (fine-tuning).
        weights_backbone: ImageNet weights for ``base`` (DEFAULT: the published hardnet85 classifier; or a file in
            the published layout, e.g. ``hardnet85_base.pth``).
        trainable_backbone_layers: ``base`` levels trained, counted from the deepest (0-4; default 3 with weights,
            all without).
        size: the square side images are stretched to (default: the named weights' training size, else 512).
        kwargs: :class:`CenterNet` settings (``keep_res``, ``flip_test``, ``score_thresh``, ``detections_per_img``).
    """
    return _centernet('hardnet85', weights=weights, progress=progress, num_classes=num_classes,
                      weights_backbone=weights_backbone, trainable_backbone_layers=trainable_backbone_layers, size=size,
                      **kwargs)


@register_model('detection', input_size=512, kwargs_class=CenterNet, checkpoint_filter=centernet_checkpoint_filter)
def centernet_hardnet68(
        *,
        weights: Optional[Union[str, Path]] = None,
        progress: bool = True,
        num_classes: Optional[int] = None,
        weights_backbone: Optional[Union[bool, str]] = None,
        trainable_backbone_layers: Optional[int] = None,
        size: Optional[int] = None,
        **kwargs: Any,
) -> CenterNet:
    """CenterNet-HarDNet68 (20.7 M parameters with 80 classes); no COCO weights are published for it.

    Arguments as :func:`centernet_hardnet85` (``weights``: a local file only; ``weights_backbone`` DEFAULT: the
    published hardnet68 classifier).
    """
    return _centernet('hardnet68', weights=weights, progress=progress, num_classes=num_classes,
                      weights_backbone=weights_backbone, trainable_backbone_layers=trainable_backbone_layers, size=size,
                      **kwargs)
