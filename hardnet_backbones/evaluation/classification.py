"""Classification metrics as timm's ``validate.py`` names them (``top1``, ``top5``, in percent), with the
validation loss, per-class accuracy and the confusion matrix."""
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..utils.distributed import DistInfo, all_reduce_sum
from ..utils.progress import progress_bar

__all__ = ['evaluate_classification', 'metrics_from_counts']

# on_prediction(sample index, probabilities of its classes)
PredictionCallback = Callable[[int, torch.Tensor], None]


def metrics_from_counts(correct_top1: int, correct_topk: int, k: int, loss_sum: float, confusion: torch.Tensor,
                        class_names: Sequence[str]) -> Dict[str, Any]:
    """``top1`` and ``top5`` in percent (top-5 counts the best ``k`` = min(5, classes) predictions), ``val_loss``,
    ``per_class_accuracy`` (percent; None for a class without validation images) and ``confusion`` (rows = truth)."""
    total = int(confusion.sum())
    per_class = {}
    for i, name in enumerate(class_names):
        count = int(confusion[i].sum())
        per_class[name] = round(100.0 * int(confusion[i, i]) / count, 4) if count else None
    return {'top1': 100.0 * correct_top1 / max(total, 1), 'top5': 100.0 * correct_topk / max(total, 1),
            'val_loss': loss_sum / max(total, 1), 'per_class_accuracy': per_class, 'confusion': confusion.tolist(),
            'images': total}


@torch.inference_mode()
def evaluate_classification(model: torch.nn.Module, loader, class_names: Sequence[str], dist_info: DistInfo,
                            on_prediction: Optional[PredictionCallback] = None) -> Dict[str, Any]:
    """Metrics of ``model`` over ``loader`` (sharded across processes, counts reduced); see
    :func:`metrics_from_counts`. ``on_prediction`` sees each sample's softmax (on this process's shard)."""
    model.eval()
    num_classes = len(class_names)
    k = min(5, num_classes)
    counts = torch.zeros(3, dtype=torch.float64)  # top-1 correct, top-k correct, summed loss
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    indices: List[int] = list(loader.sampler) if on_prediction is not None else []
    seen = 0
    for images, labels in progress_bar(loader, desc='validate', disable=not dist_info.is_main):
        logits = model(images.to(dist_info.device)).float().cpu()
        counts[2] += float(F.cross_entropy(logits[:, :num_classes], labels, reduction='sum'))
        topk = logits.topk(k, dim=1).indices
        counts[0] += int((topk[:, 0] == labels).sum())
        counts[1] += int((topk == labels[:, None]).any(1).sum())
        predicted = topk[:, 0].clamp(max=num_classes - 1)
        confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).reshape(
            num_classes, num_classes)
        if on_prediction is not None:
            for probabilities in logits.softmax(1):
                on_prediction(int(indices[seen]), probabilities)
                seen += 1
    counts = all_reduce_sum(counts)
    confusion = all_reduce_sum(confusion)
    return metrics_from_counts(int(counts[0]), int(counts[1]), k, float(counts[2]), confusion, class_names)
