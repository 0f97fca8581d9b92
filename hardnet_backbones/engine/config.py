"""Run configuration: YAML files with ``--set key=value`` overrides, validated against dataclasses.

Unknown keys, wrong types and bad choices raise ``ConfigError`` naming the key and what is valid.
The resolved configuration is saved next to each run's outputs (``config.yaml``).
"""
import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from ..errors import ConfigError

__all__ = ['ConfigError', 'Config', 'ModelConfig', 'DataConfig', 'TrainConfig', 'LossConfig',
           'load_config', 'config_from_dict', 'config_to_dict', 'config_to_yaml', 'validate_config',
           'check_resume_changes', 'config_changes', 'SAFE_ON_RESUME']


@dataclass
class ModelConfig:
    name: str = 'ssdlite320_hardnet39ds'  # a builder of hardnet_backbones.detection / .segmentation
    num_classes: Optional[int] = None  # default: from the dataset (detection counts the background)
    weights_backbone: Optional[str] = None  # null, DEFAULT (published ImageNet weights) or a file path
    trainable_backbone_layers: Optional[int] = None
    aux_loss: Optional[bool] = None  # segmentation builders that have an auxiliary head
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra builder arguments (score_thresh, ...)


@dataclass
class DataConfig:
    format: str = 'coco'  # detection: coco | voc; segmentation: voc | cityscapes | folder | shapes
    root: Union[str, List[str]] = 'data/shapes'  # voc detection: a list of roots is joined (VOC2007 + VOC2012)
    val_root: Optional[str] = None  # root of the validation split when it differs (default: root)
    train_split: str = 'train'
    val_split: str = 'val'
    class_names: Optional[List[str]] = None  # voc detection and folder segmentation: the classes in label order
    mask_values: Optional[Dict[int, int]] = None  # segmentation: raw mask value -> class, e.g. {255: 1}
    exif_orientation: bool = True  # apply the images' EXIF orientation (annotations made on upright images)
    cityscapes_labels: str = 'labelIds'  # cityscapes: labelIds (mapped to trainIds) | labelTrainIds (read as is)
    images_dir: str = 'images'  # coco: images are read from root/images_dir/<split>/<file_name>
    train_ann: Optional[str] = None  # coco: default annotations/<train_split>.json under root
    val_ann: Optional[str] = None
    num_workers: int = 2
    # detection augmentation
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


@dataclass
class LossConfig:
    name: str = 'cross_entropy'  # segmentation: cross_entropy | bootstrapped_cross_entropy
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
    scheduler: str = 'cosine'  # cosine | poly | constant, applied per iteration after warm-up
    warmup_epochs: float = 0.0
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    clip_grad_norm: Optional[float] = None
    amp: bool = True  # mixed precision, used on CUDA only
    channels_last: bool = False
    ema: bool = False
    ema_decay: float = 0.9998
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    seed: int = 0
    device: str = 'auto'  # auto | cpu | cuda
    log_every: int = 20  # iterations between log lines
    save_images: int = 4  # validation images drawn (detections / overlays) at the end


@dataclass
class Config:
    task: str = 'detection'  # detection | segmentation
    output_dir: str = 'runs/exp'
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    'task': ('detection', 'segmentation'),
    'data.format': ('coco', 'voc', 'cityscapes', 'folder', 'shapes'),
    'data.cityscapes_labels': ('labelIds', 'labelTrainIds'),
    'loss.name': ('cross_entropy', 'bootstrapped_cross_entropy'),
    'train.optimizer': ('sgd', 'adamw'),
    'train.scheduler': ('cosine', 'poly', 'constant'),
    'train.device': ('auto', 'cpu', 'cuda'),
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Union:  # Optional[X], or one of several types
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:
            try:
                return _coerce(value, alternative, key)
            except ConfigError:
                pass
        try:
            return _coerce(value, inner[-1], key)
        except ConfigError:
            if len(inner) == 1:
                raise
            names = ' or '.join(_type_name(a) for a in inner)
            raise ConfigError(f'{key}: expected {names}, got {value!r}') from None
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f'{key}: expected a list of {len(args)} values, got {value!r}')
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key}: expected a list, got {value!r}')
        return [_coerce(v, args[0], key) for v in value] if args else list(value)
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f'{key}: expected a mapping, got {value!r}')
        if not args:
            return dict(value)
        return {_coerce(k, args[0], f'{key} (key)'): _coerce(v, args[1], f'{key}.{k}') for k, v in value.items()}
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    raise ConfigError(f'{key}: expected {_type_name(annotation)}, got {value!r}')


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (list, List):
        return f'a list of {_type_name(typing.get_args(annotation)[0])}'
    return getattr(annotation, '__name__', str(annotation))


def _build(cls: type, values: Dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f'{prefix or "config"}: expected a mapping, got {values!r}')
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = f' in "{prefix}"' if prefix else ''
        raise ConfigError(f'unknown config key(s){where}: {", ".join(unknown)}; valid keys: {", ".join(names)}')
    kwargs = {}
    for name, value in values.items():
        key = f'{prefix}.{name}' if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, key)
        else:
            kwargs[name] = _coerce(value, hint, key)
            if key in _CHOICES and kwargs[name] not in _CHOICES[key]:
                raise ConfigError(f'{key}: {kwargs[name]!r} is not one of {", ".join(_CHOICES[key])}')
    return cls(**kwargs)


