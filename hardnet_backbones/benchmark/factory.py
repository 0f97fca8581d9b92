"""The models a benchmark measures, by registry name, with variants (``hardnet68+fused+cl``) and suites."""
import copy
import functools
import re
from typing import Any, Dict, List, Tuple

import torch.nn as nn

from ..inference.trained import load_trained_model
from ..models.registry import DEFAULT_NUM_CLASSES, get_model_entry

__all__ = ['VARIANTS', 'SUITES', 'build_benchmark_model', 'task_of', 'split_variants', 'variant_kwargs', 'modes_for']

# Variants, appended to a model name with '+': measured side by side with the plain model in one run.
VARIANTS = {
    'fused': 'BatchNorm folded into convolutions, dropout removed (inference only)',
    'ckpt': 'set_grad_checkpointing(True) (training memory)',
    'cl': 'channels_last memory format',
    'onnx': 'exported to ONNX and run in onnxruntime (inference only)',
    'int8': "optimize_for_inference(precision='int8'): static int8 ONNX (per-channel, calibrated on the --images, "
            'else on 4 random inputs) run in onnxruntime (inference only; speed only, accuracy needs real '
            'calibration data)',
    'bf16': "optimize_for_inference(precision='bfloat16'): fused, channels_last, bfloat16 autocast with float32 "
            'outputs (inference only; CPUs with AVX512_BF16 or AMX, or CUDA)',
    'os8': 'output stride 8 (segmentation builders with an output_stride argument)',
    'os16': 'output stride 16 (segmentation builders with an output_stride argument)',
    's<N>': 'input size N, e.g. +s416 (detectors with a size argument: SSD, CenterNet)',
}
_SIZE_VARIANT = re.compile(r'^s(\d+)$')


# model -> baseline, per suite (images: 224 for classification, the detector's size, 512 for segmentation)
SUITES: Dict[str, Dict[str, str]] = {
    'classification': {
        'resnet50': 'resnet50', 'hardnet68': 'resnet50', 'hardnet85': 'resnet50',
        'mobilenetv2_100': 'mobilenetv2_100', 'hardnet39ds': 'mobilenetv2_100', 'hardnet68ds': 'mobilenetv2_100',
    },
    'detection': {
        'torchvision:ssd300_vgg16': 'torchvision:ssd300_vgg16', 'ssd300_hardnet68': 'torchvision:ssd300_vgg16',
        'torchvision:ssdlite320_mobilenet_v3_large': 'torchvision:ssdlite320_mobilenet_v3_large',
        'ssdlite320_hardnet39ds': 'torchvision:ssdlite320_mobilenet_v3_large',
    },
    'segmentation': {
        'torchvision:fcn_resnet50': 'torchvision:fcn_resnet50', 'fcn_hardnet68': 'torchvision:fcn_resnet50',
        'torchvision:lraspp_mobilenet_v3_large': 'torchvision:lraspp_mobilenet_v3_large',
        'lraspp_hardnet39ds': 'torchvision:lraspp_mobilenet_v3_large',
    },
    'fchardnet': {
        'fchardnet70': 'fchardnet70', 'fcn_hardnet68': 'fchardnet70', 'lraspp_hardnet39ds': 'fchardnet70',
        'torchvision:lraspp_mobilenet_v3_large': 'fchardnet70',
    },
    'inference': {
        'hardnet68': 'hardnet68', 'hardnet68+fused': 'hardnet68', 'hardnet68+fused+cl': 'hardnet68',
        'hardnet68+onnx': 'hardnet68', 'resnet50': 'hardnet68',
        'hardnet39ds': 'hardnet39ds', 'hardnet39ds+fused': 'hardnet39ds', 'hardnet39ds+onnx': 'hardnet39ds',
        'mobilenetv2_100': 'hardnet39ds',
    },
    'memory': {'hardnet68': 'hardnet68', 'hardnet68+ckpt': 'hardnet68'},
    # the published HarDNet detectors against torchvision's COCO detectors (each at its own default resize)
    'published_detectors': {
        'torchvision:retinanet_resnet50_fpn_v2': 'torchvision:retinanet_resnet50_fpn_v2',
        'centernet_hardnet85': 'torchvision:retinanet_resnet50_fpn_v2',
        'centernet_hardnet85+s416': 'torchvision:retinanet_resnet50_fpn_v2',
        'torchvision:fcos_resnet50_fpn': 'torchvision:retinanet_resnet50_fpn_v2',
        'torchvision:fasterrcnn_resnet50_fpn_v2': 'torchvision:retinanet_resnet50_fpn_v2',
        'torchvision:ssd300_vgg16': 'torchvision:ssd300_vgg16', 'ssd512_hardnet68': 'torchvision:ssd300_vgg16',
    },
    'fpn': {
        'torchvision:fasterrcnn_resnet50_fpn': 'torchvision:fasterrcnn_resnet50_fpn',
        'fasterrcnn_hardnet68_fpn': 'torchvision:fasterrcnn_resnet50_fpn',
        'torchvision:fasterrcnn_mobilenet_v3_large_fpn': 'torchvision:fasterrcnn_mobilenet_v3_large_fpn',
        'fasterrcnn_hardnet39ds_fpn': 'torchvision:fasterrcnn_mobilenet_v3_large_fpn',
        'torchvision:retinanet_resnet50_fpn_v2': 'torchvision:retinanet_resnet50_fpn_v2',
        'retinanet_hardnet68_fpn': 'torchvision:retinanet_resnet50_fpn_v2',
        'torchvision:fcos_resnet50_fpn': 'torchvision:fcos_resnet50_fpn',
        'fcos_hardnet68_fpn': 'torchvision:fcos_resnet50_fpn',
        'torchvision:maskrcnn_resnet50_fpn': 'torchvision:maskrcnn_resnet50_fpn',
        'maskrcnn_hardnet68_fpn': 'torchvision:maskrcnn_resnet50_fpn',
    },
}


