"""The app's models, loaded on first use and kept (a few at a time) by model and precision, through the loaders
the tools use: ``load_for_prediction`` for runs, ``create_classifier_model`` and ``create_model`` for weights."""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
from PIL import Image

from ..cli.common import load_for_prediction
from ..data.inputs import image_to_input
from ..errors import ConfigError
from ..inference.classify import create_classifier_model
from ..models.published_weights import coco_categories
from ..models.registry import create_model
from ..utils.cpu import cpu_supports_bfloat16
from .catalog import ModelChoice

__all__ = ['LoadedModel', 'ModelLoader', 'precisions_for', 'PRECISIONS']

PRECISIONS = ('float32', 'bfloat16', 'int8')


@dataclass
class LoadedModel:
    """A model ready for the page.

    Attributes:
        model: in eval mode.
        task: 'classification', 'detection' or 'segmentation'.
        class_names: detection: the object classes (label ``i`` is ``class_names[i - 1]``); otherwise every class.
        precision: 'float32', 'bfloat16' or 'int8' (onnxruntime).
        preprocess: decoded RGB image -> the model's input tensor.
        ignore_index: segmentation: the label of unlabelled pixels in the run's data.
    """
    model: nn.Module
    task: str
    class_names: Optional[List[str]]
    precision: str
    preprocess: Callable[[Image.Image], torch.Tensor]
    ignore_index: int = 255


def precisions_for(choice: Optional[ModelChoice], device: str = 'cpu') -> List[str]:
    """What ``choice`` can run in here: float32; bfloat16 where the device runs it natively (CUDA, or a CPU with
    AVX512_BF16 / AMX); int8 where the run's folder holds an exported int8 ONNX file."""
    precisions = ['float32']
    if torch.device(device).type == 'cuda' or cpu_supports_bfloat16()[0]:
        precisions.append('bfloat16')
    if choice is not None and choice.int8 is not None:
        precisions.append('int8')
    return precisions


def _load_run(choice: ModelChoice, precision: str, device: str) -> LoadedModel:
    trained = load_for_prediction(choice.path, choice.task, device, 'float32' if precision == 'int8' else precision,
                                  onnx=choice.int8 if precision == 'int8' else None)
    preprocess = trained.eval_transform() if choice.task == 'classification' else trained.preprocess
    return LoadedModel(trained.model, choice.task, trained.class_names, precision, preprocess,
                       trained.config.data.ignore_index)


def _optimized(model: nn.Module, task: str, precision: str) -> nn.Module:
    if precision == 'float32':
        return model
    from ..deploy import optimize_for_inference
    return optimize_for_inference(model, task, precision=precision)


def _load_weights(choice: ModelChoice, precision: str, device: str) -> LoadedModel:
    if choice.task == 'classification':
        from timm.data import create_transform, resolve_model_data_config

        model = create_classifier_model(choice.model_name, choice.path, device)
        transform = create_transform(**resolve_model_data_config(model), is_training=False)
        return LoadedModel(_optimized(model, 'classification', precision), 'classification', None, precision,
                           transform)
    try:
        model = create_model(choice.model_name, weights=choice.weights or choice.path, progress=False)
    except ValueError as e:  # weights that do not fit the model
        raise ConfigError(f'{choice.path}: {e}') from None
    model = _optimized(model.to(device).eval().requires_grad_(False), 'detection', precision)
    return LoadedModel(model, 'detection', coco_categories(), precision,
                       lambda image: image_to_input(image, 'detection'))


class ModelLoader:
    """Loads the app's models on first use and keeps the ``capacity`` used last (a model per precision)."""

    def __init__(self, device: str = 'cpu', capacity: int = 2):
        self.device = device
        self.capacity = capacity
        self._models: 'OrderedDict[Tuple[str, str], LoadedModel]' = OrderedDict()

    def get(self, choice: ModelChoice, precision: str) -> LoadedModel:
        """``choice`` in ``precision``, loaded now or kept from an earlier call.

        Raises:
            ConfigError: a precision ``choice`` cannot run in here (saying what to do); what the loaders raise for
                unreadable or unfit files (HardnetError, FileNotFoundError).
        """
        offered = precisions_for(choice, self.device)
        if precision not in offered:
            raise ConfigError(self._precision_refusal(choice, precision, offered))
        key = (choice.label, precision)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        load = _load_run if choice.source == 'run' else _load_weights
        loaded = load(choice, precision, self.device)
        self._models[key] = loaded
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)
        return loaded

    @staticmethod
    def _precision_refusal(choice: ModelChoice, precision: str, offered: List[str]) -> str:
        if precision == 'int8' and choice.source == 'run':
            return (f'{choice.label} has no int8 export: run hardnet-export --checkpoint {choice.path} --int8 '
                    f'--calibration IMAGES --output {choice.path.parent / "export"}, then restart the app')
        if precision == 'int8':
            return f'int8 is offered for runs exported with hardnet-export --int8; {choice.label} runs in {offered}'
        return f'{precision} does not run natively here; {choice.label} runs in {", ".join(offered)}'
