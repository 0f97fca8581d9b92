"""One image's prediction made readable: the detections and segmentation classes the tools and the app show,
as pictures and as rows (so ``tools/detect.py``, ``tools/segment.py`` and the web app draw and report alike)."""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..visualization.draw import draw_detections, overlay_segmentation

__all__ = ['Detections', 'detections_of', 'SegmentationResult', 'segmentation_of']


@dataclass
class Detections:
    """What a detector found on one image at a score threshold.

    Attributes:
        picture: the image with every kept box (and mask) drawn, captioned "name score".
        rows: the kept detections, best first: ``{'box': [x1, y1, x2, y2], 'label': name, 'score': s}``.
        kept: the kept raw outputs (``boxes``, ``labels``, ``scores``, ``masks``...), on the CPU.
    """
    picture: Image.Image
    rows: List[Dict[str, Any]]
    kept: Dict[str, torch.Tensor]


def detections_of(image: torch.Tensor, prediction: Dict[str, torch.Tensor], class_names: Sequence[str],
                  score_threshold: float) -> Detections:
    """The detections of ``prediction`` (one image's output of a torchvision-style detector, 1-based labels)
    scoring at least ``score_threshold``, drawn on ``image`` (``(3, H, W)`` in [0, 1])."""
    prediction = {k: v.cpu() for k, v in prediction.items()}
    keep = prediction['scores'] >= score_threshold
    order = torch.argsort(prediction['scores'][keep], descending=True)
    kept = {k: v[keep][order] for k, v in prediction.items()}
    picture = draw_detections(image, *(prediction[k] for k in ('boxes', 'labels', 'scores')), class_names,
                              score_threshold, masks=prediction.get('masks'))
    rows = [dict(box=box, label=class_names[int(label) - 1], score=score)
            for box, label, score in zip(*(kept[k].tolist() for k in ('boxes', 'labels', 'scores')))]
    return Detections(picture, rows, kept)


@dataclass
class SegmentationResult:
    """The classes of one image's pixels.

    Attributes:
        classes: ``(H, W)`` class indices.
        overlay: the classes blended over the image in the dataset's palette.
        shares: the fraction of the pixels of each class, every class listed, in class order.
    """
    classes: torch.Tensor
    overlay: Image.Image
    shares: Dict[str, float]

    def largest(self, count: Optional[int] = None) -> List[Tuple[str, float]]:
        """``(class, share)`` of the classes present, the largest first (the first ``count``)."""
        present = sorted(((n, s) for n, s in self.shares.items() if s > 0), key=lambda item: -item[1])
        return present[:count] if count else present


def segmentation_of(image: np.ndarray, logits: torch.Tensor, class_names: Sequence[str],
                    ignore_index: int = 255) -> SegmentationResult:
    """The per-pixel classes of ``logits`` (``(K, H, W)``) of the RGB ``image`` (HWC uint8): the mask, its overlay
    and the share of every class."""
    classes = logits.argmax(0).cpu()
    overlay = overlay_segmentation(image, classes, list(class_names), ignore_index=ignore_index)
    counts = torch.bincount(classes.flatten(), minlength=len(class_names)).double()
    shares = {name: float(c) for name, c in zip(class_names, counts / counts.sum())}
    return SegmentationResult(classes, overlay, shares)
