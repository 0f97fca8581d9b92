"""Ecosystem interop: torch.fx (torchvision and timm feature extraction), torch.export, and the same clear
input errors from every entry point."""
import pytest
import timm
import torch
from torch.export import Dim
from torchvision.models.feature_extraction import create_feature_extractor

from hardnet_backbones.models import create_model

from .helpers import MODEL_PARAMS, randomize_bn_stats


def _eval_model(name, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    randomize_bn_stats(model)
    return model


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_torchvision_fx_feature_extractor_equals_eager_features(name):
    model = _eval_model(name)
    taps = [info['module'] for info in model.feature_info]
    extractor = create_feature_extractor(model, return_nodes={f'{m}.relu': str(i) for i, m in enumerate(taps)})
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        traced = list(extractor(x).values())
        eager = model.forward_intermediates(x, intermediates_only=True)
    assert len(traced) == len(eager) == 5
    for a, b in zip(traced, eager):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match='too small'):  # the traced graph keeps the input check
        extractor(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_timm_fx_features_equal_the_default_feature_class(name):
    torch.manual_seed(0)
    getter = timm.create_model(name, features_only=True, out_indices=(1, 3, 4)).eval()
    torch.manual_seed(0)  # the same weights
    fx = timm.create_model(name, features_only=True, out_indices=(1, 3, 4), feature_cls='fx').eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(fx(x), getter(x)):
            torch.testing.assert_close(a, b)
    assert fx.feature_info.channels() == getter.feature_info.channels()


@pytest.mark.parametrize('builder', ['fcn_hardnet39ds', 'lraspp_hardnet39ds', 'ssdlite320_hardnet39ds'])
def test_segmentation_and_detection_backbones_trace(builder):
    torch.manual_seed(0)
    backbone = create_model(builder, num_classes=3).backbone.eval()
    traced = torch.fx.symbolic_trace(backbone)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(traced(x).values(), backbone(x).values()):
            torch.testing.assert_close(a, b)


@pytest.mark.slow
@pytest.mark.parametrize('features_only', [False, True], ids=['classifier', 'features_only'])
def test_torch_export_with_dynamic_batch_and_size(features_only):
    model = _eval_model('hardnet39ds', features_only=features_only)
    # from 33 px: at exactly 32 px the last map is 1x1, a size torch.export specialises on
    batch, height, width = Dim('batch', min=1, max=64), Dim('height', min=33, max=2048), Dim('width', min=33, max=2048)
    exported = torch.export.export(model, (torch.randn(2, 3, 64, 96),),
                                   dynamic_shapes={'x': {0: batch, 2: height, 3: width}})
    x = torch.randn(3, 3, 97, 131)  # other batch, odd sizes
    with torch.no_grad():
        got, expected = exported.module()(x), model(x)
    for a, b in zip(got if features_only else [got], expected if features_only else [expected]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _entry_points():
    return {
        'classifier': lambda: timm.create_model('hardnet39ds').eval(),
        'features_only': lambda: timm.create_model('hardnet39ds', features_only=True).eval(),
        'fcn': lambda: create_model('fcn_hardnet39ds', num_classes=3).eval(),
        'lraspp': lambda: create_model('lraspp_hardnet39ds', num_classes=3).eval(),
        'fchardnet70': lambda: create_model('fchardnet70', num_classes=3).eval(),
    }


@pytest.mark.parametrize('entry', sorted(_entry_points()))
@pytest.mark.parametrize('shape, message', [
    ((1, 4, 64, 64), r'expects input of shape \(B, 3, H, W\), got \[1, 4, 64, 64\]'),
    ((1, 3, 8, 8), 'Input 8x8 is too small: .* needs at least 32x32 pixels'),
    ((1, 3, 1, 1), 'Input 1x1 is too small'),
    ((3, 64, 64), r'got \[3, 64, 64\]'),
])
def test_bad_inputs_give_the_same_clear_error_everywhere(entry, shape, message):
    model = _entry_points()[entry]()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


def test_detectors_check_their_images():
    model = create_model('ssdlite320_hardnet39ds', num_classes=3).eval()
    with pytest.raises(ValueError, match=r'SSD expects images of shape \(3, H, W\) with values in \[0, 1\], '
                                         r'got \[4, 64, 64\]'):
        model([torch.rand(4, 64, 64)])
    with pytest.raises(ValueError, match='SSD expects float images'):
        model([torch.zeros(3, 64, 64, dtype=torch.uint8)])


@pytest.mark.parametrize('kwargs, message', [
    (dict(features_only=True, out_indices=(7,)), r'out_indices \(7,\): HarDNet has 5 feature levels'),
    (dict(features_only=True, out_indices=()), 'out_indices'),
    (dict(num_classes=-1), 'num_classes must be >= 0'),
    (dict(in_chans=0), 'in_chans must be >= 1'),
])
def test_bad_model_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timm.create_model('hardnet39ds', **kwargs)


# pyyaml and tqdm come with timm (and huggingface_hub) anyway
TRAINING_STACK = ('pycocotools', 'albumentations', 'cv2', 'matplotlib')
WITHOUT_TRAINING_STACK = f'''
import sys
for name in {TRAINING_STACK!r}:
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
import torch, timm
import hardnet_backbones
from hardnet_backbones.models import ssdlite320_hardnet39ds, fcn_hardnet39ds, fchardnet70
from hardnet_backbones.deploy import fuse_for_inference
x = torch.rand(1, 3, 64, 64)
with torch.no_grad():
    assert fuse_for_inference(timm.create_model('hardnet39ds').eval())(x).shape == (1, 1000)
    assert len(timm.create_model('hardnet68', features_only=True).eval()(x)) == 5
    assert fcn_hardnet39ds(num_classes=3).eval()(x)['out'].shape == (1, 3, 64, 64)
    assert fchardnet70(num_classes=3).eval()(x)['out'].shape == (1, 3, 64, 64)
    ssdlite320_hardnet39ds(num_classes=3).eval()([x[0]])
loaded = sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_STACK!r} and sys.modules[m] is not None)
assert not loaded, loaded
print('ok')
'''


@pytest.mark.subprocess
def test_models_work_without_the_training_packages():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-c', WITHOUT_TRAINING_STACK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', proc.stderr[-3000:]


def test_fchardnet_traces_with_its_input_check():
    torch.manual_seed(0)
    model = create_model('fchardnet70', num_classes=3).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(traced(x)['out'], model(x)['out'])
    with pytest.raises(ValueError, match='FC-HarDNet needs at least 32x32'):
        traced(torch.randn(1, 3, 16, 16))
