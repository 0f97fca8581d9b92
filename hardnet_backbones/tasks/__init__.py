"""The built-in tasks (detection, segmentation), the one model builder for a config, and trained-model loading."""
import difflib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch
from PIL import Image

from ..engine.config import Config, DataConfig, config_from_dict
from ..engine.task import Task, register_task
from ..errors import CheckpointError, ConfigError, DownloadError
from ..predict import image_to_input, model_device
from ..state_dict import match_state_dict

__all__ = ['BuiltInTask', 'TrainedModel', 'build_model_from_config', 'check_model_config', 'load_trained_model',
           'data_roots', 'model_builders', 'detection_input_size', 'TORCHVISION_PREFIX']


def data_roots(data: DataConfig, train: bool) -> List[Path]:
    """The dataset folder(s) of the training split, or of the validation split (``data.val_root`` when set)."""
    if not train and data.val_root is not None:
        return [Path(data.val_root)]
    return [Path(r) for r in ([data.root] if isinstance(data.root, str) else data.root)]


# builder arguments that have keys of their own in the model section
_OWN_KEYS = {'num_classes': 'model.num_classes', 'weights_backbone': 'model.weights_backbone',
             'trainable_backbone_layers': 'model.trainable_backbone_layers', 'aux_loss': 'model.aux_loss'}


TORCHVISION_PREFIX = 'torchvision:'
# torchvision builder arguments the engine sets itself: no full-model weights, no download progress bar
_TORCHVISION_FIXED = ('weights', 'progress')


def model_builders(task: str) -> Dict[str, Callable[..., torch.nn.Module]]:
    """The builders ``model.name`` can name for ``task``: ours, and torchvision's own models as
    ``torchvision:<name>`` (its SSD / SSDLite detectors and all its segmentation models), so that
    backbones can be compared with the same data and recipe."""
    import torchvision.models as tvm

    from ..detection import DETECTION_MODELS
    from ..segmentation import SEGMENTATION_MODELS

    if task == 'detection':
        ours, theirs = DETECTION_MODELS, [n for n in tvm.list_models(module=tvm.detection) if n.startswith('ssd')]
    else:
        ours, theirs = SEGMENTATION_MODELS, tvm.list_models(module=tvm.segmentation)
    return {**ours, **{TORCHVISION_PREFIX + n: tvm.get_model_builder(n) for n in theirs}}


def detection_input_size(cfg: Config) -> int:
    """The square size a detector resizes its images to (``model.kwargs.size`` or the builder's)."""
    from ..detection import detection_input_size as builder_size

    name = cfg.model.name
    if name.startswith(TORCHVISION_PREFIX):
        return int(re.search(r'ssd(?:lite)?(\d+)', name).group(1))
    return cfg.model.kwargs.get('size', builder_size(name))


def _builder(task: str, name: str) -> Callable[..., torch.nn.Module]:
    builders = model_builders(task)
    if name not in builders:
        raise ConfigError(f'model.name: {name!r} is not a {task} model; choose one of {", ".join(sorted(builders))}')
    return builders[name]


def _builder_arguments(task: str, name: str) -> List[str]:
    """The keyword arguments ``model.kwargs`` may give the builder ``name`` (detectors: SSD's too)."""
    from torchvision.models.detection.ssd import SSD

    names = [p.name for p in inspect.signature(_builder(task, name)).parameters.values()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _TORCHVISION_FIXED]
    if task == 'detection':
        fixed = ('self', 'backbone', 'anchor_generator', 'size', 'num_classes', 'head')
        names += ([] if name.startswith(TORCHVISION_PREFIX) else ['size']) + [
            p for p in inspect.signature(SSD.__init__).parameters if p not in fixed]
    return [n for n in names if n not in _OWN_KEYS]


def check_model_config(cfg: Config) -> None:
    """``model.name`` is a builder of the task and every ``model.kwargs`` key is an argument it takes.

    Raises:
        ConfigError: naming the unknown key, the closest valid one and the whole list.
    """
    valid = _builder_arguments(cfg.task, cfg.model.name)
    weights = cfg.model.weights_backbone
    if cfg.model.name.startswith(TORCHVISION_PREFIX) and weights not in (None, 'DEFAULT'):
        raise ConfigError(f'model.weights_backbone: torchvision models take null or DEFAULT (their published '
                          f'backbone weights), not {weights!r}')
    for key in cfg.model.kwargs:
        if key in _OWN_KEYS:
            raise ConfigError(f'model.kwargs.{key}: set it as {_OWN_KEYS[key]} instead')
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise ConfigError(f'model.kwargs.{key}: {cfg.model.name} takes no argument {key!r}{hint}; '
                              f'valid: {", ".join(valid)}')


