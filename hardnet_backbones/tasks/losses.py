"""Segmentation losses: cross-entropy with an ignore index and the bootstrapped (OHEM) variant."""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ['bootstrapped_cross_entropy', 'SegmentationLoss']


def bootstrapped_cross_entropy(
        logits: torch.Tensor,
        target: torch.Tensor,
        min_k: int = 4096,
        threshold: float = 0.3,
        ignore_index: int = 255,
) -> torch.Tensor:
    """Online hard-example mining cross-entropy (as FC-HarDNet trains), averaged over the batch.

    Per image, over its labelled pixels: when the ``min_k``-th largest pixel loss exceeds
    ``threshold``, average every pixel loss above ``threshold``; otherwise average the ``min_k``
    largest ones. Unlabelled (``ignore_index``) pixels never count.

    Args:
        logits: ``(B, C, H, W)``.
        target: ``(B, H, W)`` class indices.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f'logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size')
    pixel_losses = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction='none')
    per_image = []
    for losses, labels in zip(pixel_losses, target):
        valid = losses[labels != ignore_index]
        if valid.numel() == 0:
            per_image.append(logits.sum() * 0)  # keeps the graph; nothing to learn from this image
            continue
        ranked, _ = valid.sort(descending=True)
        k = min(min_k, ranked.numel())
        if ranked[k - 1] > threshold:
            per_image.append(ranked[ranked > threshold].mean())
        else:
            per_image.append(ranked[:k].mean())
    return torch.stack(per_image).mean()


class SegmentationLoss(nn.Module):
    """Loss on ``{"out", "aux"}`` model outputs: ``loss(out) + aux_weight * loss(aux)``.

    Args:
        name: 'cross_entropy' or 'bootstrapped_cross_entropy'.
        ignore_index: label of unlabelled pixels.
        aux_weight: weight of the auxiliary head's loss (when the model returns ``"aux"``).
        min_k, threshold: bootstrapping parameters.
    """

    def __init__(self, name: str = 'cross_entropy', ignore_index: int = 255, aux_weight: float = 0.5,
                 min_k: int = 4096, threshold: float = 0.3):
        super().__init__()
        if name not in ('cross_entropy', 'bootstrapped_cross_entropy'):
            raise ConfigError(f'loss.name: {name!r} is not a segmentation loss (cross_entropy, '
                              f'bootstrapped_cross_entropy)')
        self.name = name
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.min_k = min_k
        self.threshold = threshold

    def _single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.name == 'bootstrapped_cross_entropy':
            return bootstrapped_cross_entropy(logits, target, self.min_k, self.threshold, self.ignore_index)
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)

    def forward(
            self, outputs: Dict[str, torch.Tensor], target: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        parts = {'out': self._single(outputs['out'], target)}
        total = parts['out']
        if 'aux' in outputs and self.aux_weight:
            parts['aux'] = self._single(outputs['aux'], target)
            total = total + self.aux_weight * parts['aux']
        return total, parts
