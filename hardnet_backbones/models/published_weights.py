"""What the published detector weights share: torchvision-style ``Weights`` entries without a published hash,
resolved to a state dict (named weights downloaded once and pinned, or a local file)."""
from pathlib import Path
from typing import Any, Dict, List, Type, Union

import torch
from torchvision.models import WeightsEnum

from .hub import load_weights_file, pinned_download

__all__ = ['coco_categories', 'to_image_tensor', 'resolve_weights']


def coco_categories() -> List[str]:
    """The 80 COCO category names in id order (torchvision's list without its background and N/A entries)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
    return [c for c in FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta['categories'] if c not in ('__background__', 'N/A')]


def to_image_tensor(image: Any) -> torch.Tensor:
    """A PIL image or uint8 tensor -> a float ``(3, H, W)`` tensor in [0, 1] (what the detectors take)."""
    from torchvision.transforms.functional import pil_to_tensor
    tensor = image if isinstance(image, torch.Tensor) else pil_to_tensor(image)
    return tensor.float() / 255 if not tensor.is_floating_point() else tensor


def resolve_weights(weights: Union[str, Path, WeightsEnum], enum: Type[WeightsEnum], progress: bool
                    ) -> Dict[str, torch.Tensor]:
    """The tensors of ``weights``: a member of ``enum`` (or its name), downloaded once and pinned by SHA-256
    (:func:`pinned_download`), or a local file."""
    if isinstance(weights, str) and weights in enum.__members__:
        weights = enum[weights]
    if isinstance(weights, enum):
        return load_weights_file(pinned_download(weights.url, progress=progress))
    return load_weights_file(weights)
