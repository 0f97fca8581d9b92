"""ONNX and TorchScript export of classifiers, feature extractors, SSD detectors and segmenters,
each validated against PyTorch (onnxruntime for ONNX).

ONNX goes through ``torch.onnx.export(..., dynamo=False)`` (the TorchScript-based exporter): it
exports torchvision's detection post-processing (top-k, NMS) with dynamic image sizes, and is
fast. Inputs: classification / features / segmentation ``images`` ``(B, 3, H, W)`` with dynamic
batch and spatial size; detection one ``image`` ``(3, H, W)`` in [0, 1] with dynamic size.
"""
import contextlib
import copy
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..utils.files import write_atomic

__all__ = ['KINDS', 'model_kind', 'check_model_kind', 'onnx_input_name', 'export_onnx', 'write_onnx_metadata',
           'export_torchscript', 'validate_onnx', 'validate_torchscript', 'output_names', 'with_score_threshold']

KINDS = ('classification', 'features', 'detection', 'segmentation')


class _ListToTuple(nn.Module):
    """timm feature extractors return lists; exporters want tuples with fixed names."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.model(x))


class _DictToTuple(nn.Module):
    """Segmentation models return ``{"out", "aux"}``; export them as ordered outputs."""

    def __init__(self, model: nn.Module, keys: Sequence[str]):
        super().__init__()
        self.model = model
        self.keys = list(keys)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in self.keys)


class _SingleImageDetector(nn.Module):
    """One ``(3, H, W)`` image in, ``(boxes, scores, labels[, masks])`` out."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model([image])[0]
        return tuple(out[k] for k in self.names)


def _example(kind: str, image_size: Tuple[int, int], batch: int = 1) -> torch.Tensor:
    h, w = image_size
    if kind == 'detection':
        return torch.rand(3, h, w)
    return torch.randn(batch, 3, h, w)


def model_kind(model: nn.Module) -> str:
    """What ``model`` is, as the ``kind`` arguments name it: a torchvision detector ('detection'), a segmenter
    (torchvision's FCN / DeepLabV3 / LR-ASPP, FC-HarDNet: 'segmentation'), a timm feature extractor ('features')
    or, by elimination, a classifier."""
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.segmentation import FCN, LRASPP, DeepLabV3

    from ..models.centernet import CenterNet
    from ..models.fchardnet import FCHarDNet
    if isinstance(model, (GeneralizedRCNN, RetinaNet, FCOS, SSD, CenterNet)):
        return 'detection'
    if isinstance(model, (FCN, DeepLabV3, LRASPP, FCHarDNet)):
        return 'segmentation'
    if hasattr(model, 'feature_info') and not hasattr(model, 'get_classifier'):
        return 'features'
    return 'classification'


def _is_image_classifier(model: nn.Module) -> bool:
    return hasattr(model, 'get_classifier') or any(isinstance(m, nn.Conv2d) for m in model.modules())


def check_model_kind(model: nn.Module, kind: str) -> None:
    """Refuse a ``kind`` that is not what ``model`` is (a classifier exported as a detector would be exported with
    the wrong inputs and outputs, or come back unchanged)."""
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    if not isinstance(model, nn.Module):
        raise ValueError(f'expected a torch.nn.Module, got {type(model).__name__}')
    actual = model_kind(model)
    if actual == 'classification' and not _is_image_classifier(model):
        raise ValueError(f'{type(model).__name__} is not an image model (no 2-D convolution, not a timm classifier): '
                         f'this takes classifiers, timm feature extractors, detectors and segmenters')
    if actual != kind:
        raise ValueError(f'{type(model).__name__} is a {actual} model, not {kind}: pass kind={actual!r}')


def onnx_input_name(kind: str) -> str:
    """The name of an exported file's input: ``image`` for detectors (one image), ``images`` otherwise (a batch)."""
    return 'image' if kind == 'detection' else 'images'


def output_names(model: nn.Module, kind: str, image_size: Tuple[int, int]) -> List[str]:
    """Names of the exported outputs, in order."""
    if kind == 'classification':
        return ['logits']
    if kind == 'detection':  # Mask R-CNN adds a mask per detection
        has_masks = getattr(getattr(model, 'roi_heads', None), 'mask_head', None) is not None
        return ['boxes', 'scores', 'labels'] + (['masks'] if has_masks else [])
    if kind == 'features':
        return [f'features_{r}' for r in model.feature_info.reduction()]
    with torch.no_grad():
        return list(model.eval()(_example(kind, image_size)).keys())


def _wrap(model: nn.Module, kind: str, names: Sequence[str]) -> nn.Module:
    if kind == 'features':
        return _ListToTuple(model)
    if kind == 'segmentation':
        return _DictToTuple(model, names)
    if kind == 'detection':
        return _SingleImageDetector(model, names)
    return model


