"""Run configuration: YAML files that may inherit a base, ``--set key=value`` overrides, typed dataclasses.

A config file may name one base config or a list of them (``base: ../_base_/ssdlite_scratch.yaml``,
relative to the file); its own keys override the bases' key by key, sections merged, lists replaced.
Unknown keys, wrong types and bad choices raise ``ConfigError`` naming the key and what is valid.
The resolved (merged) configuration is saved next to each run's outputs (``config.yaml``).
"""
import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from ..errors import ConfigError
from ..models.layers import MIN_INPUT_SIZE
from ..utils.cpu import cpu_supports_bfloat16
from .coerce import build_dataclass
from .yaml_io import parse_yaml, read_yaml_file

__all__ = ['ConfigError', 'Config', 'ModelConfig', 'DataConfig', 'TrainConfig', 'LossConfig', 'BASE_KEY',
           'load_config', 'read_config_file', 'config_from_dict', 'config_to_dict', 'config_to_yaml', 'validate_config',
           'flatten_config', 'list_keys']

BASE_KEY = 'base'  # a config file's key naming the config(s) it inherits
MAX_BASE_DEPTH = 16  # bases of bases; the shipped configs use 2


@dataclass
class ModelConfig:
    name: str = 'ssdlite320_hardnet39ds'  # a model of the registry (hardnet_backbones.models)
    num_classes: Optional[int] = None  # default: from the dataset (detection counts the background)
    weights_backbone: Optional[str] = None  # null, DEFAULT (published ImageNet weights) or a file path
    trainable_backbone_layers: Optional[int] = None
    aux_loss: Optional[bool] = None  # segmentation builders that have an auxiliary head
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra builder arguments (score_thresh, ...)


@dataclass
class DataConfig:
    format: str = 'coco'  # detection: coco | voc; segmentation: voc | cityscapes | folder | shapes;
    # classification: folder (root/<split>/<class>/<image>) | csv (path,label rows)
    root: Union[str, List[str]] = 'data/shapes'  # voc detection: a list of roots is joined (VOC2007 + VOC2012)
    val_root: Optional[str] = None  # root of the validation split when it differs (default: root)
    train_split: str = 'train'
    val_split: str = 'val'
    class_names: Optional[List[str]] = None  # voc detection and folder segmentation: the classes in label order
    mask_values: Optional[Dict[int, int]] = None  # segmentation: raw mask value -> class, e.g. {255: 1}
    nonzero_class: Optional[int] = None  # folder segmentation: every non-zero mask value becomes this class
    exif_orientation: bool = True  # apply the images' EXIF orientation (annotations made on upright images)
    cityscapes_labels: str = 'labelIds'  # cityscapes: labelIds (mapped to trainIds) | labelTrainIds (read as is)
    images_dir: str = 'images'  # coco: images are read from root/images_dir/<split>/<file_name>
    train_ann: Optional[str] = None  # coco: default annotations/<train_split>.json under root
    val_ann: Optional[str] = None
    train_csv: Optional[str] = None  # csv classification: the training list (relative to root; default <split>.csv)
    val_csv: Optional[str] = None
    num_workers: int = 2
    # detection augmentation: auto (centernet for the CenterNet models, ssd for the others) | ssd (photometric,
    # zoom-out, IoU crop, flip) | centernet (the published random scale, aspect and shift, flip, CornerNet's colour
    # jitter and lighting with probability photometric_p)
    augmentation: str = 'auto'
    photometric_p: float = 0.5
    zoom_out_max: float = 4.0
    zoom_out_p: float = 0.5
    iou_crop: bool = True
    hflip_p: float = 0.5
    # segmentation augmentation
    crop_size: Tuple[int, int] = (512, 512)
    scale_range: Tuple[float, float] = (0.5, 2.0)
    color_jitter_p: float = 0.5
    ignore_index: int = 255
    # classification: timm's transforms (random-resized crop, flip, RandAugment / AutoAugment, random erasing) and
    # timm's Mixup / CutMix
    input_size: Optional[int] = None  # crop side in pixels (default: the model's pretrained config, 224)
    auto_augment: Optional[str] = None  # timm's string, e.g. rand-m9-mstd0.5-inc1 or original
    reprob: float = 0.0  # random erasing probability
    mixup: float = 0.0  # mixup alpha (0: off)
    cutmix: float = 0.0  # cutmix alpha (0: off)


