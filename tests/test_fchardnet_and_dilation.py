"""FC-HarDNet-70 exactness, dilated output strides, and interoperability with timm-encoder clients."""
import math

import pytest
import timm
import torch

from hardnet_backbones.models import create_model
from hardnet_backbones.models.fchardnet import FCHarDNet, fchardnet70, fchardnet_checkpoint_filter

from .helpers import MODEL_PARAMS, randomize_bn_stats
from .reference_fchardnet import RefFCHarDNet
from .reference_hardnet import RefHarDNet


def test_fchardnet70_matches_the_original_layout_exactly(tmp_path):
    import json

    from .conftest import KEYS_JSON
    keys = json.loads((KEYS_JSON.parent / 'fchardnet70_checkpoint_keys.json').read_text())['keys']
    torch.manual_seed(0)
    reference = RefFCHarDNet(19).eval()
    randomize_bn_stats(reference)
    assert {k: list(v.shape) for k, v in reference.state_dict().items()} == keys
    path = tmp_path / 'fchardnet70.pth'
    torch.save({k: v for k, v in reference.state_dict().items() if not k.endswith('num_batches_tracked')}, path)
    model = fchardnet70(num_classes=19, weights=path).eval()
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 4.12
    remapped = fchardnet_checkpoint_filter(reference.state_dict(), model)
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in remapped.items())
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        torch.testing.assert_close(model(x)['out'], reference(x), rtol=1e-5, atol=1e-5)


def test_fchardnet70_encoder_only_checkpoint_and_errors(tmp_path):
    torch.manual_seed(0)
    reference = RefFCHarDNet(19)
    petite = tmp_path / 'hardnet_petite_base.pth'
    torch.save({k: v for k, v in reference.state_dict().items() if k.startswith('base.')}, petite)
    model = fchardnet70(num_classes=5, weights_backbone=petite)
    assert torch.equal(model.encoder.block3.layers[2].conv.weight, reference.base[10].layers[2].conv.weight)
    assert model.classifier.out_channels == 5
    broken = {k: v for k, v in reference.state_dict().items() if 'denseBlocksUp.1' not in k}
    with pytest.raises(RuntimeError, match=r'missing keys: decoder_blocks\.1\.layers'):
        fchardnet_checkpoint_filter(broken, FCHarDNet(19))
    with pytest.raises(RuntimeError, match=r'shape mismatch: classifier.weight \(19, 48, 1, 1\) vs model \(5, 48'):
        fchardnet_checkpoint_filter(reference.state_dict(), FCHarDNet(5))
    with pytest.raises(ValueError, match='No download URL'):
        fchardnet70(weights_backbone='DEFAULT')


@pytest.mark.slow
def test_fchardnet70_trains_at_small_non_square_size():
    torch.manual_seed(0)
    model = create_model('fchardnet70', num_classes=3).train()
    x = torch.rand(2, 3, 64, 96)
    target = (x[:, 0] > 0.5).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        out = model(x)['out']
        assert out.shape == (2, 3, 64, 96)
        loss = torch.nn.functional.cross_entropy(out, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match='Input 16x64 is too small: FC-HarDNet needs at least 32x32'):
        model(torch.rand(1, 3, 16, 64))


@pytest.mark.parametrize('name', MODEL_PARAMS)
@pytest.mark.parametrize('output_stride', [8, 16])
def test_output_stride_dilates_and_keeps_published_weights(name, output_stride, tmp_path):
    torch.manual_seed(0)
    reference = RefHarDNet(name).eval()
    path = tmp_path / 'w.pth'
    torch.save(reference.state_dict(), path)
    model = timm.create_model(name, features_only=True, output_stride=output_stride, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    expected = [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    assert model.feature_info.reduction() == expected
    h, w = 64, 96
    with torch.no_grad():
        feats = model(torch.randn(1, 3, h, w))
    assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(h / r), math.ceil(w / r)) for r in expected]
    plain = timm.create_model(name, features_only=True)
    assert [p.shape for p in model.parameters()] == [p.shape for p in plain.parameters()]
    assert torch.equal(model.features_transition1.conv.weight, reference.base[4].conv.weight)
    dilated = [m.dilation for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert max(d[0] for d in dilated) == 32 // output_stride


def test_output_stride_leaves_the_earlier_levels_unchanged():
    """Dilation starts after the requested stride: with the same weights, the stride-16 map of an
    output-stride-16 model equals the undilated model's."""
    torch.manual_seed(0)
    plain = timm.create_model('hardnet68', features_only=True, out_indices=(3,)).eval()
    torch.manual_seed(0)
    dilated = timm.create_model('hardnet68', features_only=True, out_indices=(3,), output_stride=16).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], dilated(x)[0])


def test_segmentation_models_pytorch_encoder():
    smp = pytest.importorskip('segmentation_models_pytorch')
    model = smp.DeepLabV3Plus(encoder_name='tu-hardnet68', encoder_weights=None, encoder_output_stride=16, classes=3)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 96, 128)).shape == (1, 3, 96, 128)
