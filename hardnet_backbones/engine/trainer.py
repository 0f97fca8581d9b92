"""The one training loop, shared by detection and segmentation (the task comes from the config).

What a run writes is listed in :mod:`.run_folder`. Every file is written atomically, in an order that
survives a kill at any moment: at the end of an epoch ``best.pth`` (when the metric improved) before
``last.pth``, then ``metrics.jsonl`` and ``history.png`` rewritten from the history stored in
``last.pth``. ``last.pth`` is the truth: a resumed run restarts from it, rewrites the other files
from it, and repeats the epoch whose files were cut short, bit for bit.
"""
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR

from ..errors import CheckpointError, HardnetError, RunInUseError
from ..utils.distributed import (
    DistInfo, all_gather_objects, all_reduce_sum, barrier, cleanup_distributed, init_distributed)
from ..utils.files import remove_partial_files, save_atomic, write_atomic, write_text_atomic
from ..utils.progress import progress_bar
from ..visualization.plots import plot_history
from .checkpoint import capture_rng_state, restore_rng_state
from .config import Config, config_to_dict, config_to_yaml, validate_config
from .evaluate import evaluate
from .loaders import train_and_val_loaders
from .resume import check_resume_changes
from .run_folder import RUN_FILES, RunLock, clear_run, close_logging, log_failure, resume_checkpoint, setup_logging
from .schedule import build_lr_lambda
from .task import Task, create_task

__all__ = ['train', 'evaluate', 'build_lr_lambda', 'RUN_FILES']