@dataclass
class LossConfig:
    name: str = 'cross_entropy'  # segmentation: cross_entropy | bootstrapped_cross_entropy; classification:
    # cross_entropy (soft targets under mixup / cutmix) | bce (timm's binary cross-entropy)
    smoothing: float = 0.0  # classification: label smoothing
    aux_weight: float = 0.5
    bootstrap_min_k: int = 4096
    bootstrap_threshold: float = 0.3


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8  # per process
    optimizer: str = 'sgd'  # sgd | adamw
    lr: float = 0.01  # for the whole (per-process batch x processes) batch
    momentum: float = 0.9
    weight_decay: float = 4e-5
    scheduler: str = 'cosine'  # cosine | poly | step | constant, applied per iteration after warm-up
    warmup_epochs: float = 0.0
    poly_power: float = 0.9
    milestones: List[int] = field(default_factory=list)  # step: epochs at which the LR is multiplied by gamma
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    clip_grad_norm: Optional[float] = None
    layer_decay: Optional[float] = None  # layer-wise LR decay through timm's optimizer factory (group_matcher)
    amp: bool = True  # mixed precision: float16 on CUDA; with amp_dtype bfloat16 also on CPUs that have it
    amp_dtype: str = 'float16'  # float16 (CUDA, with a GradScaler) | bfloat16 (CUDA, or CPUs with AVX512_BF16/AMX)
    channels_last: bool = False
    ema: bool = False
    ema_decay: float = 0.9998
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    seed: int = 0
    device: str = 'auto'  # auto | cpu | cuda
    log_every: int = 20  # iterations between progress lines (0: none by count)
    log_seconds: float = 60.0  # at most this long without a progress line during an epoch (0: no limit)
    save_images: int = 4  # validation images drawn (detections / overlays) at the end
    # best.pth without the optimizer / scheduler / RNG states: a third of the size with AdamW; runs resume from
    # last.pth, which keeps everything
    best_weights_only: bool = False


@dataclass
class Config:
    task: str = 'detection'  # detection | segmentation | classification
    output_dir: str = 'runs/exp'
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    'task': ('detection', 'segmentation', 'classification'),
    'data.format': ('coco', 'voc', 'cityscapes', 'folder', 'shapes', 'csv'),
    'data.cityscapes_labels': ('labelIds', 'labelTrainIds'),
    'loss.name': ('cross_entropy', 'bootstrapped_cross_entropy', 'bce'),
    'train.optimizer': ('sgd', 'adamw'),
    'train.scheduler': ('cosine', 'poly', 'step', 'constant'),
    'train.device': ('auto', 'cpu', 'cuda'),
    'train.amp_dtype': ('float16', 'bfloat16'),
}


def config_from_dict(values: Dict[str, Any]) -> Config:
    """Validate a nested dict into a ``Config`` (missing keys take their defaults)."""
    return build_dataclass(Config, values, '', _CHOICES)


