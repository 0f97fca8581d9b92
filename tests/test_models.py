"""HarDNet as timm models: architecture, classification API, features, checkpoints."""
import math

import pytest
import timm
import torch

from hardnet_backbones import checkpoint_filter_fn, load_checkpoint_file

from .helpers import MODEL_NAMES, MODEL_PARAMS, randomize_bn_stats
from .reference_hardnet import RefHarDNet

# docs/architecture.md and the paper: parameters in millions, 1000 classes
PARAMS_M = {'hardnet39ds': 3.49, 'hardnet68ds': 4.18, 'hardnet68': 17.57, 'hardnet85': 36.67}
FEATURE_CHS = {
    'hardnet39ds': [48, 96, 320, 640, 1024],
    'hardnet68ds': [64, 128, 320, 640, 1024],
    'hardnet68': [64, 128, 320, 640, 1024],
    'hardnet85': [96, 192, 320, 720, 1280],
}
REDUCTIONS = [2, 4, 8, 16, 32]


def _create(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs)


def test_registered_in_timm():
    assert timm.list_models('hardnet*') == sorted(MODEL_NAMES)
    assert set(timm.list_models('hardnet*', pretrained=True)) == {f'{n}.orig_in1k' for n in MODEL_NAMES}
    cfg = timm.models.get_pretrained_cfg('hardnet68')
    assert cfg.url.endswith('hardnet68-5d684880.pth')
    assert cfg.input_size == (3, 224, 224) and cfg.crop_pct == 0.875 and cfg.interpolation == 'bilinear'
    assert cfg.first_conv == 'features.stem_conv1.conv' and cfg.classifier == 'classifier'


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_param_count_and_logits(name):
    model = _create(name).eval()
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == PARAMS_M[name]
    assert model.num_features == model.head_hidden_size == FEATURE_CHS[name][-1]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
        feats = model.forward_features(torch.randn(1, 3, 97, 131))
        assert feats.shape == (1, FEATURE_CHS[name][-1], 4, 5)
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)


@pytest.mark.parametrize('name', MODEL_PARAMS)
@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3, 4), (1, 3), (4,)])
def test_features_only_matches_feature_info(name, out_indices):
    model = _create(name, features_only=True, out_indices=out_indices).eval()
    assert model.feature_info.channels() == [FEATURE_CHS[name][i] for i in out_indices]
    assert model.feature_info.reduction() == [REDUCTIONS[i] for i in out_indices]
    h, w = 97, 131
    with torch.no_grad():
        feats = model(torch.randn(1, 3, h, w))
    assert [tuple(f.shape) for f in feats] == [
        (1, c, math.ceil(h / r), math.ceil(w / r))
        for c, r in zip(model.feature_info.channels(), model.feature_info.reduction())]


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_forward_intermediates_equal_features_only(name):
    x = torch.randn(1, 3, 64, 96)
    model = _create(name).eval()
    features = _create(name, features_only=True).eval()
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        expected = features(x)
        assert len(intermediates) == 5
        for a, b in zip(intermediates, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        early = model.forward_intermediates(x, indices=[1, 2], stop_early=True, intermediates_only=True)
        assert [torch.equal(a, b) for a, b in zip(early, expected[1:3])] == [True, True]
        assert len(model.forward_intermediates(x, indices=2, intermediates_only=True)) == 2
        kept = model.prune_intermediate_layers([0, 2])
        assert kept == [0, 2]
        pruned = model.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
        assert torch.equal(pruned[1], expected[2])
        assert model.num_features == FEATURE_CHS[name][2]


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_backward_reaches_every_parameter(name):
    model = _create(name, num_classes=5)
    model(torch.randn(2, 3, 64, 64)).logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_reset_classifier(name):
    model = _create(name).eval()
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.num_features)
    model.reset_classifier(3, global_pool='catavgmax')
    assert model.head_hidden_size == 2 * model.num_features
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_group_matcher_covers_all_parameters():
    from timm.models import group_parameters
    model = _create('hardnet68')
    groups = group_parameters(model, model.group_matcher(coarse=True))
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    # stem, 5 stages, head
    assert len(groups) == 7


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_grad_checkpointing_same_outputs_and_grads(name):
    x = torch.randn(2, 3, 64, 64)
    model = _create(name, num_classes=4).train()
    torch.manual_seed(1)
    out_ref = model(x)
    out_ref.square().sum().backward()
    grads_ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    out = model(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, out_ref)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads_ref[n], msg=n)


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_published_checkpoint_loads_exactly(name, published_keys, tmp_path):
    torch.manual_seed(0)
    reference = RefHarDNet(name)
    randomize_bn_stats(reference)
    state = reference.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == published_keys[name]
    path = tmp_path / f'{name}.pth'
    # the published files may lack num_batches_tracked (older PyTorch)
    torch.save({k: v for k, v in state.items() if not k.endswith('num_batches_tracked')}, path)

    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    remapped = checkpoint_filter_fn(dict(state), model)
    ours = model.state_dict()
    for key, value in remapped.items():
        assert torch.equal(ours[key], value), key
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_published_weights_into_adapted_models(name, tmp_path):
    torch.manual_seed(0)
    reference = RefHarDNet(name).eval()
    randomize_bn_stats(reference)
    path = tmp_path / 'w.pth'
    torch.save(reference.state_dict(), path)
    overlay = dict(file=str(path))
    x = torch.randn(1, 3, 64, 64)

    features = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, features_only=True)
    with torch.no_grad():
        stem = reference.base[1](reference.base[0](x))
        torch.testing.assert_close(features.eval()(x)[0], stem)

    ten = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10)
    assert ten.get_classifier().out_features == 10
    assert torch.equal(ten.features.transition1.conv.weight, features.features_transition1.conv.weight)

    gray = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, in_chans=1)
    first = reference.base[0].conv.weight
    torch.testing.assert_close(gray.features.stem_conv1.conv.weight, first.sum(1, keepdim=True))


