"""ONNX files run by onnxruntime behind the interface of the PyTorch model they came from."""
import collections
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import CheckpointError, MissingExtraError
from .export import KINDS, onnx_input_name

__all__ = ['OnnxRuntimeModel', 'require_export_extra']


def require_export_extra() -> None:
    import importlib.util
    missing = [m for m in ('onnx', 'onnxruntime') if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f'{" and ".join(missing)} not installed: pip install "hardnet-backbones[export]"')


class OnnxRuntimeModel(nn.Module):
    """An ONNX file written by :func:`~hardnet_backbones.deploy.export.export_onnx` or :func:`quantize_to_onnx`, run by
    onnxruntime behind the interface of the PyTorch model it came from.

    ``kind`` decides the interface: classification -> logits tensor; features -> list of maps;
    segmentation -> ``{"out", "aux"}`` dict; detection -> ``model(list of (3, H, W) images)`` returns
    torchvision's list of ``{"boxes", "scores", "labels"}``. Inputs may live on any device; outputs
    come back on the input's device. Inference only (no gradients, no ``targets``).
    """

    def __init__(self, path: Union[str, Path], kind: str, num_threads: Optional[int] = None):
        super().__init__()
        require_export_extra()
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

    @property
    def metadata(self) -> Dict[str, str]:
        """The file's ``metadata_props`` (hardnet-export stores the checkpoint's ``class_names`` there)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def check_classes(self, class_names: Sequence[str], source: str) -> None:
        """Refuse a file exported from another model than ``source`` (whose classes are ``class_names``): by the
        class names hardnet-export stored, else (files without them) by a segmenter's number of output channels.

        Raises:
            CheckpointError: naming both class lists or counts.
        """
        stored = self.metadata.get('class_names')
        if stored is not None:
            if json.loads(stored) != list(class_names):
                raise CheckpointError(f'{self.path} was exported from a model of the classes {json.loads(stored)}, '
                                      f'but {source} has {list(class_names)}; export it again from {source}')
            return
        if self.kind == 'segmentation':  # the class dimension is symbolic after a Resize: ask a 32x32 input
            channels = self._run(torch.zeros(1, 3, 32, 32))[0].shape[1]
            if channels != len(class_names):
                raise CheckpointError(f'{self.path} predicts {channels} classes, but {source} has '
                                      f'{len(class_names)}; export it again from {source}')

    def _run(self, x: torch.Tensor) -> List[torch.Tensor]:
        outputs = self.session.run(None, {self.input_name: x.detach().cpu().float().contiguous().numpy()})
        return [torch.from_numpy(np.asarray(o)).to(x.device) for o in outputs]

    def forward(self, x: Union[torch.Tensor, Sequence[torch.Tensor]]) -> Any:
        if self.kind == 'detection':
            detections = []
            for image in x:  # boxes, scores, labels (and a Mask R-CNN's masks)
                detections.append(dict(zip(self.output_names, self._run(image))))
            return detections
        outputs = self._run(x)
        if self.kind == 'classification':
            return outputs[0]
        if self.kind == 'features':
            return outputs
        return collections.OrderedDict(zip(self.output_names, outputs))

    def extra_repr(self) -> str:
        return f'path={str(self.path)!r}, kind={self.kind!r}'
