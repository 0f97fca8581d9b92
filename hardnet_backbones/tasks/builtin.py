"""What the built-in tasks share: the model a config describes, built through the model registry."""
import difflib
import inspect
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from torchvision.models.detection.mask_rcnn import MaskRCNN
from torchvision.models.detection.ssd import SSD

from ..engine.coerce import coerce_value
from ..engine.config import Config, DataConfig
from ..engine.task import Task
from ..errors import CheckpointError, ConfigError, DownloadError, HardnetError
from ..models.backbone import freeze_classifier_levels
from ..models.centernet import CenterNet
from ..models.registry import TORCHVISION_PREFIX, ModelEntry, get_model_entry, list_models
from ..models.state_dict import match_state_dict

__all__ = ['BuiltInTask', 'build_model_from_config', 'check_model_config', 'data_roots', 'detection_input_size',
           'model_entry', 'predicts_masks']

_logger = logging.getLogger(__name__)

# detectors whose training targets hold what the detection datasets do not give
_NEEDS_KEYPOINTS = ('KeypointRCNN',)

# builder arguments that have keys of their own in the model section
_OWN_KEYS = {'num_classes': 'model.num_classes', 'weights_backbone': 'model.weights_backbone',
             'trainable_backbone_layers': 'model.trainable_backbone_layers', 'aux_loss': 'model.aux_loss'}


def data_roots(data: DataConfig, train: bool) -> List[Path]:
    """The dataset folder(s) of the training split, or of the validation split (``data.val_root`` when set)."""
    if not train and data.val_root is not None:
        return [Path(data.val_root)]
    return [Path(r) for r in ([data.root] if isinstance(data.root, str) else data.root)]


def model_entry(cfg: Config) -> ModelEntry:
    """The registry entry of ``model.name``, which must be a model of the config's task.

    Raises:
        ConfigError: unknown name, or a model of another task (naming the valid ones).
    """
    name = cfg.model.name
    try:
        entry = get_model_entry(name)
    except ValueError as e:
        raise ConfigError(f'model.name: {e}') from None
    choices = f'choose one of {", ".join(list_models(cfg.task))} or {TORCHVISION_PREFIX}<torchvision {cfg.task} model>'
    if entry.task != cfg.task:
        raise ConfigError(f'model.name: {name!r} is not a {cfg.task} model (it is a {entry.task} model); {choices}')
    if cfg.task == 'detection' and getattr(entry.kwargs_class, '__name__', '') in _NEEDS_KEYPOINTS:
        raise ConfigError(f'model.name: {name!r} is not a detection model this engine trains yet: it learns from '
                          f'keypoints, and the detection datasets give boxes and masks; build it with '
                          f'hardnet_backbones.models.create_model to train it yourself, or {choices}')
    return entry


def predicts_masks(cfg: Config) -> bool:
    """Whether ``model.name`` is an instance segmenter (a Mask R-CNN): it trains on, and predicts, object masks."""
    kwargs_class = model_entry(cfg).kwargs_class
    return isinstance(kwargs_class, type) and issubclass(kwargs_class, MaskRCNN)


def is_centernet(cfg: Config) -> bool:
    """Whether ``model.name`` is a CenterNet."""
    kwargs_class = model_entry(cfg).kwargs_class
    return isinstance(kwargs_class, type) and issubclass(kwargs_class, CenterNet)


def resizes_to_one_size(cfg: Config) -> bool:
    """Whether the detector resizes every image to one square size (an SSD, a CenterNet that stretches its images),
    so batches need no padding."""
    if is_centernet(cfg):
        return not cfg.model.kwargs.get('keep_res', False)
    kwargs_class = model_entry(cfg).kwargs_class
    return isinstance(kwargs_class, type) and issubclass(kwargs_class, SSD)


_PROPORTION = re.compile(r'thresh|fraction|rate')  # builder arguments in [0, 1]
_COUNT = re.compile(r'size|per_img|top_?n|topk|channels')  # builder arguments of at least 1