def test_mismatched_checkpoints_fail_clearly(published_keys):
    model = _create('hardnet39ds')
    good = {k: torch.zeros(v) for k, v in published_keys['hardnet39ds'].items()}

    missing = dict(good)
    del missing['base.4.conv.weight']
    with pytest.raises(RuntimeError, match=r'missing keys: features\.transition1\.conv\.weight'):
        checkpoint_filter_fn(missing, model)

    wrong_shape = dict(good, **{'base.4.conv.weight': torch.zeros(8, 8, 1, 1)})
    with pytest.raises(RuntimeError, match=r'shape mismatch: features\.transition1\.conv\.weight \(8, 8, 1, 1\)'):
        checkpoint_filter_fn(wrong_shape, model)

    extra = dict(good, **{'base.99.conv.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match=r'base\.99\.conv\.weight'):
        checkpoint_filter_fn(extra, model)

    other_variant = {k: torch.zeros(v) for k, v in published_keys['hardnet68'].items()}
    with pytest.raises((RuntimeError, KeyError)):
        checkpoint_filter_fn(other_variant, model)


def test_corrupt_checkpoint_file_fails_clearly(tmp_path):
    path = tmp_path / 'broken.pth'
    torch.save(_create('hardnet39ds').state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match='broken.pth'):
        load_checkpoint_file(path)


def test_our_own_format_round_trips(tmp_path):
    model = _create('hardnet68ds', num_classes=3)
    path = tmp_path / 'ours.pth'
    torch.save({'model': {f'module.{k}': v for k, v in model.state_dict().items()}, 'epoch': 3}, path)
    loaded = timm.create_model('hardnet68ds', num_classes=3, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=3))
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.slow
@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_torchscript_matches_eager(name):
    model = _create(name).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = _create('hardnet39ds').eval()
    compiled = torch.compile(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def test_meta_device_construction():
    model = _create('hardnet68', device='meta')
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize('shape, message', [
    ((1, 4, 64, 64), r'expects input of shape \(B, 3, H, W\), got \[1, 4, 64, 64\]'),
    ((1, 3, 16, 64), 'Input 16x64 is too small'),
    ((3, 64, 64), r'got \[3, 64, 64\]'),
])
def test_bad_input_is_rejected(shape, message):
    model = _create('hardnet39ds').eval()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))
    with pytest.raises(ValueError, match=message):
        model.forward_intermediates(torch.randn(*shape))