def _is_checkpoint(name: str) -> bool:
    return name.endswith(('.pth', '.pt'))


@functools.lru_cache(maxsize=None)
def _trained(path: str) -> Any:
    return load_trained_model(path)


def task_of(name: str) -> str:
    """'classification', 'detection' or 'segmentation': the task of a registry name or a training checkpoint."""
    return _trained(name).task if _is_checkpoint(name) else get_model_entry(name).task


def build_benchmark_model(name: str, **kwargs: Any) -> nn.Module:
    """A randomly initialised model by registry name: ``torchvision:<builder>``, one of our detectors or
    segmenters, or any timm model (``hardnet68``, ``resnet50``, ...); ``kwargs`` go to the builder.
    A path ending in ``.pth`` / ``.pt`` is a training checkpoint of ``tools/train.py``: its trained model
    (a detector's post-processing costs what its real scores make it cost, not what random ones do)."""
    if _is_checkpoint(name):
        return copy.deepcopy(_trained(name).model)
    entry = get_model_entry(name)
    if entry.source == 'torchvision':  # random weights, and the auxiliary head where there is one
        arguments = entry.arguments()
        defaults = {k: v for k, v in (('weights_backbone', None), ('aux_loss', True)) if k in arguments}
        return entry.build(**defaults, **kwargs)
    defaults = {'num_classes': DEFAULT_NUM_CLASSES[entry.task]} if entry.task in DEFAULT_NUM_CLASSES else {}
    return entry.build(**defaults, **kwargs)


def split_variants(name: str) -> Tuple[str, List[str]]:
    """``'hardnet68+fused+cl'`` -> ``('hardnet68', ['fused', 'cl'])``."""
    base, *variants = name.split('+')
    unknown = [v for v in variants if v not in VARIANTS and not _SIZE_VARIANT.match(v)]
    if unknown:
        raise ValueError(f'unknown variant(s) {unknown} in {name!r}; known: {sorted(VARIANTS)}')
    return base, variants


def variant_kwargs(variants: List[str]) -> Dict[str, int]:
    """Builder arguments the variants set: ``os8`` -> ``output_stride=8``, ``s416`` -> ``size=416``."""
    kwargs = {}
    for variant in variants:
        if variant in ('os8', 'os16'):
            kwargs['output_stride'] = int(variant[2:])
        elif _SIZE_VARIANT.match(variant):
            kwargs['size'] = int(_SIZE_VARIANT.match(variant).group(1))
    return kwargs


def modes_for(name: str, train: bool) -> List[str]:
    """Fused, ONNX and int8 variants, and trained checkpoints, are inference-only."""
    base, variants = split_variants(name)
    inference_only = {'fused', 'onnx', 'int8'} & set(variants) or _is_checkpoint(base)
    return ['infer'] + (['train'] if train and not inference_only else [])
