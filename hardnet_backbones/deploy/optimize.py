"""Deployment: one call that turns a trained model into its fastest CPU form, and back into a module.

``optimize_for_inference(model, kind)`` returns a module with the original's call signature and
outputs:

* float32 (default): BatchNorm folded into the convolutions, dropout removed, weights channels_last
  (:func:`~hardnet_backbones.deploy.fuse.fuse_for_inference`). On a CPU that already runs the plain model
  channels_last near its GEMM rate this gains little; it is exact.
* ``int8=True``: exported to ONNX, quantized by onnxruntime (static, QDQ, per-channel int8 weights,
  uint8 activations whose ranges come from ``calibration`` inputs) and run by onnxruntime, whose
  int8 convolutions use VNNI instructions where the CPU has them. Accuracy changes: measure it on
  your validation data (``hardnet-evaluate --onnx FILE``) before shipping.

Detectors keep their pre- and post-processing (resize, normalisation, box decoding, NMS) in float:
only the backbone and the head's convolutions are quantized. Segmenters likewise keep the final
upsampling of the logits in float.
"""
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

import torch
import torch.nn as nn

from .export import check_model_kind
from .fuse import fuse_for_inference
from .quantize import quantize_to_onnx
from .runtime import OnnxRuntimeModel

__all__ = ['optimize_for_inference']


def optimize_for_inference(
        model: nn.Module,
        kind: str = 'classification',
        *,
        int8: bool = False,
        calibration: Optional[Iterable[torch.Tensor]] = None,
        image_size: Tuple[int, int] = (224, 224),
        path: Optional[Union[str, Path]] = None,
) -> nn.Module:
    """The fastest CPU form of ``model`` (left untouched), called like it.

    Args:
        model: a classifier, timm feature extractor, SSD detector or segmenter.
        kind: 'classification', 'features', 'detection' or 'segmentation'.
        int8: quantize to int8 and run in onnxruntime (needs ``calibration``); otherwise float32
            PyTorch with BatchNorm folded and channels_last weights (exact).
        calibration: with ``int8``: a few dozen real model inputs (see :func:`quantize_to_onnx`).
        image_size: ``(H, W)`` of the ONNX export's example input (the file accepts any size).
        path: with ``int8``: where to keep the int8 ONNX file (default: a temporary folder).

    Returns:
        float32: an ``nn.Module``; int8: an :class:`OnnxRuntimeModel` with the model's interface.

    Raises:
        ValueError: ``kind`` is not what the model is, or bad calibration inputs.
    """
    check_model_kind(model, kind)
    if not int8:
        if calibration is not None or path is not None:
            raise ValueError('calibration and path are for int8=True')
        return fuse_for_inference(model, channels_last=True)
    if calibration is None:
        raise ValueError('int8=True needs calibration inputs (a few dozen real images as the model takes them)')
    if path is None:
        path = Path(tempfile.mkdtemp(prefix='hardnet_int8_')) / 'model.int8.onnx'
    quantize_to_onnx(model, path, kind, calibration, image_size)
    return OnnxRuntimeModel(path, kind)
