"""The one training loop, shared by detection and segmentation (the task comes from the config).

Per run, under ``cfg.output_dir`` (written by the main process only):
``config.yaml`` (resolved), ``train.log``, ``metrics.jsonl`` (one line per epoch),
``history.png`` (loss and metric curves), ``last.pth`` / ``best.pth`` (atomic, resumable),
``results.json`` (final metrics) and ``visuals/`` (predictions drawn on validation images).
"""
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..data.sampling import EpochSampler
from ..hub import load_checkpoint_file
from ..tasks import Task, create_task
from ..visualize import plot_history
from .checkpoint import (
    capture_rng_state, load_training_checkpoint, model_weights, restore_rng_state, save_atomic)
from .config import Config, config_to_dict, save_config
from .distributed import DistInfo, ShardSampler, all_reduce_sum, barrier, cleanup_distributed, init_distributed

__all__ = ['train', 'evaluate', 'build_lr_lambda']

_logger = logging.getLogger('hardnet.train')


def build_lr_lambda(cfg: Config, steps_per_epoch: int):
    """LR multiplier per iteration: linear warm-up, then cosine / poly decay / constant."""
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    warmup = int(t.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if t.scheduler == 'cosine':
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        elif t.scheduler == 'poly':
            decay = (1 - progress) ** t.poly_power
        else:
            decay = 1.0
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * decay

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


_LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'


def _setup_logging(out_dir: Optional[Path]) -> Optional[logging.Handler]:
    """Console logging, plus ``train.log`` in ``out_dir``; returns the file handler to remove after the run."""
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    if out_dir is None:
        return None
    handler = logging.FileHandler(out_dir / 'train.log')
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    logging.getLogger('hardnet').addHandler(handler)
    return handler


def _loaders(cfg: Config, task: Task, train_set, val_set, dist_info: DistInfo) -> Tuple[DataLoader, DataLoader]:
    t, d = cfg.train, cfg.data
    # the epoch travels with every index, so augmentation changes per epoch also in (persistent) workers
    sampler = EpochSampler(DistributedSampler(
        train_set, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=t.seed))
    # a last batch of one image breaks BatchNorm on 1x1 maps; drop it when there is more than one batch
    drop_last = len(sampler) > t.batch_size
    train_loader = DataLoader(
        train_set, batch_size=t.batch_size, sampler=sampler, num_workers=d.num_workers,
        collate_fn=task.collate, drop_last=drop_last, pin_memory=dist_info.device.type == 'cuda',
        persistent_workers=d.num_workers > 0)
    val_loader = DataLoader(
        val_set, batch_size=task.val_batch_size(), num_workers=d.num_workers, collate_fn=task.collate,
        sampler=ShardSampler(len(val_set), dist_info.rank, dist_info.world_size))
    return train_loader, val_loader


class _Run:
    """State of one training run; ``fit`` is the loop."""

    def __init__(self, cfg: Config, dist_info: DistInfo):
        self.cfg = cfg
        self.dist = dist_info
        self.out_dir = Path(cfg.output_dir)
        self.task = create_task(cfg)
        _seed_everything(cfg.train.seed + dist_info.rank)
        self.train_set, self.val_set = self.task.build_datasets()
        self.train_set.seed = cfg.train.seed
        self.model = self.task.build_model(self.train_set).to(dist_info.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_loader, self.val_loader = _loaders(cfg, self.task, self.train_set, self.val_set, dist_info)
        self.ddp_model: nn.Module = self.model
        if dist_info.world_size > 1:
            device_ids = [dist_info.local_rank] if dist_info.device.type == 'cuda' else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)
        t = cfg.train
        self.optimizer = create_optimizer_v2(
            self.model, opt=t.optimizer, lr=t.lr, weight_decay=t.weight_decay,
            **({'momentum': t.momentum} if t.optimizer == 'sgd' else {}))
        self.scheduler = LambdaLR(self.optimizer, build_lr_lambda(cfg, len(self.train_loader)))
        self.use_amp = t.amp and dist_info.device.type == 'cuda'
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.use_amp)
        self.ema = ModelEmaV3(self.model, decay=t.ema_decay) if t.ema else None
        self.start_epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.best: Optional[float] = None

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self, epoch: int) -> Dict[str, Any]:
        return dict(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
            model_ema=self.ema.module.state_dict() if self.ema is not None else None,
            epoch=epoch, history=self.history, best=self.best, rng=capture_rng_state(),
            config=config_to_dict(self.cfg), class_names=list(self.train_set.class_names))

    def resume(self, path: Union[str, Path]) -> None:
        checkpoint = load_training_checkpoint(path)
        self.model.load_state_dict(checkpoint['model'])
        self.optimizer.load_state_dict(checkpoint['optimizer'])
        self.scheduler.load_state_dict(checkpoint['scheduler'])
        self.scaler.load_state_dict(checkpoint['scaler'])
        if self.ema is not None and checkpoint.get('model_ema') is not None:
            self.ema.module.load_state_dict(checkpoint['model_ema'])
        self.start_epoch = checkpoint['epoch']
        self.history = list(checkpoint.get('history') or [])
        self.best = checkpoint.get('best')
        restore_rng_state(checkpoint['rng'])
        _logger.info('Resumed from %s at epoch %d', path, self.start_epoch)

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        t = self.cfg.train
        self.train_loader.sampler.set_epoch(epoch)
        self.ddp_model.train()
        sums: Dict[str, float] = {}
        images = 0
        start = time.time()
        bar = tqdm(self.train_loader, desc=f'epoch {epoch + 1}/{t.epochs}', disable=not self.dist.is_main)
        for step, batch in enumerate(bar):
            with torch.autocast(self.dist.device.type, dtype=torch.float16, enabled=self.use_amp):
                loss, parts = self.task.loss(self.ddp_model, batch, self.dist.device)
            if not torch.isfinite(loss):
                raise FloatingPointError(f'loss is {loss.item()} at epoch {epoch + 1}, step {step}: lower train.lr')
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if t.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            n = self.task.batch_size(batch)
            images += n
            for key, value in [('loss', loss), *((f'loss_{k}', v) for k, v in parts.items())]:
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
            bar.set_postfix(loss=f'{sums["loss"] / images:.4f}', lr=f'{self.optimizer.param_groups[0]["lr"]:.2e}')
            if self.dist.is_main and t.log_every and (step + 1) % t.log_every == 0:
                _logger.info('epoch %d step %d/%d loss %.4f', epoch + 1, step + 1, len(self.train_loader),
                             sums['loss'] / images)
        totals = all_reduce_sum(torch.tensor([images] + list(sums.values()), dtype=torch.float64))
        stats = {k: float(v / max(totals[0], 1)) for k, v in zip(sums, totals[1:])}
        seconds = time.time() - start
        stats.update(lr=self.optimizer.param_groups[0]['lr'], epoch_seconds=seconds,
                     images_per_second=float(totals[0]) / max(seconds, 1e-9))
        return stats

    def write_epoch(self, epoch: int, record: Dict[str, Any]) -> None:
        metric = record.get(self.task.main_metric)
        is_best = metric is not None and (self.best is None or metric > self.best)
        if is_best:
            self.best = metric
        self.history.append(record)
        if not self.dist.is_main:
            return
        with open(self.out_dir / 'metrics.jsonl', 'a') as f:
            f.write(json.dumps(record) + '\n')
        state = self.state_dict(epoch + 1)
        save_atomic(state, self.out_dir / 'last.pth')
        if is_best:
            save_atomic(state, self.out_dir / 'best.pth')
        plot_history(self.history, self.out_dir / 'history.png', self.task.main_metric)

    def fit(self) -> Dict[str, Any]:
        t = self.cfg.train
        metrics: Dict[str, Any] = {}
        for epoch in range(self.start_epoch, t.epochs):
            record: Dict[str, Any] = dict(epoch=epoch + 1, **self.train_one_epoch(epoch))
            if (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
                metrics = self.task.evaluate(self.eval_model, self.val_set, self.val_loader, self.dist)
                record.update(metrics)
            _logger.info('epoch %d: %s', epoch + 1, _format(record))
            self.write_epoch(epoch, record)
        if not metrics and self.history:  # resumed after the last epoch: report what was measured
            metrics = {k: v for k, v in self.history[-1].items() if k not in ('epoch',)}
        return metrics


def _format(record: Dict[str, Any]) -> str:
    return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in record.items())


