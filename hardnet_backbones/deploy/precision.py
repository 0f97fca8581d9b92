"""Reduced-precision inference in PyTorch: autocast to bfloat16 (CPUs with AVX512_BF16 or AMX, CUDA) or float16
(CUDA) around the convolutional parts, float32 outputs, and the choice of a precision for a machine.

Detectors keep their transform, box decoding and NMS in float32: only the backbone and the heads run in reduced
precision, and their outputs are cast back before the post-processing sees them.
"""
from typing import Any, Optional, Tuple

import torch
import torch.nn as nn

from ..utils.cpu import cpu_features, cpu_supports_bfloat16

__all__ = ['PRECISIONS', 'AutocastModule', 'with_autocast', 'choose_precision', 'check_precision']

PRECISIONS = ('float32', 'bfloat16', 'float16', 'int8', 'auto')

_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}

# the parts of torchvision's detectors that are convolutions (the rest is box coding, sampling and NMS)
_DETECTOR_PARTS = ('backbone', 'head', 'rpn.head', 'roi_heads.box_head', 'roi_heads.box_predictor',
                   'roi_heads.mask_head', 'roi_heads.mask_predictor')


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


class AutocastModule(nn.Module):
    """``module`` run under ``torch.autocast`` to ``dtype`` on the device of its parameters; floating outputs
    come back as float32, so whatever follows is unchanged."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        parameter = next(self.module.parameters(), None)
        device_type = parameter.device.type if parameter is not None else 'cpu'
        with torch.autocast(device_type, dtype=self.dtype):
            out = self.module(*args, **kwargs)
        return _to_float32(out)

    def extra_repr(self) -> str:
        return f'dtype={self.dtype}'


def with_autocast(model: nn.Module, kind: str, precision: str) -> nn.Module:
    """``model`` (changed in place for detectors) running its convolutions in ``precision``, float32 outputs."""
    dtype = _DTYPES[precision]
    if kind != 'detection':
        return AutocastModule(model, dtype)
    for path in _DETECTOR_PARTS:
        parent_path, _, name = path.rpartition('.')
        parent = getattr(model, parent_path, None) if parent_path else model
        part = getattr(parent, name, None)
        if isinstance(part, nn.Module) and not isinstance(part, AutocastModule):
            setattr(parent, name, AutocastModule(part, dtype))
    return model


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision this device cannot run fast (bfloat16 on a CPU without native support, float16 on a
    CPU), in one line saying why.

    Raises:
        ValueError: an unknown precision, or one the device does not run natively.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if device.type == 'cpu' and precision == 'bfloat16':
        supported, why = cpu_supports_bfloat16()
        if not supported:
            raise ValueError(f'precision bfloat16: {why}; use float32 (or int8 with calibration images)')
    if device.type == 'cpu' and precision == 'float16':
        raise ValueError('precision float16 is for CUDA; on a CPU use bfloat16 (AVX512_BF16 / AMX) or float32')


def choose_precision(device: torch.device, calibration: Optional[Any] = None) -> Tuple[str, str]:
    """The fastest precision for this machine, and why: on CUDA float16; on a CPU int8 when calibration inputs
    are given (onnxruntime), else bfloat16 where the CPU has it natively, else float32."""
    if device.type == 'cuda':
        return 'float16', 'CUDA: float16 autocast with channels_last weights'
    if calibration is not None:
        vnni = [n for n in ('AVX512_VNNI', 'AVX_VNNI', 'AMX_INT8') if cpu_features()[n]]
        return 'int8', ('calibration inputs given: int8 in onnxruntime'
                        + (f' ({", ".join(vnni)})' if vnni else ' (no VNNI on this CPU: smaller gains)'))
    supported, why = cpu_supports_bfloat16()
    return ('bfloat16' if supported else 'float32'), why
