"""The one registry of every model the project can build, looked up by name.

Three kinds of names resolve here, so that the engine, config validation, benchmark, export and
every tool know the same models:

- our builders: the timm HarDNet classifiers (``hardnet68``, ...), the detectors
  (``ssdlite320_hardnet39ds``, ...) and segmenters (``fcn_hardnet68``, ``fchardnet70``, ...), each
  registered where it is defined, with :func:`register_model` (as timm's ``@register_model`` and
  torchvision's ``register_model`` do);
- ``torchvision:<name>``: any torchvision classification, detection or segmentation builder, for
  side-by-side comparisons with the same data and recipe (built without their full-model weights);
- any other timm model name (``resnet50``): a timm classifier.

Each :class:`ModelEntry` holds the facts callers need: the task, the default input size, the
arguments the builder takes and how to build it.
"""
import difflib
import functools
import inspect
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, TypeVar

import torch.nn as nn

from .detection_transform import SET_BY_BUILDERS, check_detector_settings, init_parameters

__all__ = ['ModelEntry', 'register_model', 'register_timm_model', 'get_model_entry', 'list_models', 'create_model',
           'TORCHVISION_PREFIX', 'TASKS', 'DEFAULT_NUM_CLASSES']

TORCHVISION_PREFIX = 'torchvision:'
TASKS = ('classification', 'detection', 'segmentation')
# classes of a model built without data to count them (benchmark, export): COCO's 91 ids, VOC's 21 classes
DEFAULT_NUM_CLASSES = {'detection': 91, 'segmentation': 21}

F = TypeVar('F', bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """What the project knows about one model name.

    Attributes:
        name: the name configs and tools use.
        task: 'classification', 'detection' or 'segmentation'.
        builder: the callable that builds it (its signature lists the arguments).
        input_size: the square size a detector resizes its images to; None where any size is taken.
        kwargs_class: the class the builder passes ``**kwargs`` on to (torchvision's ``SSD`` for detectors),
            whose constructor arguments are arguments of the builder too.
        fixed: arguments the project always sets itself (torchvision's full-model ``weights``).
        source: 'hardnet_backbones', 'torchvision' or 'timm'.
        checkpoint_filter: ``filter(state_dict, model)`` maps a published file's keys (or ours) to the model's,
            validated, as timm's ``checkpoint_filter_fn``; None: the keys are the model's own.
    """
    name: str
    task: str
    builder: Callable[..., nn.Module]
    input_size: Optional[int] = None
    kwargs_class: Optional[type] = None
    fixed: Dict[str, Any] = field(default_factory=dict)
    source: str = 'hardnet_backbones'
    checkpoint_filter: Optional[Callable[[Dict[str, Any], nn.Module], Dict[str, Any]]] = None

    def arguments(self) -> List[str]:
        """Keyword arguments the model takes (those in ``fixed`` excluded), the builder's own first."""
        return list(self.parameters())

    def parameters(self) -> Dict[str, inspect.Parameter]:
        """The keyword arguments the model takes with their annotations and defaults, as :meth:`arguments` lists
        them: the builder's, then the detector class's that reach it through the builder's ``**kwargs``."""
        def named(function: Callable) -> List[inspect.Parameter]:
            return [p for p in inspect.signature(function).parameters.values()
                    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        found = {p.name: p for p in named(self.builder)}
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.builder).parameters.values())
        if self.kwargs_class is not None and takes_kwargs:
            for p in init_parameters(self.kwargs_class):
                if p.name not in SET_BY_BUILDERS:
                    found.setdefault(p.name, p)
        return {name: p for name, p in found.items() if name not in self.fixed}

    def build(self, **kwargs: Any) -> nn.Module:
        """The model, built with ``kwargs`` (and the ``fixed`` arguments). A torchvision detector's settings are
        checked first, as our builders check theirs (:func:`check_detector_settings`)."""
        if self.task == 'detection' and self.source == 'torchvision':
            check_detector_settings(kwargs)
        return self.builder(**{**self.fixed, **kwargs})


_MODELS: Dict[str, ModelEntry] = {}


def _add(entry: ModelEntry) -> None:
    if entry.task not in TASKS:
        raise ValueError(f'task must be one of {TASKS}, got {entry.task!r}')
    if entry.name in _MODELS and _MODELS[entry.name].builder is not entry.builder:
        raise ValueError(f'a model named {entry.name!r} is registered already')
    _MODELS[entry.name] = entry


