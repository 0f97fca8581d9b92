"""Task adapters: what the shared training engine needs to know about detection or segmentation."""
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset

from ..engine.config import Config, DataConfig
from ..engine.distributed import DistInfo

__all__ = ['Task', 'create_task', 'load_trained_model', 'data_roots']


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

    def loss(
            self, model: torch.nn.Module, batch: Any, device: torch.device,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Total loss to minimise and its named parts (for logging)."""
        raise NotImplementedError

    def val_batch_size(self) -> int:
        """Validation batch size (per process)."""
        return self.cfg.train.batch_size

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def evaluate(
            self, model: torch.nn.Module, val_set: Dataset, loader: DataLoader, dist_info: DistInfo,
    ) -> Dict[str, Any]:
        raise NotImplementedError

    def draw(self, model: torch.nn.Module, val_set: Dataset, index: int, device: torch.device) -> Tuple[Any, str]:
        """The prediction for validation item ``index`` as a PIL image, and its file name."""
        raise NotImplementedError

    @torch.inference_mode()
    def save_visuals(self, model: torch.nn.Module, val_set: Dataset, out_dir, count: int) -> List[str]:
        """Draw ``count`` validation predictions as PNG files; returns their paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        device = next(model.parameters()).device
        model.eval()
        paths = []
        for index in range(min(count, len(val_set))):
            picture, name = self.draw(model, val_set, index, device)
            picture.save(out_dir / name)
            paths.append(str(out_dir / name))
        return paths


def load_trained_model(
        checkpoint: Union[str, Path],
        device: Union[str, torch.device] = 'cpu',
) -> Tuple[torch.nn.Module, Config, List[str]]:
    """Rebuild a model trained by ``tools/train.py`` from its checkpoint alone (eval mode).

    Returns the model (EMA weights when the run kept them), the run's config and its class names
    (detection: without the background; segmentation: every class).
    """
    from ..detection import create_detection_model
    from ..engine.checkpoint import load_training_checkpoint, model_weights
    from ..engine.config import config_from_dict
    from ..segmentation import create_segmentation_model

    state = load_training_checkpoint(checkpoint)
    cfg = config_from_dict(state['config'])
    class_names = list(state.get('class_names') or [])
    if not class_names:
        raise RuntimeError(f'{checkpoint} has no class names; it was not written by tools/train.py')
    m = cfg.model
    if cfg.task == 'detection':
        model = create_detection_model(m.name, num_classes=len(class_names) + 1, **m.kwargs)
    else:
        extra = {} if m.aux_loss is None else {'aux_loss': m.aux_loss}
        model = create_segmentation_model(m.name, num_classes=len(class_names), **extra, **m.kwargs)
    model.load_state_dict(model_weights(state))
    return model.to(device).eval(), cfg, class_names


def data_roots(data: DataConfig, train: bool) -> List[Path]:
    """The dataset folder(s) of the training split, or of the validation split (``data.val_root`` when set)."""
    if not train and data.val_root is not None:
        return [Path(data.val_root)]
    return [Path(r) for r in ([data.root] if isinstance(data.root, str) else data.root)]


def create_task(cfg: Config) -> Task:
    if cfg.task == 'detection':
        from .detection import DetectionTask
        return DetectionTask(cfg)
    from .segmentation import SegmentationTask
    return SegmentationTask(cfg)