def _check_kwarg(name: str, value: Any, parameter: inspect.Parameter, model: str) -> None:
    """A ``model.kwargs`` value against the type its builder declares (or its default's: a number, or a list of
    numbers, where torchvision leaves the argument unannotated) and the range
    its name implies (thresholds, fractions and rates in [0, 1], sizes and counts >= 1, other numbers >= 0)."""
    key = f'model.kwargs.{name}'
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        annotation = type(default) if isinstance(default, (bool, int, float, str)) else Any
        if annotation in (int, float):  # torchvision leaves these unannotated; some take lists (min_size)
            annotation = Union[annotation, List[annotation]]
    coerce_value(value, annotation, key)
    numbers = [v for v in (value if isinstance(value, (list, tuple)) else [value])
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for number in numbers:
        low, high = (1, None) if _COUNT.search(name) else (0, 1 if _PROPORTION.search(name) else None)
        if number < low or (high is not None and number > high):
            limits = f'in [{low}, {high}]' if high is not None else f'>= {low}'
            raise ConfigError(f'{key}: {value!r} is invalid for {model}; it must be {limits}')


def detection_input_size(cfg: Config) -> Optional[int]:
    """The square size an SSD detector resizes its images to (``model.kwargs.size`` or the model's own); None for
    the FPN detectors, which resize to ``min_size`` / ``max_size`` themselves."""
    return cfg.model.kwargs.get('size', model_entry(cfg).input_size)


def model_kwargs_lines(cfg: Config) -> List[str]:
    """One ``model.kwargs.<name>: default`` line per argument ``model.name`` takes through ``model.kwargs`` (what
    ``hardnet-train CONFIG --list-kwargs`` prints)."""
    def shown(name: str, parameter: inspect.Parameter) -> str:
        default = 'required' if parameter.default is inspect.Parameter.empty else repr(parameter.default)
        if name in cfg.model.kwargs:
            return f'{cfg.model.kwargs[name]!r} (this config; default {default})'
        return default
    return [f'model.kwargs.{name}: {shown(name, p)}' for name, p in model_entry(cfg).parameters().items()
            if name not in _OWN_KEYS]


def check_model_config(cfg: Config) -> None:
    """``model.name`` is a model of the task and every ``model.kwargs`` key is an argument it takes, with a value
    of the type and range it needs.

    Raises:
        ConfigError: naming the unknown key, the closest valid one and the whole list; or the bad value.
    """
    entry = model_entry(cfg)
    if entry.task == 'classification':  # timm's builders take **kwargs: timm checks them when building
        for key in cfg.model.kwargs:
            if key in _OWN_KEYS or key == 'pretrained':
                raise ConfigError(f'model.kwargs.{key}: set it as {_OWN_KEYS.get(key, "model.weights_backbone")} '
                                  f'instead')
        return
    parameters = entry.parameters()
    valid = [n for n in parameters if n not in _OWN_KEYS]
    weights = cfg.model.weights_backbone
    if entry.source == 'torchvision' and weights not in (None, 'DEFAULT'):
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
        _check_kwarg(key, cfg.model.kwargs[key], parameters[key], cfg.model.name)


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
    entry = model_entry(cfg)
    if cfg.task == 'classification':
        return _build_classifier(cfg, entry, num_classes, state_dict)
    kwargs = dict(m.kwargs, num_classes=num_classes,
                  weights_backbone=m.weights_backbone if state_dict is None else None)
    if state_dict is not None and kwargs.get('weights') is not None:
        kwargs['weights'] = None  # a detector's full published weights: the checkpoint holds them all already
    if cfg.task == 'detection' and m.trainable_backbone_layers is not None:
        kwargs['trainable_backbone_layers'] = m.trainable_backbone_layers
        if state_dict is None and m.weights_backbone is None and entry.source != 'torchvision':  # torchvision warns
            _logger.warning('model.trainable_backbone_layers=%d has no effect without model.weights_backbone: every '
                            'layer trains (as in torchvision)', m.trainable_backbone_layers)
    if cfg.task == 'segmentation' and m.aux_loss is not None:
        kwargs['aux_loss'] = m.aux_loss
    try:
        model = entry.build(**kwargs)
    except DownloadError as e:
        raise _offline_backbone_error(m.weights_backbone, e) from e
    except ValueError as e:  # the builders' own checks: unknown name, num_classes, output_stride, ...
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f'model {m.name!r}: {e}') from e
    if state_dict is not None:
        what = f'{m.name} with {num_classes} classes ({cfg.task})'
        try:
            if entry.checkpoint_filter is not None:  # a published file in its own layout, or ours
                model.load_state_dict(entry.checkpoint_filter(dict(state_dict), model))
            else:
                model.load_state_dict(match_state_dict(dict(state_dict), model, what=what))
        except CheckpointError as e:
            raise CheckpointError(f'{e}{_layout_hint(cfg, state_dict)}') from e
    return model


def _offline_backbone_error(weights_backbone: Any, error: DownloadError) -> DownloadError:
    return DownloadError(f'model.weights_backbone={weights_backbone}: {error.problem}. Offline, fetch the file '
                         f'elsewhere and set model.weights_backbone=PATH', error.problem)


def _build_classifier(cfg: Config, entry: ModelEntry, num_classes: int,
                      state_dict: Optional[Dict[str, torch.Tensor]]) -> torch.nn.Module:
    """A timm classifier: ``model.weights_backbone`` (null, DEFAULT = the published weights, or a file) gives the
    body and a new head sized to the data (the published head is kept for 1000 classes); ``state_dict`` (a trained
    or published checkpoint) gives everything. ``trainable_backbone_layers`` freezes the rest."""
    m = cfg.model
    kwargs: Dict[str, Any] = dict(m.kwargs, num_classes=num_classes)
    if state_dict is not None:  # the file's own head: timm keeps it when its class count is the model's
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(state_dict=dict(state_dict),
                                                                   num_classes=num_classes))
    elif m.weights_backbone == 'DEFAULT':
        kwargs['pretrained'] = True
    elif m.weights_backbone is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=m.weights_backbone))
    try:
        model = entry.build(**kwargs)
    except DownloadError as e:
        raise _offline_backbone_error(m.weights_backbone, e) from e
    except (TypeError, ValueError) as e:
        if isinstance(e, HardnetError):
            raise
        raise ConfigError(f'model {m.name!r}: {e}') from e
    except RuntimeError as e:  # timm's load_state_dict: the file does not fit the model
        raise CheckpointError(f'{m.name} with {num_classes} classes: the weights do not fit ({str(e)[:300]})') from e
    if m.trainable_backbone_layers is not None:
        freeze_classifier_levels(model, m.trainable_backbone_layers)
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
        """``model.num_classes`` when set (refused when the data hold more classes), else the data's count."""
        wanted = self.cfg.model.num_classes
        if wanted and wanted < dataset.num_classes:
            counted = 'the background included' if self.cfg.task == 'detection' else 'as listed by the data'
            raise ConfigError(f'model.num_classes={wanted} is smaller than the {dataset.num_classes} classes of the '
                              f'training data ({counted}); raise it to {dataset.num_classes} or leave it unset to '
                              f'take the data\'s count')
        return wanted or dataset.num_classes

    def build_model(self, num_classes: int, state_dict=None) -> torch.nn.Module:
        return build_model_from_config(self.cfg, num_classes, state_dict)