def register_model(
        task: str,
        *,
        input_size: Optional[int] = None,
        kwargs_class: Optional[type] = None,
        checkpoint_filter: Optional[Callable[[Dict[str, Any], nn.Module], Dict[str, Any]]] = None,
) -> Callable[[F], F]:
    """Decorator: register a builder function under its own name.

    Example::

        @register_model('detection', input_size=320, kwargs_class=SSD)
        def ssdlite320_hardnet39ds(*, num_classes=91, weights_backbone=None, **kwargs): ...
    """
    def decorate(fn: F) -> F:
        _add(ModelEntry(fn.__name__, task, fn, input_size=input_size, kwargs_class=kwargs_class,
                        checkpoint_filter=checkpoint_filter))
        return fn
    return decorate


def register_timm_model(name: str, input_size: Optional[int] = None) -> None:
    """Register a model that timm builds (``timm.create_model(name, **kwargs)``) as one of ours."""
    _add(ModelEntry(name, 'classification', _timm_builder(name), input_size=input_size))


@functools.lru_cache(maxsize=None)
def _timm_builder(name: str) -> Callable[..., nn.Module]:
    import timm

    def build(**kwargs: Any) -> nn.Module:
        return timm.create_model(name, **kwargs)
    build.__name__ = name
    return build


def _torchvision_task(builder: Callable[..., nn.Module]) -> Optional[str]:
    package = builder.__module__.split('.')
    if package[:2] != ['torchvision', 'models']:
        return None
    if len(package) == 3:
        return 'classification'
    return package[2] if package[2] in ('detection', 'segmentation') else None


def _torchvision_kwargs_class(builder: Callable[..., nn.Module]) -> Optional[type]:
    """The detector class a torchvision detection builder passes ``**kwargs`` to (its module imports it)."""
    classes = {'ssd': 'SSD', 'ssdlite': 'SSD', 'faster_rcnn': 'FasterRCNN', 'retinanet': 'RetinaNet', 'fcos': 'FCOS',
               'mask_rcnn': 'MaskRCNN', 'keypoint_rcnn': 'KeypointRCNN'}
    name = classes.get(builder.__module__.rsplit('.', 1)[-1])
    return getattr(sys.modules[builder.__module__], name) if name else None


def _torchvision_entry(name: str) -> ModelEntry:
    import torchvision.models as tvm

    tv_name = name[len(TORCHVISION_PREFIX):]
    try:
        builder = tvm.get_model_builder(tv_name)
    except ValueError:
        builder = None
    task = _torchvision_task(builder) if builder is not None else None
    if task is None:
        known = [TORCHVISION_PREFIX + n for n in tvm.list_models(module=tvm.detection) + tvm.list_models(
            module=tvm.segmentation)]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ValueError(f'{name!r} is not a torchvision classification, detection or segmentation model{hint}')
    size = re.search(r'^ssd(?:lite)?(\d+)', tv_name)
    kwargs_class = _torchvision_kwargs_class(builder) if task == 'detection' else None
    fixed = {'weights': None, 'progress': False}
    return ModelEntry(name, task, builder, input_size=int(size.group(1)) if size else None,
                      kwargs_class=kwargs_class, fixed=fixed, source='torchvision')


def get_model_entry(name: str) -> ModelEntry:
    """The entry of ``name``: one of ours, ``torchvision:<name>`` or another timm model.

    Raises:
        ValueError: unknown name (naming the closest known one).
    """
    if name in _MODELS:
        return _MODELS[name]
    if name.startswith(TORCHVISION_PREFIX):
        return _torchvision_entry(name)
    import timm
    if timm.is_model(name):
        return ModelEntry(name, 'classification', _timm_builder(name), source='timm')
    close = difflib.get_close_matches(name, list(_MODELS), n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ValueError(f'unknown model {name!r}{hint}; ours: {", ".join(list_models())}; also '
                     f'{TORCHVISION_PREFIX}<torchvision builder> and any timm model name')


def list_models(task: Optional[str] = None) -> List[str]:
    """Our registered model names (of ``task`` when given), sorted."""
    return sorted(n for n, e in _MODELS.items() if task is None or e.task == task)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model ``name`` (see :func:`get_model_entry`) with ``kwargs``."""
    return get_model_entry(name).build(**kwargs)
