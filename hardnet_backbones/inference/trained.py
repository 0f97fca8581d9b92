"""Trained models back from their checkpoints, ready for inference."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform

from ..data.inputs import image_to_input
from ..engine.checkpoint import load_training_checkpoint, model_weights
from ..engine.config import Config, config_from_dict
from ..errors import CheckpointError
from ..models.hub import load_checkpoint_file
from ..tasks.builtin import build_model_from_config
from ..tasks.classification import classifier_data_config
from ..utils.device import model_device

__all__ = ['TrainedModel', 'load_trained_model', 'is_training_checkpoint']


@dataclass
class TrainedModel:
    """A model trained by ``tools/train.py``, ready for inference (see :func:`load_trained_model`).

    Attributes:
        model: in eval mode, on the requested device.
        task: ``'detection'``, ``'segmentation'`` or ``'classification'``.
        class_names: detection: the object classes (label ``i`` is ``class_names[i - 1]``, 0 is the
            background); segmentation and classification: every class, index order.
        config: the run's config.
        category_ids: detection label -> the dataset's category id (COCO results use these).
    """
    model: torch.nn.Module
    task: str
    class_names: List[str]
    config: Config
    category_ids: Dict[int, int] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def preprocess(self, image: Union[np.ndarray, Image.Image]) -> torch.Tensor:
        """An RGB image (HWC uint8 array or PIL) -> the ``(3, H, W)`` float tensor the model takes:
        values in [0, 1] for detectors (they normalise inside), ImageNet-normalised for segmenters, and the run's
        evaluation transform (resize by crop_pct, centre crop, normalise) for classifiers."""
        if self.task == 'classification':
            image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
            return self.eval_transform()(image.convert('RGB'))
        return image_to_input(image, self.task)

    def eval_transform(self):
        """Classifiers: the timm evaluation transform the run validated with (its ``data.input_size``)."""
        return create_transform(**classifier_data_config(self.config), is_training=False)


def is_training_checkpoint(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a checkpoint of ``tools/train.py`` (with its config), not a bare or published state
    dict."""
    state = load_checkpoint_file(path)
    return isinstance(state, dict) and isinstance(state.get('config'), dict) and 'model' in state


def load_trained_model(
        checkpoint: Union[str, Path],
        device: Union[str, torch.device] = 'cpu',
        task: Optional[str] = None,
) -> TrainedModel:
    """Rebuild a model trained by ``tools/train.py`` from its checkpoint alone (eval mode, no gradients, EMA
    weights when the run kept them); nothing is downloaded.

    Args:
        checkpoint: ``best.pth`` / ``last.pth`` of a run.
        device: where to put the model.
        task: when given, a checkpoint of another task is refused.

    Raises:
        FileNotFoundError, CheckpointError: missing, unreadable, not ours, or of another task.
    """
    state = load_training_checkpoint(checkpoint)
    cfg = config_from_dict(state['config'])
    if task is not None and cfg.task != task:
        raise CheckpointError(f'{checkpoint} holds a {cfg.task} model ({cfg.model.name}), not a {task} model')
    class_names = list(state.get('class_names') or [])
    if not class_names:
        raise CheckpointError(f'{checkpoint} has no class names; it was not written by tools/train.py')
    num_classes = len(class_names) + 1 if cfg.task == 'detection' else len(class_names)
    model = build_model_from_config(cfg, num_classes, model_weights(state))
    category_ids = {int(k): int(v) for k, v in (state.get('category_ids') or {}).items()}
    if cfg.task == 'detection' and not category_ids:
        category_ids = {label: label for label in range(1, num_classes)}
    model = model.to(device).eval().requires_grad_(False)  # for inference; call requires_grad_() to fine-tune
    return TrainedModel(model, cfg.task, class_names, cfg, category_ids)
