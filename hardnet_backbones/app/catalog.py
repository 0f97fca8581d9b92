"""What the app can run: the runs found under a folder, the published weights in the cache, and files named on
the command line, each one entry of a dropdown."""
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from urllib.parse import urlparse

import torch

from ..engine.yaml_io import read_yaml_file
from ..errors import ConfigError, HardnetError
from ..models import CenterNet_HarDNet85_Weights, SSD512_HarDNet68_Weights, SSD512_HarDNet85_Weights
from ..models.registry import TASKS, get_model_entry

__all__ = ['ModelChoice', 'find_runs', 'cached_published', 'weights_choice', 'build_catalog', 'PUBLISHED_CLASSIFIERS',
           'PUBLISHED_DETECTORS']

PUBLISHED_CLASSIFIERS = ('hardnet39ds', 'hardnet68ds', 'hardnet68', 'hardnet85')
PUBLISHED_DETECTORS = (('centernet_hardnet85', CenterNet_HarDNet85_Weights),
                       ('ssd512_hardnet68', SSD512_HarDNet68_Weights),
                       ('ssd512_hardnet85', SSD512_HarDNet85_Weights))
CHECKPOINT_NAMES = ('best.pth', 'last.pth')  # the run's checkpoint the app loads, first found


@dataclass(frozen=True)
class ModelChoice:
    """One model the app offers.

    Attributes:
        label: the dropdown's text (unique in a catalog).
        task: 'classification', 'detection' or 'segmentation'.
        source: 'run' (a checkpoint of tools/train.py), 'published' (named published weights) or 'file'
            (weights given as a file for a model name).
        model_name: the registry name.
        path: the checkpoint (run), or the weights file (published, file).
        weights: the name of the published weights (``COCO_512``...), for detectors built from them.
        int8: an int8 ONNX file exported from the run (``hardnet-export --int8``), if one lies in its folder.
    """
    label: str
    task: str
    source: str
    model_name: str
    path: Path
    weights: Optional[str] = None
    int8: Optional[Path] = None


def _run_checkpoint(folder: Path) -> Optional[Path]:
    return next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)


def _run_choice(config_file: Path, root: Path) -> Optional[ModelChoice]:
    folder = config_file.parent
    checkpoint = _run_checkpoint(folder)
    if checkpoint is None:
        return None
    try:
        values = read_yaml_file(config_file) or {}
    except HardnetError:
        values = {}
    task = values.get('task') if isinstance(values, dict) else None
    model = (values.get('model') or {}).get('name') if isinstance(values, dict) else None
    if task not in TASKS:  # not a run's resolved config: loading the checkpoint will say what it is
        return None
    int8 = sorted(folder.rglob('*.int8.onnx'))
    name = folder.relative_to(root) if folder != root else Path(folder.name)
    return ModelChoice(f'{name} · {model} (run, {checkpoint.name})', task, 'run', str(model), checkpoint,
                       int8=int8[0] if int8 else None)


def find_runs(root: Path) -> List[ModelChoice]:
    """The runs of tools/train.py under ``root`` (folders with ``config.yaml`` and ``best.pth`` or ``last.pth``),
    sorted by their path."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = (_run_choice(config, root) for config in sorted(root.rglob('config.yaml')))
    return [choice for choice in found if choice is not None]


def _cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints'


def _cached(url: str) -> Optional[Path]:
    path = _cache_dir() / os.path.basename(urlparse(url).path)
    return path if path.is_file() else None


def cached_published() -> List[ModelChoice]:
    """The published weights already in the download cache (``$TORCH_HOME/hub/checkpoints``): the ImageNet
    classifiers and the COCO detectors. Nothing is downloaded."""
    import timm

    choices = []
    for name in PUBLISHED_CLASSIFIERS:
        url = timm.models.get_pretrained_cfg(name).url
        path = _cached(url) if url else None
        if path is not None:
            choices.append(ModelChoice(f'{name} · ImageNet-1k (published)', 'classification', 'published', name, path))
    for name, enum in PUBLISHED_DETECTORS:
        for weights in enum:
            path = _cached(weights.url)
            if path is not None:
                choices.append(ModelChoice(f'{name} · {weights.name} (published)', 'detection', 'published', name,
                                           path, weights=weights.name))
    return choices


def weights_choice(spec: str) -> ModelChoice:
    """``MODEL=FILE`` (``--weights``): a weights file for a model name, e.g. ``hardnet68=hardnet68.pth`` (a published
    classifier file) or ``centernet_hardnet85=centernet_hardnet85_coco.pth`` (a published detector file).

    Raises:
        ConfigError: not MODEL=FILE, an unknown model, a missing file, or a model the app cannot run from weights.
    """
    model, sep, file = spec.partition('=')
    if not sep or not model or not file:
        raise ConfigError(f'--weights {spec!r}: expected MODEL=FILE, e.g. hardnet68=hardnet68.pth')
    try:
        entry = get_model_entry(model)
    except ValueError as e:
        raise ConfigError(f'--weights {spec!r}: {e}') from None
    if not Path(file).is_file():
        raise ConfigError(f'--weights {spec!r}: no such file {file}')
    published = {name for name, _ in PUBLISHED_DETECTORS}
    if entry.task == 'segmentation' or (entry.task == 'detection' and model not in published):
        raise ConfigError(f'--weights {spec!r}: a file alone gives no class names for {model}; train a run and pass '
                          f'--runs, or give a published detector ({", ".join(sorted(published))}) or a classifier')
    return ModelChoice(f'{model} · {Path(file).name} (file)', entry.task, 'file', model, Path(file))


def build_catalog(runs: Optional[Path], weights: Sequence[str] = (), published: bool = True
                  ) -> Dict[str, List[ModelChoice]]:
    """Every model the app offers, by task (``weights``: ``MODEL=FILE`` specs, checked first)."""
    choices = [weights_choice(spec) for spec in weights]
    choices += find_runs(runs) if runs is not None else []
    choices += cached_published() if published else []
    catalog: Dict[str, List[ModelChoice]] = {task: [] for task in TASKS}
    seen: Dict[str, int] = {}
    for choice in choices:
        count = seen[choice.label] = seen.get(choice.label, 0) + 1
        if count > 1:  # two files of the same name
            choice = replace(choice, label=f'{choice.label} [{count}]')
        catalog[choice.task].append(choice)
    return catalog
