"""Deployment: one call that turns a trained model into its fastest CPU form, and back into a module.

``optimize_for_inference(model, kind)`` returns a module with the original's call signature and
outputs:

* float32 (default): BatchNorm folded into the convolutions, dropout removed, weights channels_last
  (:func:`~hardnet_backbones.fuse.fuse_for_inference`). On a CPU that already runs the plain model
  channels_last near its GEMM rate this gains little; it is exact.
* ``int8=True``: exported to ONNX, quantized by onnxruntime (static, QDQ, per-channel int8 weights,
  uint8 activations whose ranges come from ``calibration`` inputs) and run by onnxruntime, whose
  int8 convolutions use VNNI instructions where the CPU has them. Accuracy changes: measure it on
  your validation data (``hardnet-evaluate --onnx FILE``) before shipping.

Detectors keep their pre- and post-processing (resize, normalisation, box decoding, NMS) in float:
only the backbone and the head's convolutions are quantized. Segmenters likewise keep the final
upsampling of the logits in float.
"""
import collections
import tempfile
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .errors import CheckpointError
from .export import KINDS, export_onnx, onnx_input_name
from .fuse import fuse_for_inference

__all__ = ['optimize_for_inference', 'quantize_to_onnx', 'OnnxRuntimeModel', 'quantized_node_count',
           'calibration_images']

# the float-to-int8 conversion is onnxruntime's; what it is given to convert is ours to choose
_ALWAYS_QUANTIZED = ('Conv', 'Gemm', 'MatMul')


def _require_export_extra() -> None:
    import importlib.util
    missing = [m for m in ('onnx', 'onnxruntime') if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f'{" and ".join(missing)} not installed: pip install "hardnet-backbones[export]"')


def _nodes_to_quantize(onnx_model: Any, kind: str) -> Optional[List[str]]:
    """Classifiers and feature extractors: every node onnxruntime can quantize (None). Detectors and
    segmenters: the backbone whole, elsewhere only convolutions and matrix products, so that box decoding,
    NMS and the logits' upsampling stay float."""
    if kind in ('classification', 'features'):
        return None
    return [node.name for node in onnx_model.graph.node
            if node.name.startswith('/model/backbone/') or node.op_type in _ALWAYS_QUANTIZED]


def _calibration_feeds(calibration: Iterable[torch.Tensor], kind: str, input_name: str) -> List[dict]:
    feeds = []
    for item in calibration:
        if not isinstance(item, torch.Tensor):
            raise TypeError(f'calibration inputs must be tensors, got {type(item).__name__}')
        array = item.detach().cpu().float().contiguous()
        if kind == 'detection':
            if array.dim() != 3:
                raise ValueError(
                    f'detector calibration inputs are (3, H, W) images in [0, 1], got {tuple(array.shape)}')
        elif array.dim() == 3:
            array = array.unsqueeze(0)
        feeds.append({input_name: array.numpy()})
    if not feeds:
        raise ValueError('int8 quantization needs calibration inputs: real images as the model takes them '
                         '(a few dozen from the training data); without them activation ranges are guesses')
    return feeds


def quantize_to_onnx(
        model: nn.Module,
        path: Union[str, Path],
        kind: str,
        calibration: Iterable[torch.Tensor],
        image_size: Tuple[int, int] = (224, 224),
        per_channel: bool = True,
) -> Path:
    """Export ``model`` to ONNX and write its static int8 quantization (QDQ format) to ``path``.

    Args:
        kind: 'classification', 'features', 'detection' or 'segmentation' (as for
            :func:`~hardnet_backbones.export.export_onnx`).
        calibration: model inputs from real data, used to choose the activation ranges: ``(3, H, W)``
            images in [0, 1] for detectors, preprocessed ``(B, 3, H, W)`` or ``(3, H, W)`` tensors otherwise.
        image_size: ``(H, W)`` of the export's example input.
        per_channel: one weight scale per output channel (more accurate, as fast on CPU).

    Raises:
        ImportError: onnx / onnxruntime missing (``pip install hardnet-backbones[export]``).
        ValueError: no calibration inputs, or of the wrong shape.
    """
    _require_export_extra()
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self, feeds: List[dict]):
            self.feeds = iter(feeds)

        def get_next(self) -> Optional[dict]:
            return next(self.feeds, None)

    feeds = _calibration_feeds(calibration, kind, onnx_input_name(kind))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        float_path, prepared_path = Path(tmp) / 'float.onnx', Path(tmp) / 'prepared.onnx'
        export_onnx(model, float_path, kind, image_size)
        quant_pre_process(str(float_path), str(prepared_path), skip_symbolic_shape=True)
        nodes = _nodes_to_quantize(onnx.load(str(prepared_path)), kind)
        quantize_static(str(prepared_path), str(path), _Reader(feeds), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=nodes)
    return path