def config_to_dict(cfg: Config) -> Dict[str, Any]:
    """Plain nested dict (tuples as lists), ready for YAML/JSON."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


def _apply_override(values: Dict[str, Any], override: str) -> None:
    if '=' not in override:
        raise ConfigError(f'override {override!r} must look like key.subkey=value')
    key, raw = override.split('=', 1)
    value = parse_yaml(raw, f'override {override!r}') if raw else ''
    node = values
    parts = key.strip().split('.')
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f'override {override!r}: {part} is not a section')
    node[parts[-1]] = value


def _merge(base: Dict[str, Any], own: Dict[str, Any]) -> Dict[str, Any]:
    """``own`` over ``base``: sections (dicts) merge key by key, every other value replaces the base's."""
    merged = copy.deepcopy(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path: Union[str, Path], _seen: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """A YAML config file as a dict, merged over the base config(s) it names (their paths relative to it).

    Raises:
        ConfigError: a missing file, a file that is not UTF-8 YAML (see :mod:`.yaml_io`), a base that is not a
            path, a cycle of bases or a chain of more than ``MAX_BASE_DEPTH``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'config file not found: {path}')
    if path.resolve() in _seen:
        chain = ' -> '.join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f'{path}: the base configs form a cycle ({chain})')
    if len(_seen) >= MAX_BASE_DEPTH:
        raise ConfigError(f'{path}: base configs are chained more than {MAX_BASE_DEPTH} deep (from {_seen[0]}); '
                          f'inherit from fewer levels')
    values = read_yaml_file(path) or {}
    if not isinstance(values, dict):
        raise ConfigError(f'{path}: a config is a mapping of keys, got {type(values).__name__}')
    bases = values.pop(BASE_KEY, None) or []
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f'{path}: {BASE_KEY}: expected a config path or a list of them, got {bases!r}')
    merged: Dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, read_config_file(path.parent / base, (*_seen, path.resolve())))
    return _merge(merged, values)


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = (),
                base: Optional[Dict[str, Any]] = None) -> Config:
    """Read a YAML config merged over its bases (or start from ``base``, a config dict, or the defaults) and
    apply ``key.sub=value`` overrides; the merged result is validated."""
    values: Dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        values = read_config_file(path)
    for override in overrides:
        _apply_override(values, override)
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f'{path or "config"}: {e}') from None


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (what ``config.yaml`` holds)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def list_keys(cfg: Config) -> List[str]:
    """All dotted keys, for ``--help`` texts."""
    return list(flatten_config(config_to_dict(cfg)))


def _value(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split('.'):
        node = getattr(node, part)
    return node


def _probability(v: float) -> bool:
    return 0.0 <= v <= 1.0


# key, test, what the value must be
_VALUE_CHECKS: Tuple[Tuple[str, Any, str], ...] = (
    ('train.epochs', lambda v: v >= 1, 'at least 1'),
    ('train.batch_size', lambda v: v >= 1, 'at least 1'),
    ('train.lr', lambda v: v > 0, 'positive'),
    ('train.momentum', lambda v: 0 <= v < 1, 'in [0, 1)'),
    ('train.weight_decay', lambda v: v >= 0, '>= 0'),
    ('train.warmup_epochs', lambda v: v >= 0, '>= 0'),
    ('train.poly_power', lambda v: v > 0, 'positive'),
    ('train.milestones', lambda v: all(b > a for a, b in zip(v, v[1:])) and all(m >= 1 for m in v),
     'increasing epochs, each at least 1'),
    ('train.gamma', lambda v: 0 < v <= 1, 'in (0, 1]'),
    ('train.min_lr_ratio', _probability, 'in [0, 1]'),
    ('train.clip_grad_norm', lambda v: v is None or v > 0, 'positive or null'),
    ('train.ema_decay', lambda v: 0 < v < 1, 'in (0, 1)'),
    ('train.eval_every', lambda v: v >= 1, 'at least 1 (the last epoch is always evaluated)'),
    ('train.log_every', lambda v: v >= 0, '>= 0 (0: no step lines)'),
    ('train.log_seconds', lambda v: v >= 0, '>= 0 (0: progress lines by step count only)'),
    ('train.save_images', lambda v: v >= 0, '>= 0'),
    ('train.seed', lambda v: 0 <= v < 2 ** 32, 'in [0, 2**32 - 1]'),
    ('data.num_workers', lambda v: v >= 0, '>= 0'),
    ('data.photometric_p', _probability, 'a probability in [0, 1]'),
    ('data.zoom_out_p', _probability, 'a probability in [0, 1]'),
    ('data.hflip_p', _probability, 'a probability in [0, 1]'),
    ('data.color_jitter_p', _probability, 'a probability in [0, 1]'),
    ('data.zoom_out_max', lambda v: v >= 1, '>= 1'),
    ('data.augmentation', lambda v: v in ('auto', 'ssd', 'centernet'), 'auto, ssd or centernet'),
    ('data.crop_size', lambda v: min(v) >= MIN_INPUT_SIZE, f'at least {MIN_INPUT_SIZE} pixels on each side'),
    ('data.scale_range', lambda v: 0 < v[0] <= v[1], '[low, high] with 0 < low <= high'),
    ('data.ignore_index', lambda v: 0 <= v <= 65535, 'in [0, 65535]'),
    ('loss.aux_weight', lambda v: v >= 0, '>= 0'),
    ('loss.smoothing', lambda v: 0 <= v < 1, 'in [0, 1)'),
    ('data.reprob', _probability, 'a probability in [0, 1]'),
    ('data.mixup', lambda v: v >= 0, '>= 0 (0: off)'),
    ('data.cutmix', lambda v: v >= 0, '>= 0 (0: off)'),
    ('data.input_size', lambda v: v is None or v >= MIN_INPUT_SIZE, f'at least {MIN_INPUT_SIZE} pixels (or null)'),
    ('train.layer_decay', lambda v: v is None or 0 < v <= 1, 'in (0, 1] (or null)'),
    ('loss.bootstrap_min_k', lambda v: v >= 1, 'at least 1'),
    ('loss.bootstrap_threshold', lambda v: v >= 0, '>= 0'),
    ('model.num_classes', lambda v: v is None or v >= 2, 'at least 2 (or null: from the data)'),
    ('model.trainable_backbone_layers', lambda v: v is None or v >= 0, '>= 0 (or null)'),
    ('data.class_names', lambda v: v is None or len(set(v)) == len(v), 'a list without repeated names'),
    ('data.nonzero_class', lambda v: v is None or v >= 1, 'at least 1 (0 is the background)'),
)


def validate_config(cfg: Config) -> None:
    """Check every value's range and the files the run needs, before any work starts.

    Raises:
        ConfigError: naming the key, its value and what it must be.
    """
    for key, test, requirement in _VALUE_CHECKS:
        value = _value(cfg, key)
        if not test(value):
            raise ConfigError(f'{key}: {value!r} is invalid; it must be {requirement}')
    if cfg.train.scheduler == 'step' and not cfg.train.milestones:
        raise ConfigError('train.scheduler=step needs train.milestones (the epochs at which the LR drops, e.g. '
                          '[230, 280])')
    if cfg.train.milestones and cfg.train.milestones[-1] >= cfg.train.epochs:
        raise ConfigError(f'train.milestones: {cfg.train.milestones} has an epoch at or past train.epochs='
                          f'{cfg.train.epochs}: that drop would never happen')
    weights = cfg.model.weights_backbone
    if weights not in (None, 'DEFAULT') and not Path(weights).is_file():
        raise ConfigError(f'model.weights_backbone: file not found: {weights} (use null, DEFAULT or a checkpoint path)')
    if cfg.data.nonzero_class is not None and cfg.data.mask_values is not None:
        raise ConfigError('data.nonzero_class and data.mask_values: give one of them')
    if Path(cfg.output_dir).exists() and not Path(cfg.output_dir).is_dir():
        raise ConfigError(f'output_dir: {cfg.output_dir} exists and is not a folder; choose another output_dir')
    import torch
    if cfg.train.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('train.device=cuda but no CUDA device is available here; use train.device=auto or cpu')
    on_cpu = cfg.train.device == 'cpu' or not torch.cuda.is_available()
    if cfg.train.amp and cfg.train.amp_dtype == 'bfloat16' and on_cpu:
        supported, why = cpu_supports_bfloat16()
        if not supported:
            raise ConfigError(f'train.amp_dtype=bfloat16 on this CPU: {why}; set train.amp_dtype=float16 (mixed '
                              f'precision then runs on CUDA only) or train.amp=false')


def flatten_config(values: Dict[str, Any]) -> Dict[str, Any]:
    """``{'train': {'lr': 0.1}, 'task': 'x'}`` -> ``{'train.lr': 0.1, 'task': 'x'}`` (one level, as configs nest)."""
    flat: Dict[str, Any] = {}
    for section, value in values.items():
        if isinstance(value, dict):
            flat.update({f'{section}.{key}': item for key, item in value.items()})
        else:
            flat[section] = value
    return flat
