"""Atomic training checkpoints with everything needed to resume exactly (RNG states included)."""
import os
import random
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from ..hub import load_checkpoint_file

__all__ = ['save_atomic', 'load_training_checkpoint', 'model_weights', 'capture_rng_state', 'restore_rng_state']


def save_atomic(obj: Dict[str, Any], path: Union[str, Path]) -> None:
    """Write to a temporary file in the same folder, then rename: a kill never leaves a torn file."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_training_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load a checkpoint written by ``save_atomic`` (``weights_only=True``)."""
    checkpoint = load_checkpoint_file(path)
    for key in ('model', 'optimizer', 'epoch'):
        if key not in checkpoint:
            raise RuntimeError(f'{path} is not a training checkpoint of ours: no "{key}" entry')
    return checkpoint


def model_weights(checkpoint: Dict[str, Any], prefer_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The model state dict inside a training checkpoint (EMA weights when present and preferred),
    or the file itself when it is a bare state dict."""
    if isinstance(checkpoint.get('model'), dict):
        if prefer_ema and checkpoint.get('model_ema'):
            return checkpoint['model_ema']
        return checkpoint['model']
    return checkpoint


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