def config_from_dict(values: Dict[str, Any]) -> Config:
    """Validate a nested dict into a ``Config`` (missing keys take their defaults)."""
    return _build(Config, values, '')


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
    try:
        value = yaml.safe_load(raw) if raw else ''
    except yaml.YAMLError as e:
        raise ConfigError(f'override {override!r}: cannot parse value ({e})') from e
    node = values
    parts = key.strip().split('.')
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f'override {override!r}: {part} is not a section')
    node[parts[-1]] = value


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = (),
                base: Optional[Dict[str, Any]] = None) -> Config:
    """Read a YAML config (or start from ``base``, a config dict, or the defaults) and apply ``key.sub=value``
    overrides."""
    values: Dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'config file not found: {path}')
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f'{path}: invalid YAML ({e})') from e
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
    return list(_flatten(config_to_dict(cfg)))


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
    ('train.min_lr_ratio', _probability, 'in [0, 1]'),
    ('train.clip_grad_norm', lambda v: v is None or v > 0, 'positive or null'),
    ('train.ema_decay', lambda v: 0 < v < 1, 'in (0, 1)'),
    ('train.eval_every', lambda v: v >= 1, 'at least 1 (the last epoch is always evaluated)'),
    ('train.log_every', lambda v: v >= 0, '>= 0 (0: no step lines)'),
    ('train.save_images', lambda v: v >= 0, '>= 0'),
    ('train.seed', lambda v: v >= 0, '>= 0'),
    ('data.num_workers', lambda v: v >= 0, '>= 0'),
    ('data.photometric_p', _probability, 'a probability in [0, 1]'),
    ('data.zoom_out_p', _probability, 'a probability in [0, 1]'),
    ('data.hflip_p', _probability, 'a probability in [0, 1]'),
    ('data.color_jitter_p', _probability, 'a probability in [0, 1]'),
    ('data.zoom_out_max', lambda v: v >= 1, '>= 1'),
    ('data.crop_size', lambda v: min(v) >= 32, 'at least 32 pixels on each side'),
    ('data.scale_range', lambda v: 0 < v[0] <= v[1], '[low, high] with 0 < low <= high'),
    ('data.ignore_index', lambda v: 0 <= v <= 65535, 'in [0, 65535]'),
    ('loss.aux_weight', lambda v: v >= 0, '>= 0'),
    ('loss.bootstrap_min_k', lambda v: v >= 1, 'at least 1'),
    ('loss.bootstrap_threshold', lambda v: v >= 0, '>= 0'),
    ('model.num_classes', lambda v: v is None or v >= 2, 'at least 2 (or null: from the data)'),
    ('model.trainable_backbone_layers', lambda v: v is None or v >= 0, '>= 0 (or null)'),
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
    weights = cfg.model.weights_backbone
    if weights not in (None, 'DEFAULT') and not Path(weights).is_file():
        raise ConfigError(f'model.weights_backbone: file not found: {weights} (use null, DEFAULT or a checkpoint path)')
    if Path(cfg.output_dir).exists() and not Path(cfg.output_dir).is_dir():
        raise ConfigError(f'output_dir: {cfg.output_dir} exists and is not a folder; choose another output_dir')
    if cfg.train.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise ConfigError('train.device=cuda but no CUDA device is available here; use train.device=auto or cpu')


# keys a resumed run may change: they do not alter the trained weights of the epochs to come, except
# train.epochs, whose schedule then stretches over the new total
SAFE_ON_RESUME = ('output_dir', 'train.epochs', 'train.eval_every', 'train.log_every', 'train.save_images',
                  'train.device', 'data.num_workers')


def _flatten(values: Dict[str, Any]) -> Dict[str, Any]:
    """``{'train': {'lr': 0.1}, 'task': 'x'}`` -> ``{'train.lr': 0.1, 'task': 'x'}`` (one level, as configs nest)."""
    flat: Dict[str, Any] = {}
    for section, value in values.items():
        if isinstance(value, dict):
            flat.update({f'{section}.{key}': item for key, item in value.items()})
        else:
            flat[section] = value
    return flat


def config_changes(stored: Dict[str, Any], cfg: Config) -> Dict[str, Tuple[Any, Any]]:
    """``{key: (stored value, new value)}`` for every key where ``cfg`` differs from a stored config dict."""
    old = _flatten(config_to_dict(config_from_dict(stored)))
    new = _flatten(config_to_dict(cfg))
    return {k: (old.get(k), new[k]) for k in new if old.get(k) != new[k]}


def check_resume_changes(stored: Dict[str, Any], cfg: Config, finished_epochs: int) -> Dict[str, Tuple[Any, Any]]:
    """The changes a resumed run makes to its stored config; refuses those that break exactness.

    Raises:
        ConfigError: listing the unsafe changes (key: old -> new).
    """
    changes = config_changes(stored, cfg)
    unsafe = {k: v for k, v in changes.items() if k not in SAFE_ON_RESUME}
    if unsafe:
        listed = '; '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in sorted(unsafe.items()))
        raise ConfigError(
            f'--resume: the config differs from the checkpoint\'s in keys that change the result: {listed}. '
            f'Resume with the run\'s own config (output_dir/config.yaml), or start a new run (another output_dir, '
            f'or --overwrite). Keys that may change on resume: {", ".join(SAFE_ON_RESUME)}')
    if cfg.train.epochs < finished_epochs:
        raise ConfigError(f'train.epochs={cfg.train.epochs}, but the checkpoint has finished {finished_epochs} epochs')
    return changes
