"""What a resumed run may change in its config: keys that leave the trained weights of the epochs to come as
they would have been; every other change is refused, so a resumed run ends as an uninterrupted one."""
from typing import Any, Dict, Tuple

from ..errors import ConfigError
from .config import Config, config_from_dict, config_to_dict, flatten_config

__all__ = ['SAFE_ON_RESUME', 'config_changes', 'check_resume_changes']

# keys a resumed run may change: they do not alter the trained weights of the epochs to come, except
# train.epochs, whose schedule then stretches over the new total
SAFE_ON_RESUME = ('output_dir', 'train.epochs', 'train.eval_every', 'train.log_every', 'train.log_seconds',
                  'train.save_images', 'train.best_weights_only', 'train.device', 'data.num_workers')


def config_changes(stored: Dict[str, Any], cfg: Config) -> Dict[str, Tuple[Any, Any]]:
    """``{key: (stored value, new value)}`` for every key where ``cfg`` differs from a stored config dict."""
    old = flatten_config(config_to_dict(config_from_dict(stored)))
    new = flatten_config(config_to_dict(cfg))
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
