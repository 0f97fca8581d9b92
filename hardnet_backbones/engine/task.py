"""The interface between the training engine and one kind of model, and the registry of tasks.

The engine knows tasks only through this interface; ``hardnet_backbones.tasks`` registers the
built-in ``detection`` and ``segmentation`` tasks (imported on first use, so no caller has to).
"""
import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from ..utils.distributed import DistInfo
from .config import Config

__all__ = ['Task', 'register_task', 'create_task']


class Task:
    """What the engine needs to know about one kind of model.

    Subclasses build datasets and the model, turn a batch into a loss, evaluate, and draw results.
    """
    main_metric: str = ''

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def check_config(self) -> None:
        """Check the task's part of the config (model name, ``model.kwargs``) before any work; raise ConfigError."""

    def build_dataset(self, split: str, train: bool) -> Dataset:
        """One split; the training one augments (``EpochIndex`` keys seed it) and has a ``seed`` attribute."""
        raise NotImplementedError

    def build_datasets(self) -> Tuple[Dataset, Dataset]:
        """(train, val) as the config names them."""
        data = self.cfg.data
        return self.build_dataset(data.train_split, train=True), self.build_dataset(data.val_split, train=False)

    def num_classes(self, dataset: Dataset) -> int:
        """The model's class count for ``dataset`` (``model.num_classes`` wins when set)."""
        raise NotImplementedError

    def build_model(self, num_classes: int, state_dict: Optional[Dict[str, torch.Tensor]] = None) -> torch.nn.Module:
        """The model of ``cfg.model``; with ``state_dict`` its weights are loaded and no backbone is downloaded."""
        raise NotImplementedError

    def collate(self, batch: List[Any]) -> Any:
        raise NotImplementedError

    def loss(
            self, model: torch.nn.Module, batch: Any, device: torch.device,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Total loss to minimise and its named parts (for logging)."""
        raise NotImplementedError

    def val_batch_size(self, requested: Optional[int] = None) -> int:
        """Validation batch size (per process): ``requested`` (``evaluate --batch-size``) or ``train.batch_size``,
        unless the task's metrics would then depend on it (a task says so, and evaluates exactly)."""
        return requested or self.cfg.train.batch_size

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def evaluate(
            self, model: torch.nn.Module, val_set: Dataset, loader: DataLoader, dist_info: DistInfo,
            predictions_dir: Optional[Union[str, Path]] = None,
    ) -> Dict[str, Any]:
        """Metrics of ``model`` on ``val_set``; with ``predictions_dir`` the predictions are saved there too."""
        raise NotImplementedError

    def draw(self, model: torch.nn.Module, val_set: Dataset, index: int, device: torch.device) -> Tuple[Any, str]:
        """The prediction for validation item ``index`` as a PIL image, and its file name."""
        raise NotImplementedError

    @torch.inference_mode()
    def save_visuals(self, model: torch.nn.Module, val_set: Dataset, out_dir, count: int) -> List[str]:
        """Draw ``count`` validation predictions as PNG files; returns their paths."""
        from ..utils.device import model_device
        from ..utils.files import write_atomic

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        device = model_device(model)
        model.eval()
        paths = []
        for index in range(min(count, len(val_set))):
            picture, name = self.draw(model, val_set, index, device)
            write_atomic(out_dir / name, lambda f: picture.save(f, format='PNG'))
            paths.append(str(out_dir / name))
        return paths


_TASKS: Dict[str, Callable[[Config], Task]] = {}
_BUILT_IN_TASKS = 'hardnet_backbones.tasks'


def register_task(name: str, factory: Callable[[Config], Task]) -> None:
    """Make ``task: <name>`` in configs create ``factory(cfg)``."""
    _TASKS[name] = factory


def create_task(cfg: Config) -> Task:
    """The task of ``cfg.task``."""
    if cfg.task not in _TASKS:
        importlib.import_module(_BUILT_IN_TASKS)  # registers the built-in tasks
    if cfg.task not in _TASKS:
        raise ConfigError(f'task: {cfg.task!r} is not a registered task ({", ".join(sorted(_TASKS))})')
    return _TASKS[cfg.task](cfg)
