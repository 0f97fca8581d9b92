"""HarDNet backbones for timm and torchvision.

Importing this package registers ``hardnet39ds``, ``hardnet68ds``, ``hardnet68`` and ``hardnet85``
with timm, so ``timm.create_model("hardnet68", pretrained=True)`` works afterwards.
"""
from .hardnet import HarDNet, HarDNetCfg, checkpoint_filter_fn, model_cfgs
from .hub import cached_download, load_checkpoint_file

__version__ = '0.2.0'

__all__ = ['HarDNet', 'HarDNetCfg', 'checkpoint_filter_fn', 'model_cfgs', 'cached_download', 'load_checkpoint_file',
           'load_trained_model', 'TrainedModel']


def __getattr__(name: str):
    """``load_trained_model`` / ``TrainedModel`` on first use: the timm models alone import nothing more."""
    if name in ('load_trained_model', 'TrainedModel'):
        from . import tasks
        return getattr(tasks, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