def _resolve_resume(cfg: Config, resume: Union[None, bool, str, Path]) -> Optional[Path]:
    if resume in (None, False):
        return None
    path = Path(cfg.output_dir) / 'last.pth' if resume is True else Path(resume)
    if not path.is_file():
        if resume is True:
            _logger.info('No checkpoint at %s: starting from scratch', path)
            return None
        raise FileNotFoundError(f'--resume: checkpoint not found: {path}')
    return path


def train(cfg: Config, resume: Union[None, bool, str, Path] = None) -> Dict[str, Any]:
    """Train (and evaluate) as ``cfg`` says; returns the last evaluation's metrics.

    ``resume``: True for ``<output_dir>/last.pth`` when it exists, or a checkpoint path.
    Run under ``torchrun`` for DistributedDataParallel; single process otherwise.
    """
    dist_info = init_distributed(cfg.train.device)
    out_dir = Path(cfg.output_dir)
    log_file = None
    try:
        if dist_info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out_dir / 'config.yaml')
        barrier()
        log_file = _setup_logging(out_dir if dist_info.is_main else None)
        run = _Run(cfg, dist_info)
        resume_path = _resolve_resume(cfg, resume)
        if resume_path is not None:
            run.resume(resume_path)
        _logger.info('Training %s (%s) on %s x%d: %d train / %d val images, %.2f M params',
                     cfg.model.name, cfg.task, dist_info.device, dist_info.world_size, len(run.train_set),
                     len(run.val_set), sum(p.numel() for p in run.model.parameters()) / 1e6)
        metrics = run.fit()
        if dist_info.is_main:
            visuals = run.task.save_visuals(run.eval_model, run.val_set, out_dir / 'visuals', cfg.train.save_images)
            results = dict(metrics=metrics, epochs=cfg.train.epochs, best=run.best,
                           main_metric=run.task.main_metric, visuals=visuals,
                           train_seconds=sum(h.get('epoch_seconds', 0) for h in run.history))
            (out_dir / 'results.json').write_text(json.dumps(results, indent=2))
        barrier()
        return metrics
    finally:
        if log_file is not None:
            logging.getLogger('hardnet').removeHandler(log_file)
            log_file.close()
        cleanup_distributed()


def evaluate(cfg: Config, checkpoint: Union[str, Path], output: Optional[Union[str, Path]] = None,
             visuals_dir: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """Evaluate a checkpoint (ours: training or bare state dict) on the config's validation split.

    Writes the metrics as JSON to ``output`` and draws ``train.save_images`` predictions into ``visuals_dir``.
    """
    dist_info = init_distributed(cfg.train.device)
    try:
        _setup_logging(None)
        task = create_task(cfg)
        train_set, val_set = task.build_datasets()
        model = task.build_model(train_set).to(dist_info.device)
        model.load_state_dict(model_weights(load_checkpoint_file(checkpoint), prefer_ema=cfg.train.ema))
        _, val_loader = _loaders(cfg, task, train_set, val_set, dist_info)
        metrics = task.evaluate(model, val_set, val_loader, dist_info)
        if dist_info.is_main:
            if output is not None:
                Path(output).parent.mkdir(parents=True, exist_ok=True)
                Path(output).write_text(json.dumps(dict(checkpoint=str(checkpoint), metrics=metrics), indent=2))
            if visuals_dir is not None:
                task.save_visuals(model, val_set, visuals_dir, cfg.train.save_images)
        return metrics
    finally:
        cleanup_distributed()
