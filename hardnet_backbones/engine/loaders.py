"""Data loaders of a run: epoch-aware shuffling for training, sharded validation, reproducible worker seeds."""
from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..data.sampling import EpochSampler
from ..utils.distributed import DistInfo, ShardSampler
from .config import Config
from .task import Task

__all__ = ['train_and_val_loaders', 'val_loader']


def train_and_val_loaders(
        cfg: Config, task: Task, train_set, val_set, dist_info: DistInfo) -> Tuple[DataLoader, DataLoader]:
    t, d = cfg.train, cfg.data
    # the epoch travels with every index, so augmentation changes per epoch also in (persistent) workers
    sampler = EpochSampler(DistributedSampler(
        train_set, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=t.seed))
    # a last batch of one image breaks BatchNorm on 1x1 maps; drop it when there is more than one batch
    drop_last = len(sampler) > t.batch_size
    # worker seeds come from these generators, not the global RNG: a resumed run draws the same numbers
    train_loader = DataLoader(
        train_set, batch_size=t.batch_size, sampler=sampler, num_workers=d.num_workers,
        collate_fn=task.collate, drop_last=drop_last, pin_memory=dist_info.device.type == 'cuda',
        persistent_workers=d.num_workers > 0, generator=torch.Generator().manual_seed(t.seed))
    validation = val_loader(cfg, task, val_set, dist_info)
    return train_loader, validation


def val_loader(cfg: Config, task: Task, val_set, dist_info: DistInfo, batch_size: Optional[int] = None) -> DataLoader:
    """The validation loader, in batches of ``task.val_batch_size(batch_size)``."""
    return DataLoader(
        val_set, batch_size=task.val_batch_size(batch_size), num_workers=cfg.data.num_workers, collate_fn=task.collate,
        sampler=ShardSampler(len(val_set), dist_info.rank, dist_info.world_size),
        generator=torch.Generator().manual_seed(cfg.train.seed))
