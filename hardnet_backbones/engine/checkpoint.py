"""Training checkpoints: everything needed to resume a run exactly (weights, optimiser, RNG states, config).

They are written through :mod:`hardnet_backbones.utils.files`, so a kill never leaves a torn one.
"""
import random
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from ..errors import CheckpointError
from ..models.hub import load_checkpoint_file

__all__ = ['load_training_checkpoint', 'model_weights', 'capture_rng_state', 'restore_rng_state']


def load_training_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load a checkpoint written by the training engine (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, or not a training checkpoint of ours.
    """
    checkpoint = load_checkpoint_file(path)
    for key in ('model', 'optimizer', 'epoch', 'config'):
        if key not in checkpoint:
            raise CheckpointError(f'{path} is not a training checkpoint of tools/train.py: no "{key}" entry')
    return checkpoint


def model_weights(checkpoint: Dict[str, Any], prefer_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The model state dict inside a training checkpoint (EMA weights when present and preferred),
    or the file itself when it is a bare state dict.

    Raises:
        CheckpointError: weights that are not finite (a run that diverged predicts nothing, silently).
    """
    weights = checkpoint
    if isinstance(checkpoint.get('model'), dict):
        weights = checkpoint['model_ema'] if prefer_ema and checkpoint.get('model_ema') else checkpoint['model']
    broken = [k for k, v in weights.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(f'the checkpoint\'s weights hold nan or inf in {len(broken)} tensors (e.g. {broken[0]}): '
                              f'the run diverged; use an earlier checkpoint, or train again with a lower train.lr')
    return weights


def capture_rng_state() -> Dict[str, Any]:
    """Torch (CPU and CUDA), NumPy and Python RNG states as tensors/plain types (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        'python': _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state['torch'])
    name, keys, *rest = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_python_state_from_plain(state['python']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _python_state_to_plain(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_plain(state):
    version, internal, gauss = state
    return version, tuple(internal), gauss
