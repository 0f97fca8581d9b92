"""HarDNet backbones for timm and torchvision.

Importing this package registers ``hardnet39ds``, ``hardnet68ds``, ``hardnet68`` and ``hardnet85``
with timm, so ``timm.create_model("hardnet68", pretrained=True)`` works afterwards, and every
detector and segmenter with the project's model registry (:mod:`hardnet_backbones.models`).
"""
from .models import (
    HarDNet, HarDNetCfg, cached_download, checkpoint_filter_fn, create_model, get_model_entry, list_models,
    load_checkpoint_file, model_cfgs)

__version__ = '0.3.0'

__all__ = ['HarDNet', 'HarDNetCfg', 'checkpoint_filter_fn', 'model_cfgs', 'cached_download', 'load_checkpoint_file',
           'create_model', 'get_model_entry', 'list_models', 'load_trained_model', 'TrainedModel']


def __getattr__(name: str):
    """``load_trained_model`` / ``TrainedModel`` on first use: the model layer alone imports nothing more."""
    if name in ('load_trained_model', 'TrainedModel'):
        from .inference import trained
        return getattr(trained, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