def build_model_from_config(
        cfg: Config,
        num_classes: int,
        state_dict: Optional[Dict[str, torch.Tensor]] = None,
) -> torch.nn.Module:
    """The model ``cfg.model`` describes, for training, evaluation and inference alike.

    Args:
        cfg: run config (``model.name``, ``weights_backbone``, ``trainable_backbone_layers``, ``aux_loss``, ``kwargs``).
        num_classes: classes of the model (detection: the background included).
        state_dict: trained weights to load; then no backbone weights are downloaded (they would be overwritten).

    Raises:
        ConfigError: unknown model or arguments. DownloadError: backbone weights cannot be fetched.
        CheckpointError: ``state_dict`` does not fit the model.
    """
    m = cfg.model
    builder = _builder(cfg.task, m.name)
    kwargs = dict(m.kwargs, num_classes=num_classes,
                  weights_backbone=m.weights_backbone if state_dict is None else None)
    if m.name.startswith(TORCHVISION_PREFIX):
        kwargs['weights'] = None
    if cfg.task == 'detection' and m.trainable_backbone_layers is not None:
        kwargs['trainable_backbone_layers'] = m.trainable_backbone_layers
    if cfg.task == 'segmentation' and m.aux_loss is not None:
        kwargs['aux_loss'] = m.aux_loss
    try:
        model = builder(**kwargs)
    except DownloadError as e:
        raise DownloadError(f'model.weights_backbone={m.weights_backbone}: {e.problem}. Offline, fetch the file '
                            f'elsewhere and set model.weights_backbone=PATH', e.problem) from e
    except ValueError as e:  # the builders' own checks: unknown name, num_classes, output_stride, ...
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f'model {m.name!r}: {e}') from e
    if state_dict is not None:
        what = f'{m.name} with {num_classes} classes ({cfg.task})'
        try:
            model.load_state_dict(match_state_dict(dict(state_dict), model, what=what))
        except CheckpointError as e:
            raise CheckpointError(f'{e}{_layout_hint(cfg, state_dict)}') from e
    return model


def _layout_hint(cfg: Config, state_dict: Dict[str, torch.Tensor]) -> str:
    """The fix for weights of a builder's earlier default layout, if that is what they are."""
    if (cfg.model.name == 'lraspp_hardnet39ds' and 'dilated_last_stage' not in cfg.model.kwargs
            and any(k.startswith('backbone.body.features_block4.') for k in state_dict)):
        return ('. These weights have the layout of lraspp_hardnet39ds before 0.2 (high-level branch on the '
                'dilated last stage): set model.kwargs.dilated_last_stage=true')
    return ''


class BuiltInTask(Task):
    """What detection and segmentation share: the model comes from :func:`build_model_from_config`."""

    def check_config(self) -> None:
        check_model_config(self.cfg)

    def num_classes(self, dataset) -> int:
        return self.cfg.model.num_classes or dataset.num_classes

    def build_model(self, num_classes: int, state_dict=None) -> torch.nn.Module:
        return build_model_from_config(self.cfg, num_classes, state_dict)


@dataclass
class TrainedModel:
    """A model trained by ``tools/train.py``, ready for inference (see :func:`load_trained_model`).

    Attributes:
        model: in eval mode, on the requested device.
        task: ``'detection'`` or ``'segmentation'``.
        class_names: detection: the object classes (label ``i`` is ``class_names[i - 1]``, 0 is the
            background); segmentation: every class, index order.
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
        values in [0, 1] for detectors (they normalise inside), ImageNet-normalised for segmenters."""
        return image_to_input(image, self.task)


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
    from ..engine.checkpoint import load_training_checkpoint, model_weights
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


def _detection_task(cfg: Config) -> Task:
    from .detection import DetectionTask
    return DetectionTask(cfg)


def _segmentation_task(cfg: Config) -> Task:
    from .segmentation import SegmentationTask
    return SegmentationTask(cfg)


register_task('detection', _detection_task)
register_task('segmentation', _segmentation_task)
