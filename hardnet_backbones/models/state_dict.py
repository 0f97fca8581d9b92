"""State-dict helpers shared by the checkpoint filters: unwrapping, remapping by module order, validation."""
import re
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models import clean_state_dict

from ..errors import CheckpointError

__all__ = ['unwrap_state_dict', 'rename_prefixes', 'remap_by_position', 'match_state_dict', 'preview_keys']


def preview_keys(keys: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` keys, comma separated, with the total when there are more."""
    shown = ', '.join(keys[:limit])
    return shown + (f' ... ({len(keys)} in all)' if len(keys) > limit else '')


def unwrap_state_dict(checkpoint: Dict[str, Any], use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwraps 'state_dict_ema' / 'model_ema' (with ``use_ema``) / 'state_dict' /
    'model' entries as timm does, and strips DistributedDataParallel / torch.compile prefixes
    (``timm.models.clean_state_dict``)."""
    for key in (('state_dict_ema', 'model_ema') if use_ema else ()) + ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return clean_state_dict(checkpoint)


def rename_prefixes(state_dict: Dict[str, torch.Tensor], names: Sequence[Tuple[str, str]]) -> Dict[str, torch.Tensor]:
    """Keys starting with an ``old`` prefix of ``names`` (the first that matches) get its ``new`` prefix instead;
    the others pass through unchanged."""
    renamed = {}
    for key, value in state_dict.items():
        for old, new in names:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def remap_by_position(
        state_dict: Dict[str, torch.Tensor],
        source_prefix: str,
        target: nn.Module,
        target_prefix: str,
) -> Dict[str, torch.Tensor]:
    """Rename ``<source_prefix>.N.rest`` to ``<target_prefix>.<name of target's Nth child>.rest``.

    Keys under other prefixes pass through unchanged; an index past the children raises ``KeyError``.
    """
    names = [name for name, _ in target.named_children()]
    pattern = re.compile(rf'^{re.escape(source_prefix)}\.(\d+)\.(.+)$')
    out, unknown = {}, []
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match is None:
            out[key] = value
        elif int(match.group(1)) < len(names):
            out[f'{target_prefix}.{names[int(match.group(1))]}.{match.group(2)}'] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f'Checkpoint keys do not fit this model ({len(names)} modules under "{target_prefix}"): '
                       f'{preview_keys(unknown)}')
    return out


def match_state_dict(
        state_dict: Dict[str, torch.Tensor],
        model: nn.Module,
        adaptable: Iterable[str] = (),
        what: str = 'model',
) -> Dict[str, torch.Tensor]:
    """Check ``state_dict`` against ``model``: fills missing ``num_batches_tracked`` buffers, and raises a
    ``CheckpointError`` (a ``RuntimeError``) naming missing, unexpected and wrongly shaped keys. Keys in
    ``adaptable`` may be absent or differ in shape (the loader adapts them, e.g. first conv / classifier)."""
    adaptable = set(adaptable)
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith('num_batches_tracked') and key not in state_dict:
            state_dict[key] = torch.zeros_like(value, device='cpu')
    missing = [k for k in expected if k not in state_dict and k not in adaptable]
    unexpected = [k for k in state_dict if k not in expected and k not in adaptable]
    mismatched = [
        f'{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
        for k, v in state_dict.items()
        if k in expected and k not in adaptable and v.shape != expected[k].shape]
    problems: List[str] = []
    if missing:
        problems.append(f'missing keys: {preview_keys(missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {preview_keys(unexpected)}')
    if mismatched:
        problems.append(f'shape mismatch: {preview_keys(mismatched)}')
    if problems:
        raise CheckpointError(f"Checkpoint does not match the {what}; " + "; ".join(problems))
    return state_dict
