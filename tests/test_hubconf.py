"""torch.hub on this repository (``source='local'``, as a checkout is loaded): every entry point, keyword arguments
passed through, pretrained weights from a local file, one clear error offline."""
import importlib.util

import pytest
import torch

from hardnet_backbones.errors import DownloadError
from hardnet_backbones.models import list_models
from tests.helpers import MODEL_NAMES, ROOT

from .test_hub_and_classify import _published_file


def _hubconf():
    """hubconf as torch.hub imports it (torch 2.14's hub.list / hub.help take GitHub repositories only)."""
    spec = importlib.util.spec_from_file_location('hubconf', ROOT / 'hubconf.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entrypoints(hubconf):
    return sorted(f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith('_'))


def test_every_registered_model_is_an_entry_point_with_a_docstring():
    hubconf = _hubconf()
    assert hubconf.dependencies == ['torch', 'torchvision', 'timm']
    assert _entrypoints(hubconf) == sorted(list_models())
    for name in _entrypoints(hubconf):
        assert len((getattr(hubconf, name).__doc__ or '').strip()) > 40, name
    assert 'published top-1 / top-5 76.48 / 93.01 %' in hubconf.hardnet68.__doc__


def test_pretrained_body_with_a_new_head_through_torch_hub(tmp_path):
    source, _ = _published_file(tmp_path)
    model = torch.hub.load(str(ROOT), 'hardnet39ds', source='local', pretrained=True, num_classes=10,
                           pretrained_cfg_overlay=dict(file=str(source)))
    published = torch.load(source, weights_only=True)
    assert model.classifier.out_features == 10
    assert torch.equal(model.features.stem_conv1.conv.weight, published['base.0.conv.weight'])


@pytest.mark.parametrize('name', MODEL_NAMES[:2])
def test_features_only_through_torch_hub(name):
    backbone = torch.hub.load(str(ROOT), name, source='local', features_only=True, out_indices=(3, 4))
    assert backbone.feature_info.reduction() == [16, 32]
    assert [f.shape[1] for f in backbone(torch.randn(1, 3, 64, 64))] == backbone.feature_info.channels()


def test_detection_and_segmentation_builders_through_torch_hub():
    detector = torch.hub.load(str(ROOT), 'ssdlite320_hardnet39ds', source='local', num_classes=3).eval()
    assert set(detector([torch.rand(3, 64, 64)])[0]) == {'boxes', 'scores', 'labels'}
    segmenter = torch.hub.load(str(ROOT), 'lraspp_hardnet39ds', source='local', num_classes=4).eval()
    assert segmenter(torch.randn(1, 3, 64, 64))['out'].shape == (1, 4, 64, 64)


def test_pretrained_offline_without_a_cached_copy_is_one_clear_error(tmp_path):
    missing = (tmp_path / 'hardnet39ds-0e6c6fa9.pth').as_uri()
    with pytest.raises(DownloadError, match='Could not download .*Without network access, fetch the file'):
        torch.hub.load(str(ROOT), 'hardnet39ds', source='local', pretrained=True,
                       pretrained_cfg_overlay=dict(url=missing), cache_dir=str(tmp_path / 'cache'))
