"""The published SSD512-HarDNet test post-processing in torchvision's ``SSD``, exactly.

Published, per image: softmax scores; for each class, the boxes scoring above the threshold go through NMS and the
best ``per_class`` survivors are kept; over all classes, if more than ``per_image`` remain, every detection scoring
at least the ``per_image``-th best score is kept (ties keep more). Boxes are not clipped to the image. torchvision's
``SSD`` instead keeps the best ``topk_candidates`` per class *before* NMS, caps at exactly ``detections_per_img``
and clips. The published training boxes are inclusive (``x2 = x1 + w - 1``) and its COCO results add 1 to the
width and height: :class:`InclusiveBoxesTransform` adds 1 to ``x2`` and ``y2`` for weights that learnt from them.
The published code's background filter came after its AP figures were measured and is left out.
"""
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import batched_nms

from .detection_transform import CheckedTransform

__all__ = ['published_ssd_detections', 'PublishedSSD', 'InclusiveBoxesTransform', 'inclusive_boxes_entry',
           'INCLUSIVE_BOXES_KEY']


def _rank_within_label(labels: Tensor, num_classes: int) -> Tensor:
    """For labels in score order: how many earlier entries share each one's label (0 for the best of a class)."""
    one_hot = F.one_hot(labels, num_classes)
    return (one_hot.cumsum(0) * one_hot).sum(1) - 1


@torch.jit.unused
def _nms_on_the_best(boxes: Tensor, score: Tensor, label: Tensor, nms_thresh: float, per_class: int,
                     num_classes: int, window: int) -> Tensor:
    """What ``batched_nms`` keeps of the candidates, for the first ``per_class`` survivors of each class: NMS runs
    on each class's best ``window`` candidates only, and again on four times as many for a class whose window
    gives fewer than ``per_class`` survivors while it holds more candidates. Exact: a greedy NMS's survivors among
    the best candidates depend on no lower-scoring one. An untrained model passes ~10 candidates per prior."""
    order = score.argsort(descending=True, stable=True)
    order = order[label[order].argsort(stable=True)]  # by class, each in decreasing score
    counts = torch.bincount(label, minlength=num_classes)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - (counts.cumsum(0) - counts)[label[order]]
    windows = torch.full_like(counts, window)
    while True:
        chosen = torch.nonzero(rank < windows[label]).squeeze(1)
        keep = chosen[batched_nms(boxes[chosen], score[chosen], label[chosen], nms_thresh)]
        short = (torch.bincount(label[keep], minlength=num_classes) < per_class) & (counts > windows)
        if not bool(short.any()):
            return keep
        windows = torch.where(short, windows * 4, windows)


def published_ssd_detections(boxes: Tensor, scores: Tensor, score_thresh: float, nms_thresh: float,
                             per_class: int, per_image: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The published detections of one image, best first.

    Args:
        boxes: ``(N, 4)`` decoded boxes (x1, y1, x2, y2), one per prior.
        scores: ``(N, C)`` class probabilities, column 0 the background.
        score_thresh: a class's candidates score strictly above it.
        nms_thresh: IoU of NMS, run per class.
        per_class: survivors of NMS kept per class (the best).
        per_image: the cap per image; every detection tied with the last one kept stays.

    Returns:
        boxes ``(K, 4)``, scores ``(K,)`` and labels ``(K,)`` (1 to C - 1).
    """
    candidates = torch.nonzero(scores[:, 1:] > score_thresh)
    prior, label = candidates[:, 0], candidates[:, 1] + 1
    score = scores[prior, label]
    if torch.jit.is_scripting() or torch.jit.is_tracing():  # one graph for every input
        keep = batched_nms(boxes[prior], score, label, nms_thresh)  # in decreasing score
    else:
        keep = _nms_on_the_best(boxes[prior], score, label, nms_thresh, per_class, scores.shape[1], 8 * per_class)
    keep = keep[_rank_within_label(label[keep], scores.shape[1]) < per_class]
    kept_scores = score[keep]
    # the per_image-th best score (-1, below every probability, when nothing is kept), with no branch for tracing
    last = kept_scores.topk(det_utils._topk_min(kept_scores, per_image, 0)).values[-1:]
    keep = keep[kept_scores >= torch.cat([last, kept_scores.new_full((1,), -1.0)]).max()]
    return boxes[prior[keep]], score[keep], label[keep]


class PublishedSSD(SSD):
    """torchvision's ``SSD`` with the published post-processing (:func:`published_ssd_detections`).

    Takes ``SSD``'s arguments but ``topk_candidates`` (no cap before NMS), plus ``per_class_detections``: the NMS
    survivors kept per class (50, as published). ``detections_per_img`` is the per-image cap, ties kept.
    """

    def __init__(self, *args: Any, per_class_detections: int = 50, **kwargs: Any):
        if 'topk_candidates' in kwargs:
            raise ValueError('the published post-processing has no cap before NMS (topk_candidates); it keeps the '
                             'best per_class_detections of each class after NMS')
        super().__init__(*args, **kwargs)
        self.per_class_detections = per_class_detections

    def postprocess_detections(self, head_outputs: Dict[str, Tensor], image_anchors: List[Tensor],
                               image_shapes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        pred_scores = F.softmax(head_outputs['cls_logits'], dim=-1)
        detections: List[Dict[str, Tensor]] = []
        for regression, scores, anchors in zip(head_outputs['bbox_regression'], pred_scores, image_anchors):
            boxes = self.box_coder.decode_single(regression, anchors)  # not clipped, as published
            boxes, scores, labels = published_ssd_detections(boxes, scores, self.score_thresh, self.nms_thresh,
                                                             self.per_class_detections, self.detections_per_img)
            detections.append({'boxes': boxes, 'scores': scores, 'labels': labels})
        return detections


INCLUSIVE_BOXES_KEY = 'transform.inclusive_boxes'


class InclusiveBoxesTransform(CheckedTransform):
    """:class:`CheckedTransform` that adds ``inclusive_boxes`` (a saved buffer: 1 or 0) to ``x2`` and ``y2`` of the
    output boxes, in the original image's pixels: 1 for a detector trained on inclusive boxes (``x2 = x1 + w - 1``),
    as the published SSD512s were. Saved with the weights, so that a run's checkpoint keeps its weights' setting."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.register_buffer('inclusive_boxes', torch.zeros(()))

    def postprocess(self, result: List[Dict[str, Tensor]], image_shapes: List[Tuple[int, int]],
                    original_image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        # boxes only (an SSD has no masks or keypoints); not through super(), which TorchScript cannot call
        if self.training:
            return result
        for output, resized, original in zip(result, image_shapes, original_image_sizes):
            boxes = resize_boxes(output['boxes'], resized, original)
            ends = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)
            output['boxes'] = boxes + ends * self.inclusive_boxes.to(boxes.dtype)
        return result


def inclusive_boxes_entry(setting: Optional[bool], published_head_kept: bool, saved: Optional[Tensor],
                          current: Tensor) -> Tensor:
    """The ``transform.inclusive_boxes`` a model loads: its own ``setting`` where one was given; else 1 for a
    published file with its class head, the value ``saved`` in a file of ours, or the model's ``current`` one."""
    if setting is not None:
        return torch.tensor(float(setting))
    if published_head_kept:
        return torch.tensor(1.0)
    return (current if saved is None else saved).clone()