def export_onnx(
        model: nn.Module,
        path: Union[str, Path],
        kind: str,
        image_size: Tuple[int, int] = (224, 224),
        opset: int = 17,
        dynamic: bool = True,
) -> Path:
    """Export ``model`` (eval mode) to ONNX.

    Args:
        kind: 'classification', 'features', 'detection' or 'segmentation'.
        image_size: ``(H, W)`` of the example input (pixels).
        opset: ONNX opset, at least 17.
        dynamic: dynamic batch (not for detection) and spatial size.
    """
    check_model_kind(model, kind)
    if opset < 17:
        raise ValueError(f'opset must be >= 17, got {opset}')
    model = model.eval()
    names = output_names(model, kind, image_size)
    wrapped = _wrap(model, kind, names).eval()
    input_name = onnx_input_name(kind)
    dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None
    if dynamic:
        if kind == 'detection':
            dynamic_axes = {input_name: {1: 'height', 2: 'width'}, **{n: {0: 'detections'} for n in names}}
            if 'masks' in names:
                dynamic_axes['masks'] = {0: 'detections', 2: 'height', 3: 'width'}
        else:
            dynamic_axes = {input_name: {0: 'batch', 2: 'height', 3: 'width'}}
            for n in names:
                dynamic_axes[n] = {0: 'batch'} if kind == 'classification' else {0: 'batch', 2: f'{n}_h', 3: f'{n}_w'}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), _quiet_exporter():
        write_atomic(path, lambda f: torch.onnx.export(
            wrapped, (_example(kind, image_size),), f, dynamo=False, opset_version=opset,
            input_names=[input_name], output_names=names, dynamic_axes=dynamic_axes))
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the notes the exporters print by design on every torchvision model (the tracer's constants and
    tensor copies, TorchScript's deprecation notices, a scripted detector's return contract): they say nothing
    about this export, which is validated against PyTorch instead. Other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        # aten::index: torchvision's detectors index only with what topk, where and NMS return, never negative
        # values, so the exporter's caveat does not apply (and the detections are compared after every export)
        for message in (r'.*(legacy TorchScript-based ONNX export|dynamo=False|torch\.onnx\.export|Constant folding)',
                        r'Exporting aten::index operator of advanced indexing',
                        r'To copy construct from a tensor', r'`torch\.jit\.\w+` is deprecated',
                        r'\w+ always returns a \(Losses, Detections\) tuple in scripting'):
            warnings.filterwarnings('ignore', message=message)
        yield


def write_onnx_metadata(path: Union[str, Path], metadata: Dict[str, str]) -> None:
    """Store ``metadata`` (e.g. the checkpoint's ``class_names`` as JSON) in the ONNX file's ``metadata_props``,
    where :class:`~hardnet_backbones.deploy.OnnxRuntimeModel` reads it back to refuse a file of another model."""
    import onnx
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    write_atomic(path, lambda f: f.write(model.SerializeToString()))


def _reference(model: nn.Module, kind: str, x: torch.Tensor, names: Sequence[str]) -> List[np.ndarray]:
    with torch.no_grad():
        out = _wrap(model.eval(), kind, names)(x)
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out]


def _compare_detections(got: Sequence[np.ndarray], expected: Sequence[np.ndarray], atol: float) -> Dict[str, Any]:
    # post-processing keeps the same boxes in the same order when the scores agree
    boxes, scores, labels = got[:3]
    ref_boxes, ref_scores, ref_labels = expected[:3]
    n = min(len(scores), len(ref_scores), 20)
    diff = float(np.abs(boxes[:n] - ref_boxes[:n]).max()) if n else 0.0
    has_masks = len(got) > 3
    if has_masks and n:  # Mask R-CNN: mask probabilities, in [0, 1]
        diff = max(diff, float(np.abs(got[3][:n] - expected[3][:n]).max()))
    ok = (len(scores) == len(ref_scores) and bool(np.array_equal(labels[:n], ref_labels[:n]))
          and diff <= max(atol, 1e-2))
    return dict(max_abs_diff=diff, detections=int(len(scores)), reference_detections=int(len(ref_scores)), ok=ok,
                compared_boxes=n, compared_masks=n if has_masks else 0)


