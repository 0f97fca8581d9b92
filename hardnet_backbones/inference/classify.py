"""Image classification with a HarDNet (or any timm) model: model loading and top-k prediction."""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import timm
import torch
import torch.nn as nn
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config

from ..data.image_io import read_image
from ..errors import ConfigError, DownloadError
from ..models.hub import load_weights_file
from ..utils.device import model_device
from ..utils.progress import progress_bar
from .batching import batched

__all__ = ['Prediction', 'create_classifier_model', 'classify_images', 'top_classes']


@dataclass
class Prediction:
    """One of the top-k classes for an image."""
    index: int
    name: str
    probability: float


def _num_classes_in(state_dict: dict) -> Optional[int]:
    weights = [v for k, v in state_dict.items()
               if k.endswith('classifier.weight') or k.endswith('fc.weight') or k.endswith('.3.weight')]
    return int(weights[-1].shape[0]) if weights else None


def create_classifier_model(
        model_name: str,
        checkpoint: Optional[Union[str, Path]] = None,
        device: Union[str, torch.device] = 'cpu',
) -> nn.Module:
    """Build ``model_name`` in eval mode with real weights.

    Args:
        model_name: a timm model name (``hardnet68``, ...).
        checkpoint: local file in the published ``base.N`` layout or ours (a bare state dict or a
            training checkpoint with a ``model`` entry). Without it, the published weights are
            downloaded (verified by SHA-256 and cached).
        device: where to put the model.

    Raises:
        ConfigError: unknown model. DownloadError: no weights could be obtained (offline without
            ``checkpoint``). CheckpointError: the checkpoint is unreadable or does not fit the model.
    """
    if not timm.is_model(model_name):
        raise ConfigError(f'unknown timm model {model_name!r} (HarDNet: {", ".join(timm.list_models("hardnet*"))})')
    if checkpoint is None:
        try:
            model = timm.create_model(model_name, pretrained=True)
        except DownloadError as e:
            raise DownloadError(
                f'{model_name} has no weights available here ({e.problem}); pass a local checkpoint with '
                f'--checkpoint PATH: a model with random weights would give meaningless predictions', e.problem) from e
    else:
        state_dict = load_weights_file(checkpoint)
        num_classes = _num_classes_in(state_dict) or 1000
        model = timm.create_model(
            model_name, pretrained=True, num_classes=num_classes,
            pretrained_cfg_overlay=dict(state_dict=state_dict, num_classes=num_classes))
    return model.to(device).eval()


def _class_names(model: nn.Module, class_names: Optional[Sequence[str]]) -> Sequence[str]:
    if class_names is not None:
        return class_names
    num_classes = model.get_classifier().out_features
    info = ImageNetInfo() if num_classes == 1000 else None
    return [info.index_to_description(i) if info else f'class {i}' for i in range(num_classes)]


@torch.inference_mode()
def top_classes(
        model: nn.Module,
        images: Sequence[Image.Image],
        topk: int = 5,
        class_names: Optional[Sequence[str]] = None,
        transform: Optional[Callable] = None,
) -> List[List[Prediction]]:
    """Top-k predictions for each decoded RGB image, in one forward pass (see :func:`classify_images`)."""
    transform = transform or create_transform(**resolve_model_data_config(model), is_training=False)
    class_names = _class_names(model, class_names)
    batch = torch.stack([transform(image) for image in images]).to(model_device(model))
    results = []
    for probs in model(batch).float().softmax(-1):
        values, indices = probs.topk(min(topk, len(probs)))
        results.append([Prediction(int(i), class_names[int(i)], float(p))
                        for p, i in zip(values.tolist(), indices.tolist())])
    return results


def classify_images(
        model: nn.Module,
        paths: Sequence[Union[str, Path]],
        topk: int = 5,
        class_names: Optional[Sequence[str]] = None,
        batch_size: int = 8,
        progress: bool = False,
        transform: Optional[Callable] = None,
) -> List[List[Prediction]]:
    """Top-k predictions for each image file, preprocessed with the model's timm data config.

    Args:
        model: classifier in eval mode.
        paths: image files.
        topk: number of classes per image.
        class_names: names by class index; ImageNet-1k names for 1000-class models by default.
        batch_size: images per forward pass.
        progress: show a progress bar.
        transform: PIL image -> input tensor (default: timm's evaluation transform of the model's data config).
    """
    transform = transform or create_transform(**resolve_model_data_config(model), is_training=False)
    class_names = _class_names(model, class_names)
    results = []
    with progress_bar(total=len(paths), desc='classify', unit='image', disable=not progress) as bar:
        for chunk in batched(list(paths), batch_size):
            results += top_classes(model, [read_image(path) for path in chunk], topk, class_names, transform)
            bar.update(len(chunk))
    return results
