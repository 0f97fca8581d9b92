"""Static int8 quantization by onnxruntime, calibrated on real images.

Detectors keep their pre- and post-processing (resize, normalisation, box decoding, NMS) in float:
only the backbone and the head's convolutions are quantized, the head's pointwise output convolutions
excepted. Segmenters likewise keep the final upsampling of the logits in float.
"""
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn

from ..data.image_io import read_image
from ..data.inputs import image_to_input
from ..utils.files import write_atomic
from .export import export_onnx, onnx_input_name
from .runtime import require_export_extra

__all__ = ['quantize_to_onnx', 'quantized_node_count', 'calibration_images']

# the float-to-int8 conversion is onnxruntime's; what it is given to convert is ours to choose
_ALWAYS_QUANTIZED = ('Conv', 'Gemm', 'MatMul')


def _is_pointwise(node: Any) -> bool:
    return any(a.name == 'kernel_shape' and list(a.ints) == [1, 1] for a in node.attribute)


def _output_convolutions(graph: Any) -> Set[str]:
    """The 1x1 ``Conv`` nodes from which no other ``Conv`` is reached: a detector head's last layers where they are
    pointwise (CenterNet's, SSDLite's), whose outputs are the raw scores and box offsets; cheap to keep float."""
    consumers: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def reaches_conv(start: Any) -> bool:
        stack, seen = [start], {start.name}
        while stack:
            for output in stack.pop().output:
                for nxt in consumers.get(output, []):
                    if nxt.op_type == 'Conv':
                        return True
                    if nxt.name not in seen:
                        seen.add(nxt.name)
                        stack.append(nxt)
        return False

    return {node.name for node in graph.node
            if node.op_type == 'Conv' and _is_pointwise(node) and not reaches_conv(node)}


def _nodes_to_quantize(onnx_model: Any, kind: str) -> Optional[List[str]]:
    """Classifiers and feature extractors: every node onnxruntime can quantize (None). Detectors and
    segmenters: the backbone whole, elsewhere only convolutions and matrix products, so that box decoding,
    NMS and the logits' upsampling stay float. A detector's pointwise output convolutions stay float too: 256
    levels for its raw scores cost CenterNet 1-27 % of its mAP in int8, and keeping them float restored most of
    it at 0.95x the speed (docs/deployment.md)."""
    if kind in ('classification', 'features'):
        return None
    graph = onnx_model.graph
    kept_float = _output_convolutions(graph) if kind == 'detection' else set()
    return [node.name for node in graph.node if node.name not in kept_float
            and (node.name.startswith('/model/backbone/') or node.op_type in _ALWAYS_QUANTIZED)]


def _calibration_feeds(calibration: Iterable[torch.Tensor], kind: str, input_name: str) -> List[dict]:
    feeds = []
    for item in calibration:
        if not isinstance(item, torch.Tensor):
            raise TypeError(f'calibration inputs must be tensors, got {type(item).__name__}')
        array = item.detach().cpu().float().contiguous()
        if kind == 'detection':
            if array.dim() != 3 or array.shape[0] != 3 or not (0 <= array.min() and array.max() <= 1):
                raise ValueError(f'detector calibration inputs are (3, H, W) images with values in [0, 1], got '
                                 f'{tuple(array.shape)} with values {float(array.min()):.3g}..{float(array.max()):.3g}')
        elif array.dim() == 3:
            array = array.unsqueeze(0)
        if kind != 'detection' and (array.dim() != 4 or array.shape[1] != 3):
            raise ValueError(f'{kind} calibration inputs are normalised (3, H, W) images or (B, 3, H, W) batches, '
                             f'got {tuple(item.shape)}')
        if not torch.isfinite(array).all():
            raise ValueError('calibration inputs hold nan or inf values')
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
            :func:`~hardnet_backbones.deploy.export.export_onnx`).
        calibration: model inputs from real data, used to choose the activation ranges: ``(3, H, W)``
            images in [0, 1] for detectors, preprocessed ``(B, 3, H, W)`` or ``(3, H, W)`` tensors otherwise.
        image_size: ``(H, W)`` of the export's example input.
        per_channel: one weight scale per output channel (more accurate, as fast on CPU).

    Raises:
        ImportError: onnx / onnxruntime missing (``pip install hardnet-backbones[export]``).
        ValueError: no calibration inputs, or of the wrong shape.
    """
    require_export_extra()
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
        quantized_path = Path(tmp) / 'int8.onnx'
        quantize_static(str(prepared_path), str(quantized_path), _Reader(feeds), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=nodes)
        write_atomic(path, lambda f: f.write(quantized_path.read_bytes()))
    return path


def quantized_node_count(path: Union[str, Path]) -> int:
    """How many tensors of an ONNX file are quantized (its ``QuantizeLinear`` nodes)."""
    import onnx
    return sum(node.op_type == 'QuantizeLinear' for node in onnx.load(str(path)).graph.node)


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
    if count < 1:
        raise ValueError(f'count must be >= 1, got {count}')
    step = max(1, len(paths) // count)
    chosen = list(paths)[::step][:count]
    if kind in ('classification', 'features'):
        from timm.data import create_transform, resolve_model_data_config
        transform = create_transform(**resolve_model_data_config(model), is_training=False)
        return [transform(read_image(p)) for p in chosen]
    return [image_to_input(read_image(p), kind) for p in chosen]
