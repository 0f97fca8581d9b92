"""Segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel and mean accuracy."""
import logging
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from ..utils.distributed import DistInfo, all_reduce_sum
from ..utils.progress import progress_bar

__all__ = ['confusion_matrix', 'metrics_from_confusion', 'evaluate_segmentation']

_logger = logging.getLogger(__name__)


def confusion_matrix(
        pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """``(K, K)`` int64 counts, rows = ground truth, columns = prediction; ignored pixels skipped."""
    keep = target != ignore_index
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def metrics_from_confusion(confusion: torch.Tensor, class_names: Sequence[str]) -> Dict[str, Any]:
    """mIoU over classes present in the ground truth or the predictions, per-class IoU (None when a class
    appears in neither), pixel accuracy and mean class accuracy; all in [0, 1]. A model that predicts one
    class on every pixel while the ground truth holds several gets a ``degenerate`` entry saying so (and a
    logged warning): its mIoU alone may not show it."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    gt_pixels = confusion.sum(1)
    union = gt_pixels + confusion.sum(0) - true_positive
    iou = true_positive / union.clamp(min=1)
    present = union > 0
    has_gt = gt_pixels > 0
    total = confusion.sum()
    metrics = dict(
        mIoU=float(iou[present].mean()) if present.any() else 0.0,
        pixel_accuracy=float(true_positive.sum() / total) if total > 0 else 0.0,
        mean_accuracy=float((true_positive[has_gt] / gt_pixels[has_gt]).mean()) if has_gt.any() else 0.0,
        per_class_iou={name: (float(v) if p else None) for name, v, p in zip(class_names, iou, present)},
    )
    predicted = (confusion.sum(0) > 0).nonzero().flatten().tolist()
    if len(predicted) == 1 and int(has_gt.sum()) > 1:
        metrics['degenerate'] = (f'the model predicts {class_names[predicted[0]]!r} on every pixel of every '
                                 f'validation image')
        _logger.warning('%s: it has not learnt the other classes', metrics['degenerate'])
    return metrics


@torch.inference_mode()
def evaluate_segmentation(
        model: torch.nn.Module,
        loader: torch.utils.data.DataLoader,
        num_classes: int,
        class_names: Sequence[str],
        dist_info: DistInfo,
        ignore_index: int = 255,
        on_prediction: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> Dict[str, Any]:
    """Accumulate the confusion matrix over ``loader`` (summed across processes) and score it.

    ``on_prediction(dataset_index, (H, W) class map)`` is called for every image, e.g. to save it.
    """
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=dist_info.device)
    indices = iter(loader.sampler) if on_prediction is not None else None
    for images, masks in progress_bar(loader, desc='evaluate', disable=not dist_info.is_main, leave=False):
        predictions = model(images.to(dist_info.device, non_blocking=True))['out'].argmax(1)
        confusion += confusion_matrix(predictions, masks.to(dist_info.device), num_classes, ignore_index)
        if on_prediction is not None:
            for prediction in predictions.cpu():
                on_prediction(int(next(indices)), prediction)
    confusion = all_reduce_sum(confusion)
    return metrics_from_confusion(confusion.cpu(), class_names)
