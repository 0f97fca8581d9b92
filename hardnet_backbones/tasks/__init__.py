"""Task adapters: what the shared training engine needs to know about detection or segmentation."""
from typing import Any, Dict, List, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from ..engine.config import Config
from ..engine.distributed import DistInfo

__all__ = ['Task', 'create_task']


class Task:
    """Interface between the engine and one kind of model.

    Subclasses build datasets and the model, turn a batch into a loss, evaluate, and draw results.
    """
    main_metric: str = ''

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def build_datasets(self) -> Tuple[Dataset, Dataset]:
        """(train, val); the train set has ``set_epoch(epoch)`` and a ``seed`` attribute."""
        raise NotImplementedError

    def build_model(self, train_set: Dataset) -> torch.nn.Module:
        raise NotImplementedError

    def collate(self, batch: List[Any]) -> Any:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Total loss to minimise and its named parts (for logging)."""
        raise NotImplementedError

    def val_batch_size(self) -> int:
        """Validation batch size (per process)."""
        return self.cfg.train.batch_size

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def evaluate(self, model: torch.nn.Module, val_set: Dataset, loader: DataLoader, dist_info: DistInfo) -> Dict[str, Any]:
        raise NotImplementedError

    def save_visuals(self, model: torch.nn.Module, val_set: Dataset, out_dir, count: int) -> List[str]:
        """Draw ``count`` validation predictions as PNG files; returns their paths."""
        raise NotImplementedError


def create_task(cfg: Config) -> Task:
    if cfg.task == 'detection':
        from .detection import DetectionTask
        return DetectionTask(cfg)
    from .segmentation import SegmentationTask
    return SegmentationTask(cfg)