def _merge_detection_checks(checks: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One verdict over several images; with no detection compared on any of them, no verdict (``ok`` False)."""
    merged = dict(max_abs_diff=max(c['max_abs_diff'] for c in checks), images=len(checks),
                  ok=all(c['ok'] for c in checks))
    for key in ('detections', 'reference_detections', 'compared_boxes', 'compared_masks'):
        merged[key] = sum(c[key] for c in checks)
    if merged['compared_boxes'] == 0:
        merged['ok'] = False
        merged['reason'] = (f'no detection on the {len(checks)} validation image(s), so nothing was compared; '
                            f'validate on images with objects (hardnet-export --validation-images)')
    return merged


def with_score_threshold(model: nn.Module, threshold: float) -> Optional[nn.Module]:
    """A copy of a torchvision detector that keeps detections scoring ``threshold`` or more (None for a model
    without a score threshold): to validate an export of a model that detects nothing yet at its own threshold."""
    holder = getattr(model, 'roi_heads', model)  # R-CNN keeps it in its RoI heads; SSD, RetinaNet, FCOS in the model
    for name in ('score_thresh', 'box_score_thresh'):
        if hasattr(holder, name):
            lowered = copy.deepcopy(model)
            setattr(getattr(lowered, 'roi_heads', lowered), name, threshold)
            return lowered
    return None


def _compare(kind: str, got: Sequence[np.ndarray], expected: Sequence[np.ndarray], atol: float) -> Dict[str, Any]:
    if kind == 'detection':
        return _compare_detections(got, expected, atol)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, expected))
    shapes_ok = all(a.shape == b.shape for a, b in zip(got, expected))
    return dict(max_abs_diff=diff, ok=shapes_ok and diff <= atol)


def _detection_inputs(images: Optional[Sequence[torch.Tensor]], image_size: Tuple[int, int]) -> List[torch.Tensor]:
    if images:
        return list(images)
    torch.manual_seed(1)
    return [_example('detection', image_size)]


def validate_onnx(
        path: Union[str, Path],
        model: nn.Module,
        kind: str,
        image_size: Tuple[int, int],
        atol: float = 1e-4,
        batch: int = 2,
        images: Optional[Sequence[torch.Tensor]] = None,
) -> Dict[str, Any]:
    """Run the ONNX file in onnxruntime and PyTorch on the same input (of another batch size than the
    export example, when dynamic) and compare; ``ok`` is True within ``atol``.

    Detectors are compared on ``images`` (``(3, H, W)`` in [0, 1], real ones where the model finds objects; a random
    example otherwise): boxes, labels and masks of every image, counted in ``compared_boxes`` / ``compared_masks``.
    When no image gives a detection nothing can be compared, and ``ok`` is False with a ``reason``.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = output_names(model, kind, image_size)
    input_name = session.get_inputs()[0].name
    if kind == 'detection':
        return _merge_detection_checks([
            _compare(kind, session.run(names, {input_name: x.numpy()}), _reference(model, kind, x, names), atol)
            for x in _detection_inputs(images, image_size)])
    torch.manual_seed(1)
    x = _example(kind, image_size, batch)
    got = session.run(names, {input_name: x.numpy()})
    return _compare(kind, got, _reference(model, kind, x, names), atol)


def export_torchscript(model: nn.Module, path: Union[str, Path], kind: str,
                       image_size: Tuple[int, int] = (224, 224)) -> Path:
    """Save a TorchScript module: scripted for classifiers, detectors and segmenters (control flow kept),
    traced for timm feature extractors.

    Scripted detectors and segmenters keep torchvision's contracts: ``module([image])`` returns
    ``(losses, detections)``, ``module(images)`` returns ``{"out", "aux"}``.
    """
    model = model.eval()
    names = output_names(model, kind, image_size)
    wrapped = model if kind in ('detection', 'segmentation') else _wrap(model, kind, names).eval()
    with _quiet_exporter():
        if kind == 'features':
            with torch.no_grad():
                module = torch.jit.trace(wrapped, (_example(kind, image_size),))
        else:
            module = torch.jit.script(wrapped)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: torch.jit.save(module, f))
    return path


def validate_torchscript(path: Union[str, Path], model: nn.Module, kind: str, image_size: Tuple[int, int],
                         atol: float = 1e-4, images: Optional[Sequence[torch.Tensor]] = None) -> Dict[str, Any]:
    """Load the TorchScript file and compare it with ``model`` on the same input (detectors: on ``images``, as
    :func:`validate_onnx` does)."""
    with _quiet_exporter():
        module = torch.jit.load(str(path))
    names = output_names(model, kind, image_size)
    if kind == 'detection':
        checks = []
        for x in _detection_inputs(images, image_size):
            with torch.no_grad(), _quiet_exporter():
                detections = module([x])[1][0]
            got = [detections[n].numpy() for n in names]
            checks.append(_compare(kind, got, _reference(model, kind, x, names), atol))
        return _merge_detection_checks(checks)
    x = _example(kind, image_size, batch=1)
    with torch.no_grad(), _quiet_exporter():
        if kind == 'segmentation':
            maps = module(x)
            out = tuple(maps[n] for n in names)
        else:
            out = module(x)
    out = out if isinstance(out, tuple) else (out,)
    return _compare(kind, [o.numpy() for o in out], _reference(model, kind, x, names), atol)
