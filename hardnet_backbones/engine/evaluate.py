"""Evaluation of a trained checkpoint on one split, from the checkpoint alone or with a config."""
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch.nn as nn

from ..errors import CheckpointError, ConfigError
from ..models.hub import load_checkpoint_file
from ..utils.distributed import cleanup_distributed, init_distributed
from ..utils.files import write_text_atomic
from .checkpoint import model_weights
from .config import Config, config_from_dict, load_config, validate_config
from .loaders import val_loader
from .run_folder import setup_logging
from .task import create_task

__all__ = ['evaluate']


def _checkpoint_config(checkpoint_path: Path, state: Dict[str, Any], cfg: Optional[Config],
                       overrides: Sequence[str]) -> Config:
    """The config to evaluate with: the given one (checked against the checkpoint's), else the stored one."""
    stored = config_from_dict(state['config']) if isinstance(state.get('config'), dict) else None
    if cfg is None:
        if stored is None:
            raise ConfigError(f'{checkpoint_path} is a bare state dict without the run\'s config: pass the CONFIG '
                              f'it was trained with')
        return load_config(None, overrides, base=state['config'])
    if stored is not None:
        for what, old, new in (('task', stored.task, cfg.task), ('model.name', stored.model.name, cfg.model.name)):
            if old != new:
                raise CheckpointError(f'{checkpoint_path} holds a {old} model ({what}), but the config asks for '
                                      f'{new}; pass the config it was trained with, or no config at all')
    return cfg


def evaluate(cfg: Optional[Config], checkpoint: Union[str, Path], output: Optional[Union[str, Path]] = None,
             visuals_dir: Optional[Union[str, Path]] = None, predictions_dir: Optional[Union[str, Path]] = None,
             split: Optional[str] = None, overrides: Sequence[str] = (),
             onnx: Optional[Union[str, Path]] = None,
             open_onnx: Optional[Callable[[Union[str, Path], str], nn.Module]] = None,
             optimize: Optional[Callable[[nn.Module, str], nn.Module]] = None,
             batch_size: Optional[int] = None) -> Dict[str, Any]:
    """Evaluate a checkpoint on one split (default: the config's validation split).

    Args:
        cfg: run config; None rebuilds everything from the config stored in the training checkpoint.
        checkpoint: a training checkpoint (EMA weights preferred) or a bare model state dict.
        output: metrics JSON file. visuals_dir: predictions drawn on ``train.save_images`` images.
        predictions_dir: where to save the predictions (COCO results json, or palette PNG masks).
        split: the split to evaluate instead of ``data.val_split``.
        overrides: ``key=value`` changes to the stored config (when ``cfg`` is None), e.g. ``data.root=...``.
        onnx: evaluate this ONNX file exported from the checkpoint (e.g. its int8 version from
            ``hardnet-export --int8``) in onnxruntime instead of the checkpoint's PyTorch model; the
            checkpoint still gives the config and classes.
        open_onnx: with ``onnx``: ``open_onnx(path, task)`` returns a module called like the model, e.g.
            :class:`hardnet_backbones.deploy.OnnxRuntimeModel` (the engine imports no deployment code).
        optimize: ``optimize(model, task)`` returns the model to evaluate instead of the one as trained, e.g. in
            another precision through ``optimize_for_inference``; its ``precision`` attribute, if any, is recorded.
        batch_size: images per batch (default: ``train.batch_size``); detectors that pad batches (R-CNN, RetinaNet,
            FCOS) and segmenters are evaluated one image at a time whatever it is, so the metrics never depend on it.

    Only that split is read, and no backbone weights are downloaded (the checkpoint's replace them).
    """
    if onnx is not None and open_onnx is None:
        raise ValueError('evaluate(onnx=...) needs open_onnx, e.g. hardnet_backbones.deploy.OnnxRuntimeModel')
    checkpoint = Path(checkpoint)
    state = load_checkpoint_file(checkpoint)
    cfg = _checkpoint_config(checkpoint, state, cfg, overrides)
    validate_config(cfg)
    task = create_task(cfg)
    task.check_config()
    dist_info = init_distributed(cfg.train.device)
    try:
        setup_logging(None)
        val_set = task.build_dataset(split or cfg.data.val_split, train=False)
        class_names = list(state.get('class_names') or [])
        if class_names and class_names != list(val_set.class_names):
            raise CheckpointError(f'{checkpoint} was trained on the classes {class_names}, but the data has '
                                  f'{list(val_set.class_names)}')
        if onnx is None:
            model = task.build_model(task.num_classes(val_set), model_weights(state)).to(dist_info.device)
            if optimize is not None:
                model = optimize(model.eval(), cfg.task)
        else:
            model = open_onnx(onnx, cfg.task)
            if hasattr(model, 'check_classes'):
                model.check_classes(list(val_set.class_names), str(checkpoint))
        loader = val_loader(cfg, task, val_set, dist_info, batch_size)
        metrics = task.evaluate(model, val_set, loader, dist_info, predictions_dir)
        if dist_info.is_main:
            if output is not None:
                Path(output).parent.mkdir(parents=True, exist_ok=True)
                evaluated = dict(checkpoint=str(checkpoint), **({'onnx': str(onnx)} if onnx else {}),
                                 precision=getattr(model, 'precision', 'float32'), batch_size=loader.batch_size)
                write_text_atomic(output, json.dumps(dict(evaluated, metrics=metrics), indent=2))
            if visuals_dir is not None:
                task.save_visuals(model, val_set, visuals_dir, cfg.train.save_images)
        return metrics
    finally:
        cleanup_distributed()
