"""The model layer: HarDNet for timm, its detectors and segmenters, and the registry of every model by name.

Needs only torch, torchvision and timm. Importing it registers every builder (see :mod:`.registry`).
"""
from .backbone import WeightsBackbone, create_feature_backbone
from .centernet import CenterNet, CenterNet_HarDNet85_Weights, centernet_hardnet68, centernet_hardnet85
from .fchardnet import FCHarDNet, fchardnet70
from .fpn import HarDNetFPN, hardnet_fpn_backbone
from .fpn_detectors import (
    fasterrcnn_hardnet39ds_320_fpn, fasterrcnn_hardnet39ds_fpn, fasterrcnn_hardnet68_fpn, fcos_hardnet68_fpn,
    maskrcnn_hardnet68_fpn, retinanet_hardnet68_fpn)
from .hardnet import HarDNet, HarDNetCfg, checkpoint_filter_fn, model_cfgs
from .hub import cached_download, load_checkpoint_file, load_weights_file
from .registry import (
    TORCHVISION_PREFIX, ModelEntry, create_model, get_model_entry, list_models, register_model, register_timm_model)
from .segmentation import (
    HarDNetSegmentationBackbone, deeplabv3_hardnet68, fcn_hardnet39ds, fcn_hardnet68, fcn_hardnet68ds, fcn_hardnet85,
    lraspp_hardnet39ds)
from .ssd import SSDFeatureExtractorHarDNet, ssd300_hardnet68, ssdlite320_hardnet39ds, ssdlite320_hardnet68ds
from .ssd512 import SSD512_HarDNet68_Weights, SSD512_HarDNet85_Weights, ssd512_hardnet68, ssd512_hardnet85

__all__ = [
    'HarDNet', 'HarDNetCfg', 'checkpoint_filter_fn', 'model_cfgs', 'FCHarDNet', 'fchardnet70',
    'WeightsBackbone', 'create_feature_backbone', 'cached_download', 'load_checkpoint_file', 'load_weights_file',
    'ModelEntry', 'register_model', 'register_timm_model', 'get_model_entry', 'list_models', 'create_model',
    'TORCHVISION_PREFIX',
    'HarDNetSegmentationBackbone', 'fcn_hardnet39ds', 'fcn_hardnet68ds', 'fcn_hardnet68', 'fcn_hardnet85',
    'deeplabv3_hardnet68', 'lraspp_hardnet39ds',
    'SSDFeatureExtractorHarDNet', 'ssd300_hardnet68', 'ssd512_hardnet68', 'ssd512_hardnet85',
    'ssdlite320_hardnet39ds', 'ssdlite320_hardnet68ds',
    'HarDNetFPN', 'hardnet_fpn_backbone', 'fasterrcnn_hardnet68_fpn', 'fasterrcnn_hardnet39ds_fpn',
    'fasterrcnn_hardnet39ds_320_fpn', 'retinanet_hardnet68_fpn', 'fcos_hardnet68_fpn', 'maskrcnn_hardnet68_fpn',
    'CenterNet', 'CenterNet_HarDNet85_Weights', 'centernet_hardnet85', 'centernet_hardnet68',
    'SSD512_HarDNet68_Weights', 'SSD512_HarDNet85_Weights',
]