_logger = logging.getLogger('hardnet.train')


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class _Run:
    """State of one training run; ``fit`` is the loop."""

    def __init__(self, cfg: Config, task: Task, dist_info: DistInfo):
        self.cfg = cfg
        self.dist = dist_info
        self.out_dir = Path(cfg.output_dir)
        self.task = task
        _seed_everything(cfg.train.seed + dist_info.rank)
        self.train_set, self.val_set = self.task.build_datasets()
        self.train_set.seed = cfg.train.seed
        self.model = self.task.build_model(self.task.num_classes(self.train_set)).to(dist_info.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_loader, self.val_loader = train_and_val_loaders(
            cfg, self.task, self.train_set, self.val_set, dist_info)
        self.ddp_model: nn.Module = self.model
        if dist_info.world_size > 1:
            device_ids = [dist_info.local_rank] if dist_info.device.type == 'cuda' else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)
        t = cfg.train
        self.optimizer = create_optimizer_v2(
            self.model, opt=t.optimizer, lr=t.lr, weight_decay=t.weight_decay,
            **({'momentum': t.momentum} if t.optimizer == 'sgd' else {}),
            **({'layer_decay': t.layer_decay} if t.layer_decay is not None else {}))
        self.scheduler = LambdaLR(self.optimizer, build_lr_lambda(cfg, len(self.train_loader)))
        # float16 autocast on CUDA (with a GradScaler); bfloat16 on CUDA or, where the CPU has it, on the CPU
        on_cuda = dist_info.device.type == 'cuda'
        self.amp_dtype = torch.bfloat16 if t.amp_dtype == 'bfloat16' else torch.float16
        self.use_amp = t.amp and (on_cuda or t.amp_dtype == 'bfloat16')
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.use_amp and on_cuda and t.amp_dtype == 'float16')
        self.ema = ModelEmaV3(self.model, decay=t.ema_decay) if t.ema else None
        self.start_epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.best: Optional[float] = None
        self.last_metrics: Dict[str, Any] = {}
        self.config_changes: List[Dict[str, Any]] = []

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self, epoch: int) -> Dict[str, Any]:
        return dict(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
            model_ema=self.ema.module.state_dict() if self.ema is not None else None,
            epoch=epoch, history=self.history, best=self.best, last_metrics=self.last_metrics,
            rng=capture_rng_state(), config=config_to_dict(self.cfg), config_changes=self.config_changes,
            class_names=list(self.train_set.class_names),
            category_ids=dict(getattr(self.train_set, 'label_to_cat_id', {})))

    def load_state(self, checkpoint: Dict[str, Any], path: Path) -> None:
        """Continue from a checkpoint of this run (already checked against the config)."""
        if checkpoint.get('optimizer') is None:
            raise CheckpointError(f'{path} holds the weights only (train.best_weights_only), not the optimizer state '
                                  f'a run continues from: resume from last.pth')
        try:
            self.model.load_state_dict(checkpoint['model'])
            self.optimizer.load_state_dict(checkpoint['optimizer'])
            self.scheduler.load_state_dict(checkpoint['scheduler'])
            self.scaler.load_state_dict(checkpoint['scaler'])
            if self.ema is not None and checkpoint.get('model_ema') is not None:
                self.ema.module.load_state_dict(checkpoint['model_ema'])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f'{path} does not fit this run\'s model or optimizer: '
                                  f'{str(e).strip().splitlines()[0]}') from e
        self.start_epoch = checkpoint['epoch']
        self.history = list(checkpoint.get('history') or [])
        self.best = checkpoint.get('best')
        self.last_metrics = dict(checkpoint.get('last_metrics') or {})
        self.config_changes = list(checkpoint.get('config_changes') or [])
        restore_rng_state(checkpoint['rng'])
        _logger.info('Resumed from %s at epoch %d', path, self.start_epoch)

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        t = self.cfg.train
        self.train_loader.sampler.set_epoch(epoch)
        self.ddp_model.train()
        sums: Dict[str, float] = {}
        images = 0
        start = last_line = time.time()
        bar = progress_bar(self.train_loader, desc=f'epoch {epoch + 1}/{t.epochs}', disable=not self.dist.is_main)
        for step, batch in enumerate(bar):
            with torch.autocast(self.dist.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
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
            # torchvision's detectors name their parts loss_*, SSD and the segmenters do not: one loss_ prefix
            named = ((k if k.startswith('loss_') else f'loss_{k}', v) for k, v in parts.items())
            for key, value in [('loss', loss), *named]:
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
            bar.set_postfix(loss=f'{sums["loss"] / images:.4f}', lr=f'{self.optimizer.param_groups[0]["lr"]:.2e}')
            now = time.time()
            due = ((t.log_every and (step + 1) % t.log_every == 0)
                   or (t.log_seconds and now - last_line >= t.log_seconds))
            if self.dist.is_main and due and step + 1 < len(self.train_loader):
                last_line = now
                _logger.info('%s', _progress_line(epoch, t.epochs, step + 1, len(self.train_loader),
                                                  sums['loss'] / images, images * self.dist.world_size, now - start))
        totals = all_reduce_sum(torch.tensor([images] + list(sums.values()), dtype=torch.float64)).tolist()
        stats = {k: v / max(totals[0], 1) for k, v in zip(sums, totals[1:])}
        seconds = time.time() - start
        stats.update(lr=self.optimizer.param_groups[0]['lr'], epoch_seconds=seconds,
                     images_per_second=totals[0] / max(seconds, 1e-9))
        return stats

    def write_epoch(self, epoch: int, record: Dict[str, Any]) -> None:
        metric = record.get(self.task.main_metric)
        is_best = metric is not None and (self.best is None or metric > self.best)
        if is_best:
            self.best = metric
        self.history.append(record)
        if not self.dist.is_main:
            return
        state = self.state_dict(epoch + 1)
        if is_best:  # before last.pth: a kill in between repeats this epoch, which rewrites best.pth
            save_atomic(_weights_only(state) if self.cfg.train.best_weights_only else state, self.out_dir / 'best.pth')
        save_atomic(state, self.out_dir / 'last.pth')
        self.write_history_files()

    def write_history_files(self) -> None:
        """``metrics.jsonl`` and ``history.png`` from the history (each epoch once, whatever was cut short)."""
        write_text_atomic(self.out_dir / 'metrics.jsonl', ''.join(json.dumps(r) + '\n' for r in self.history))
        if self.history:
            write_atomic(self.out_dir / 'history.png',
                         lambda f: plot_history(self.history, f, self.task.main_metric))

    def fit(self) -> Dict[str, Any]:
        t = self.cfg.train
        for epoch in range(self.start_epoch, t.epochs):
            record: Dict[str, Any] = dict(epoch=epoch + 1, **self.train_one_epoch(epoch))
            if (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
                self.last_metrics = self.task.evaluate(self.eval_model, self.val_set, self.val_loader, self.dist)
                record.update(self.last_metrics)
            _logger.info('epoch %d: %s', epoch + 1, _format(record))
            self.write_epoch(epoch, record)
        return self.last_metrics

    def write_results(self) -> None:
        visuals = self.task.save_visuals(self.eval_model, self.val_set, self.out_dir / 'visuals',
                                         self.cfg.train.save_images)
        results = dict(metrics=self.last_metrics, epochs=self.cfg.train.epochs, best=self.best,
                       main_metric=self.task.main_metric, visuals=visuals,
                       train_seconds=sum(h.get('epoch_seconds', 0) for h in self.history))
        write_text_atomic(self.out_dir / 'results.json', json.dumps(results, indent=2))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


def _progress_line(epoch: int, epochs: int, step: int, steps: int, loss: float, images: int, elapsed: float) -> str:
    """``epoch 3/12 step 40/120 loss 0.4123 7.9 img/s, epoch ETA 2m10s``: the line a long epoch logs."""
    eta = elapsed / step * (steps - step)
    return (f'epoch {epoch + 1}/{epochs} step {step}/{steps} loss {loss:.4f} {images / max(elapsed, 1e-9):.3g} img/s, '
            f'epoch ETA {_duration(eta)}')


def _format(record: Dict[str, Any]) -> str:
    return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in record.items())


_RESUME_ONLY = ('optimizer', 'scheduler', 'scaler', 'rng')


def _weights_only(state: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint for inference and evaluation: the training state's entries a resume needs, emptied."""
    return {k: None if k in _RESUME_ONLY else v for k, v in state.items()}


def _warn_when_warmup_fills_the_run(cfg: Config) -> None:
    t = cfg.train
    if t.warmup_epochs and t.warmup_epochs >= t.epochs:
        _logger.warning('train.warmup_epochs=%g covers the whole run of %d epoch(s): the learning rate never reaches '
                        'train.lr=%g; set a shorter warm-up (e.g. --set train.warmup_epochs=0)',
                        t.warmup_epochs, t.epochs, t.lr)


def _remove_folder(out_dir: Path, log_file: Optional[logging.Handler]) -> None:
    close_logging(log_file)
    shutil.rmtree(out_dir, ignore_errors=True)


def train(cfg: Config, resume: Union[None, bool, str, Path] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Train (and evaluate) as ``cfg`` says; returns the last evaluation's metrics.

    Args:
        cfg: the run config; every value is checked before any work starts.
        resume: True for ``<output_dir>/last.pth`` when it exists, or a checkpoint path. The config may
            differ from the checkpoint's only in ``SAFE_ON_RESUME`` keys; such changes are logged and
            recorded in the checkpoint.
        overwrite: replace a run already in ``output_dir`` (without it, that is an error).

    Run under ``torchrun`` for DistributedDataParallel; single process otherwise.
    """
    out_dir = Path(cfg.output_dir)
    log_file = None
    dist_info = DistInfo()
    lock = RunLock(out_dir)
    created = not out_dir.exists()  # a refused run leaves no folder behind
    started = False
    try:
        validate_config(cfg)
        task = create_task(cfg)
        task.check_config()
        dist_info = init_distributed(cfg.train.device)
        problems = [p for p in all_gather_objects(lock.acquire() if dist_info.is_main else None) if p]
        if problems:  # every process stops, not only the one that checked
            raise RunInUseError(problems[0])
        resume_path, checkpoint = resume_checkpoint(cfg, resume, overwrite)
        changes = {}
        if checkpoint is not None:
            changes = check_resume_changes(checkpoint['config'], cfg, checkpoint['epoch'])
        barrier()
        if dist_info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            if overwrite:
                clear_run(out_dir)
            remove_partial_files(out_dir)
        barrier()
        log_file = setup_logging(out_dir if dist_info.is_main else None)
        run = _Run(cfg, task, dist_info)
        if checkpoint is not None:
            run.load_state(checkpoint, resume_path)
            if changes:
                _logger.info('Resumed with changed config: %s', '; '.join(
                    f'{k}: {old!r} -> {new!r}' for k, (old, new) in sorted(changes.items())))
                run.config_changes.append(dict(epoch=run.start_epoch, changes={k: list(v) for k, v in changes.items()}))
        if dist_info.is_main:  # the run has started: record its config, and repair files a kill cut short
            write_text_atomic(out_dir / 'config.yaml', config_to_yaml(cfg))
            run.write_history_files()
        _logger.info('Training %s (%s) on %s x%d: %d train / %d val images, %.2f M params',
                     cfg.model.name, cfg.task, dist_info.device, dist_info.world_size, len(run.train_set),
                     len(run.val_set), sum(p.numel() for p in run.model.parameters()) / 1e6)
        _warn_when_warmup_fills_the_run(cfg)
        started = True
        metrics = run.fit()
        if dist_info.is_main:
            run.write_results()
        barrier()
        return metrics
    except (HardnetError, FileNotFoundError) as e:
        if dist_info.is_main and not isinstance(e, RunInUseError):  # the running run's log is its own
            log_failure(log_file, out_dir, e)
        if dist_info.is_main and created and not started:
            _remove_folder(out_dir, log_file)
            log_file = None
        raise
    finally:
        close_logging(log_file)
        lock.release()
        cleanup_distributed()
