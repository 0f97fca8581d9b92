"""What the published detector weights share: torchvision-style ``Weights`` entries without a published hash,
resolved to a state dict (named weights downloaded once and pinned, or a local file), and the class count a
detector is built with from them."""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, Union

import torch
from torchvision.models import WeightsEnum

from .hub import load_weights_file, pinned_download

__all__ = ['coco_categories', 'to_image_tensor', 'resolve_weights', 'classes_with_weights']

_logger = logging.getLogger(__name__)


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


def classes_with_weights(num_classes: Optional[int], file_classes: Optional[int], default: int, model: str,
                         head: str) -> Tuple[int, bool]:
    """The class count (the background counted) to build ``model`` with from weights of ``file_classes`` classes
    (None: no weights, or no class head in them): ``num_classes`` if given, else the file's, else ``default``; and
    whether the file's ``head`` is replaced by a new one (another count than the file's: fine-tuning).

    Raises:
        ValueError: ``num_classes`` one below the file's, i.e. the background left out of the count.
    """
    num_classes = num_classes or file_classes or default
    if file_classes is None:
        return num_classes, False
    if num_classes == file_classes - 1:
        raise ValueError(f'num_classes={num_classes}: the weights have {num_classes} object classes, and num_classes '
                         f'counts the background as for every detector here: pass num_classes={file_classes} '
                         f'(or leave it out); another count fine-tunes a new {head}')
    replace = num_classes != file_classes
    if replace:
        _logger.info('%s: the %s of the weights (%d classes, the background counted) is replaced by a new one for %d',
                     model, head, file_classes, num_classes)
    return num_classes, replace
