"""The one training loop, shared by detection and segmentation (the task comes from the config).

Per run, under ``cfg.output_dir`` (written by the main process only):
``config.yaml`` (resolved), ``train.log``, ``metrics.jsonl`` (one line per epoch),
``history.png`` (loss and metric curves), ``last.pth`` / ``best.pth`` (resumable),
``results.json`` (final metrics) and ``visuals/`` (predictions drawn on validation images).

Every file is written atomically, in an order that survives a kill at any moment: at the end of an
epoch ``best.pth`` (when the metric improved) before ``last.pth``, then ``metrics.jsonl`` and
``history.png`` rewritten from the history stored in ``last.pth``. ``last.pth`` is the truth: a
resumed run restarts from it, rewrites the other files from it, and repeats the epoch whose files
were cut short, bit for bit.
"""
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

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
from ..distributed import DistInfo, ShardSampler, all_reduce_sum, barrier, cleanup_distributed, init_distributed
from ..errors import CheckpointError, ConfigError, HardnetError, user_message
from ..hub import load_checkpoint_file
from ..visualize import plot_history
from .checkpoint import (
    capture_rng_state, load_training_checkpoint, model_weights, remove_partial_files, restore_rng_state,
    save_atomic, write_atomic, write_text_atomic)
from .config import (
    Config, check_resume_changes, config_from_dict, config_to_dict, config_to_yaml, load_config, validate_config)
from .task import Task, create_task

__all__ = ['train', 'evaluate', 'build_lr_lambda', 'RUN_FILES']

# what a run writes into output_dir (--overwrite removes exactly these)
RUN_FILES = ('config.yaml', 'train.log', 'metrics.jsonl', 'history.png', 'last.pth', 'best.pth', 'results.json',
             'visuals')

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
    logging.getLogger('hardnet').setLevel(logging.INFO)  # train.log is complete whatever the root level is
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
    # worker seeds come from these generators, not the global RNG: a resumed run draws the same numbers
    train_loader = DataLoader(
        train_set, batch_size=t.batch_size, sampler=sampler, num_workers=d.num_workers,
        collate_fn=task.collate, drop_last=drop_last, pin_memory=dist_info.device.type == 'cuda',
        persistent_workers=d.num_workers > 0, generator=torch.Generator().manual_seed(t.seed))
    val_loader = _val_loader(cfg, task, val_set, dist_info)
    return train_loader, val_loader


def _val_loader(cfg: Config, task: Task, val_set, dist_info: DistInfo) -> DataLoader:
    return DataLoader(
        val_set, batch_size=task.val_batch_size(), num_workers=cfg.data.num_workers, collate_fn=task.collate,
        sampler=ShardSampler(len(val_set), dist_info.rank, dist_info.world_size),
        generator=torch.Generator().manual_seed(cfg.train.seed))


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
            save_atomic(state, self.out_dir / 'best.pth')
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


def _format(record: Dict[str, Any]) -> str:
    return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in record.items())


def _has_run(out_dir: Path) -> bool:
    return any((out_dir / name).exists() for name in ('last.pth', 'best.pth', 'metrics.jsonl', 'results.json'))


def _clear_run(out_dir: Path) -> None:
    """Remove the run files of :data:`RUN_FILES` (partial ``.tmp`` files go with every start)."""
    for name in RUN_FILES:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _resume_checkpoint(
        cfg: Config, resume: Union[None, bool, str, Path], overwrite: bool,
) -> Tuple[Optional[Path], Optional[Dict[str, Any]]]:
    """The checkpoint to continue from (None: a fresh run), after checking the output folder."""
    out_dir = Path(cfg.output_dir)
    if resume not in (None, False) and overwrite:
        raise ConfigError('--resume and --overwrite contradict each other; choose one')
    if resume in (None, False):
        if _has_run(out_dir) and not overwrite:
            raise ConfigError(f'output_dir {out_dir} already holds a run; continue it with --resume, replace it with '
                              f'--overwrite, or choose another output_dir')
        return None, None
    path = out_dir / 'last.pth' if resume is True else Path(resume)
    if not path.is_file():
        if resume is True:
            _logger.info('No checkpoint at %s: starting from scratch', path)
            return None, None
        raise FileNotFoundError(f'--resume: checkpoint not found: {path}')
    return path, load_training_checkpoint(path)


def _log_to_file(handler: Optional[logging.Handler], out_dir: Path, error: BaseException) -> None:
    """Append a failure to the run's ``train.log`` (that of an existing run too) without echoing it to the console:
    the tools print it themselves."""
    own = handler is None and out_dir.is_dir()
    if own:
        handler = logging.FileHandler(out_dir / 'train.log')
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    if handler is not None:
        handler.handle(_logger.makeRecord(_logger.name, logging.ERROR, __file__, 0, '%s', (user_message(error),), None))
    if own:
        handler.close()


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
    try:
        validate_config(cfg)
        task = create_task(cfg)
        task.check_config()
        dist_info = init_distributed(cfg.train.device)
        resume_path, checkpoint = _resume_checkpoint(cfg, resume, overwrite)
        changes = {}
        if checkpoint is not None:
            changes = check_resume_changes(checkpoint['config'], cfg, checkpoint['epoch'])
        barrier()
        if dist_info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            if overwrite:
                _clear_run(out_dir)
            remove_partial_files(out_dir)
        barrier()
        log_file = _setup_logging(out_dir if dist_info.is_main else None)
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
        metrics = run.fit()
        if dist_info.is_main:
            run.write_results()
        barrier()
        return metrics
    except (HardnetError, FileNotFoundError) as e:
        if dist_info.is_main:
            _log_to_file(log_file, out_dir, e)
        raise
    finally:
        if log_file is not None:
            logging.getLogger('hardnet').removeHandler(log_file)
            log_file.close()
        cleanup_distributed()


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
             onnx: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
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

    Only that split is read, and no backbone weights are downloaded (the checkpoint's replace them).
    """
    checkpoint = Path(checkpoint)
    state = load_checkpoint_file(checkpoint)
    cfg = _checkpoint_config(checkpoint, state, cfg, overrides)
    validate_config(cfg)
    task = create_task(cfg)
    task.check_config()
    dist_info = init_distributed(cfg.train.device)
    try:
        _setup_logging(None)
        val_set = task.build_dataset(split or cfg.data.val_split, train=False)
        class_names = list(state.get('class_names') or [])
        if class_names and class_names != list(val_set.class_names):
            raise CheckpointError(f'{checkpoint} was trained on the classes {class_names}, but the data has '
                                  f'{list(val_set.class_names)}')
        if onnx is None:
            model = task.build_model(task.num_classes(val_set), model_weights(state)).to(dist_info.device)
        else:
            from ..deploy import OnnxRuntimeModel
            model = OnnxRuntimeModel(onnx, cfg.task)
        metrics = task.evaluate(model, val_set, _val_loader(cfg, task, val_set, dist_info), dist_info,
                                predictions_dir)
        if dist_info.is_main:
            if output is not None:
                Path(output).parent.mkdir(parents=True, exist_ok=True)
                evaluated = dict(checkpoint=str(checkpoint), **({'onnx': str(onnx)} if onnx else {}))
                write_text_atomic(output, json.dumps(dict(evaluated, metrics=metrics), indent=2))
            if visuals_dir is not None:
                task.save_visuals(model, val_set, visuals_dir, cfg.train.save_images)
        return metrics
    finally:
        cleanup_distributed()
