"""Deployment: one call that turns a trained model into its fastest form for a machine, called like the original.

``optimize_for_inference(model, kind, precision=...)`` returns a module with the original's call signature
and float32 outputs:

* ``float32`` (default): BatchNorm folded into the convolutions, dropout removed, weights channels_last
  (:func:`~hardnet_backbones.deploy.fuse.fuse_for_inference`). Exact.
* ``bfloat16``: the same, run under autocast to bfloat16 (:mod:`~hardnet_backbones.deploy.precision`). Only on
  CPUs with AVX512_BF16 or AMX (elsewhere it is emulated and slower: refused), or CUDA.
* ``float16``: the same with float16, on CUDA.
* ``int8`` (or ``int8=True``): exported to ONNX, quantized by onnxruntime (static, QDQ, per-channel int8
  weights, uint8 activations whose ranges come from ``calibration`` inputs) and run by onnxruntime, whose
  int8 convolutions use VNNI instructions where the CPU has them. Accuracy changes: measure it on
  your validation data (``hardnet-evaluate --onnx FILE``) before shipping.
* ``auto``: the fastest the machine supports, logged with the reason: float16 on CUDA; int8 when
  ``calibration`` is given; bfloat16 on CPUs with native support; float32 otherwise.

Detectors keep their pre- and post-processing (resize, normalisation, box decoding, NMS) in float:
only the backbone and the head's convolutions are quantized, the head's pointwise output convolutions
excepted. Segmenters likewise keep the final upsampling of the logits in float.
"""
import logging
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..utils.device import model_device
from .export import check_model_kind
from .fuse import fuse_for_inference
from .precision import check_precision, choose_precision, with_autocast
from .quantize import quantize_to_onnx
from .runtime import OnnxRuntimeModel

__all__ = ['optimize_for_inference']

_logger = logging.getLogger(__name__)


def optimize_for_inference(
        model: nn.Module,
        kind: str = 'classification',
        *,
        precision: str = 'float32',
        int8: bool = False,
        calibration: Optional[Iterable[torch.Tensor]] = None,
        image_size: Tuple[int, int] = (224, 224),
        path: Optional[Union[str, Path]] = None,
) -> nn.Module:
    """The fastest CPU form of ``model`` (left untouched), called like it.

    Args:
        model: a classifier, timm feature extractor, SSD detector or segmenter.
        kind: 'classification', 'features', 'detection' or 'segmentation'.
        precision: 'float32', 'bfloat16', 'float16', 'int8' or 'auto' (see the module docstring).
        int8: the same as ``precision='int8'``.
        calibration: with int8: a few dozen real model inputs (see :func:`quantize_to_onnx`).
        image_size: ``(H, W)`` of the ONNX export's example input (the file accepts any size).
        path: with ``int8``: where to keep the int8 ONNX file (default: a temporary folder).

    Returns:
        an ``nn.Module`` (float32, bfloat16, float16), or an :class:`OnnxRuntimeModel` with the model's
        interface (int8); its ``precision`` attribute says which.

    Raises:
        ValueError: ``kind`` is not what the model is (or the model is no vision model), a precision this machine
            does not run natively, ``int8=True`` beside another precision, or bad calibration inputs.
    """
    check_model_kind(model, kind)
    device = model_device(model)
    if int8:
        if precision not in ('float32', 'int8'):  # float32 is the default, so it cannot tell
            raise ValueError(f'int8=True contradicts precision={precision!r}: pass one of them (precision=\'int8\' '
                             f'is the same as int8=True)')
        precision = 'int8'
    check_precision(precision, device)
    if precision == 'auto':
        precision, why = choose_precision(device, calibration)
        _logger.info('optimize_for_inference: %s, as %s', precision, why)
    if precision != 'int8':
        if calibration is not None or path is not None:
            raise ValueError(f'calibration and path are for int8 (precision={precision!r} was asked for)')
        fast = fuse_for_inference(model, channels_last=True)
        if precision != 'float32':
            fast = with_autocast(fast, kind, precision)
        fast.precision = precision
        return fast
    if calibration is None:
        raise ValueError('int8=True needs calibration inputs (a few dozen real images as the model takes them)')
    if path is None:
        path = Path(tempfile.mkdtemp(prefix='hardnet_int8_')) / 'model.int8.onnx'
    quantize_to_onnx(model, path, kind, calibration, image_size)
    quantized = OnnxRuntimeModel(path, kind)
    quantized.precision = 'int8'
    return quantized