def quantized_node_count(path: Union[str, Path]) -> int:
    """How many tensors of an ONNX file are quantized (its ``QuantizeLinear`` nodes)."""
    import onnx
    return sum(node.op_type == 'QuantizeLinear' for node in onnx.load(str(path)).graph.node)


class OnnxRuntimeModel(nn.Module):
    """An ONNX file written by :func:`~hardnet_backbones.export.export_onnx` or :func:`quantize_to_onnx`, run by
    onnxruntime behind the interface of the PyTorch model it came from.

    ``kind`` decides the interface: classification -> logits tensor; features -> list of maps;
    segmentation -> ``{"out", "aux"}`` dict; detection -> ``model(list of (3, H, W) images)`` returns
    torchvision's list of ``{"boxes", "scores", "labels"}``. Inputs may live on any device; outputs
    come back on the input's device. Inference only (no gradients, no ``targets``).
    """

    def __init__(self, path: Union[str, Path], kind: str, num_threads: Optional[int] = None):
        super().__init__()
        _require_export_extra()
        import onnxruntime as ort
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
        if not Path(path).is_file():
            raise FileNotFoundError(f'no such ONNX file: {path}')
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        self.path, self.kind = Path(path), kind
        try:
            self.session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise CheckpointError(f'{path} is not a readable ONNX model: {e}') from e
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        expected_input = onnx_input_name(kind)
        if self.input_name != expected_input:
            raise CheckpointError(f'{path} takes an input {self.input_name!r}, not the {expected_input!r} of a '
                                  f'{kind} model exported by hardnet-export')

    def _run(self, x: torch.Tensor) -> List[torch.Tensor]:
        outputs = self.session.run(None, {self.input_name: x.detach().cpu().float().contiguous().numpy()})
        return [torch.from_numpy(np.asarray(o)).to(x.device) for o in outputs]

    def forward(self, x: Union[torch.Tensor, Sequence[torch.Tensor]]) -> Any:
        if self.kind == 'detection':
            detections = []
            for image in x:
                boxes, scores, labels = self._run(image)
                detections.append(dict(boxes=boxes, scores=scores, labels=labels))
            return detections
        outputs = self._run(x)
        if self.kind == 'classification':
            return outputs[0]
        if self.kind == 'features':
            return outputs
        return collections.OrderedDict(zip(self.output_names, outputs))

    def extra_repr(self) -> str:
        return f'path={str(self.path)!r}, kind={self.kind!r}'


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
    """
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
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


def calibration_images(
        paths: Sequence[Union[str, Path]],
        kind: str,
        model: Optional[nn.Module] = None,
        count: int = 32,
) -> List[torch.Tensor]:
    """Up to ``count`` image files (evenly spread over ``paths``), each made into the input ``kind``'s
    model takes: ``(3, H, W)`` in [0, 1] for detectors, ImageNet-normalised at its own size for
    segmenters, the timm eval transform of ``model`` (resize, crop, normalise) for classifiers and
    feature extractors."""
    from .image_io import read_image
    if count < 1:
        raise ValueError(f'count must be >= 1, got {count}')
    step = max(1, len(paths) // count)
    chosen = list(paths)[::step][:count]
    if kind in ('classification', 'features'):
        from timm.data import create_transform, resolve_model_data_config
        transform = create_transform(**resolve_model_data_config(model), is_training=False)
        return [transform(read_image(p)) for p in chosen]
    from .predict import image_to_input
    return [image_to_input(read_image(p), kind) for p in chosen]
