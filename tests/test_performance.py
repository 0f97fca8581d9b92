"""Inference fusion and the benchmark tool (no timing assertions)."""
import copy
import json

import pytest
import timm
import torch

from hardnet_backbones.cli import benchmark as benchmark_cli
from hardnet_backbones.deploy.fuse import fuse_for_inference
from hardnet_backbones.models import create_model
from hardnet_backbones.utils.cpu import describe_cpu

from .helpers import MODEL_PARAMS, randomize_bn_stats


def _no_batchnorm(model):
    return not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize('name', MODEL_PARAMS)
def test_fused_classifier_and_features_equal_unfused(name):
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    randomize_bn_stats(model)
    fused = fuse_for_inference(model)
    assert _no_batchnorm(fused) and not any(isinstance(m, torch.nn.Dropout) for m in fused.modules())
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        assert (fused(x) - model(x)).abs().max() < 1e-4
        features = timm.create_model(name, features_only=True).eval()
        randomize_bn_stats(features)
        x = x[:1, :, :64, :64]  # float64 convolutions are slow on CPU
        exact = copy.deepcopy(features).double()(x.double())
        for level, (a, b, ref) in enumerate(zip(fuse_for_inference(features)(x), features(x), exact)):
            # Random BatchNorm statistics make the deep maps of the depthwise variants sensitive: there the
            # float32 model itself is ~1e-4 away from float64, so fusion is held to that same accuracy.
            fused_error = (a.double() - ref).abs().max().item()
            unfused_error = (b.double() - ref).abs().max().item()
            assert fused_error <= max(1e-4, 2 * unfused_error), (level, fused_error, unfused_error)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    fast = fuse_for_inference(model, channels_last=True)
    assert fast.features.stem_conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < 1e-4


def test_fused_ssd_and_fcn_equal_unfused():
    torch.manual_seed(0)
    ssd = create_model('ssdlite320_hardnet39ds', num_classes=3, size=128).eval()
    randomize_bn_stats(ssd)
    images = [torch.rand(3, 100, 120)]
    fused = fuse_for_inference(ssd)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        # compare the raw head outputs: post-processing (top-k, NMS) can turn float noise into reorderings
        ref_head = ssd.head(list(ssd.backbone(x).values()))
        new_head = fused.head(list(fused.backbone(x).values()))
        for key in ref_head:
            assert (ref_head[key] - new_head[key]).abs().max() < 1e-4
        assert len(fused(images)[0]['boxes']) == len(ssd(images)[0]['boxes'])
    assert _no_batchnorm(fused)
    fcn = create_model('fcn_hardnet68', num_classes=4).eval()
    randomize_bn_stats(fcn)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref, out = fcn(x), fuse_for_inference(fcn)(x)
    for key in ('out', 'aux'):
        assert (ref[key] - out[key]).abs().max() < 1e-4


@pytest.mark.slow
@pytest.mark.subprocess
def test_benchmark_tool_end_to_end(tmp_path):
    out = tmp_path / 'bench'
    assert benchmark_cli.main(['--models', 'hardnet39ds', 'mobilenetv2_100', '--baseline', 'mobilenetv2_100',
                               '--batch-size', '1', '--image-size', '64', '--warmup', '1', '--iters', '2',
                               '--output', str(out)]) == 0
    report = json.loads(out.with_suffix('.json').read_text())
    rows = {r['model']: r for r in report['results']}
    assert set(rows) == {'hardnet39ds', 'mobilenetv2_100'}
    hardnet = rows['hardnet39ds']
    assert hardnet['params_m'] == pytest.approx(3.488, abs=1e-3)
    assert 0.01 < hardnet['gmacs'] < 0.1  # 0.44 GMACs at 224 px scale to ~0.036 at 64 px
    for key in ('infer_images_per_s', 'train_images_per_s', 'infer_peak_mem_mb', 'train_peak_mem_mb'):
        assert hardnet[key] > 0
    assert rows['mobilenetv2_100']['infer_speedup'] == 1.0
    assert hardnet['infer_speedup'] == pytest.approx(
        hardnet['infer_images_per_s'] / rows['mobilenetv2_100']['infer_images_per_s'])
    assert '| hardnet39ds | mobilenetv2_100 |' in out.with_suffix('.md').read_text()


def test_gmacs_match_the_published_figures():
    from hardnet_backbones.benchmark import count_gmacs
    published = {'hardnet68': 4.3, 'hardnet39ds': 0.44}
    for name, gmacs in published.items():
        assert count_gmacs(timm.create_model(name), 'classification', (224, 224)) == pytest.approx(gmacs, rel=0.05)


@pytest.mark.slow
def test_interleaved_benchmark_reports_spread_and_the_ceiling_of_each_precision(tmp_path):
    out = tmp_path / 'inter'
    assert benchmark_cli.main(['--models', 'hardnet39ds', 'hardnet39ds+fused', 'hardnet39ds+int8', '--baseline',
                               'hardnet39ds',
                               '--batch-size', '1', '--image-size', '64', '--warmup', '1', '--iters', '2',
                               '--interleave', '3', '--output', str(out)]) == 0
    rows = {r['model']: r for r in json.loads(out.with_suffix('.json').read_text())['results']}
    fused, plain = rows['hardnet39ds+fused'], rows['hardnet39ds']
    assert plain['infer_speedup'] == plain['infer_speedup_min'] == plain['infer_speedup_max'] == 1.0
    assert fused['infer_speedup_min'] <= fused['infer_speedup'] <= fused['infer_speedup_max']
    assert fused['infer_images_per_s_min'] <= fused['infer_images_per_s'] <= fused['infer_images_per_s_max']
    assert fused['ceiling_gflops'] > 0 and fused['infer_gflops'] == pytest.approx(
        2 * fused['gmacs'] * fused['infer_images_per_s'])
    assert fused['precision'] == 'float32' and rows['hardnet39ds+int8']['precision'] == 'int8'
    assert fused['ceiling_fraction'] == pytest.approx(fused['infer_gflops'] / fused['ceiling_gflops'])
    assert rows['hardnet39ds+int8']['ceiling_fraction'] is None  # no int8 ceiling is measured
    markdown = out.with_suffix('.md').read_text()
    assert f'float32 {fused["ceiling_gflops"]:.0f} GFLOP/s' in markdown and describe_cpu() in markdown
    assert '| hardnet39ds+fused | hardnet39ds |' in markdown
    assert rows['hardnet39ds+int8']['infer_images_per_s'] > 0 and '| hardnet39ds+int8 |' in markdown


def test_benchmark_times_real_images_resized_and_repeated(tmp_path):
    from PIL import Image

    from hardnet_backbones.benchmark.measure import BenchConfig, _inputs
    Image.new('RGB', (60, 40), (255, 0, 0)).save(tmp_path / 'a.png')
    Image.new('RGB', (30, 50), (0, 0, 255)).save(tmp_path / 'b.png')
    cfg = BenchConfig(image_size=(32, 48), images=str(tmp_path))
    images, _ = _inputs('classification', cfg, 3, torch.device('cpu'))
    assert images.shape == (3, 3, 32, 48)
    assert torch.allclose(images[0], torch.tensor([1.0, 0, 0])[:, None, None].expand(3, 32, 48))
    assert torch.allclose(images[1], torch.tensor([0, 0, 1.0])[:, None, None].expand(3, 32, 48))
    assert torch.equal(images[2], images[0])  # fewer images than the batch: repeated in order
    detection, _ = _inputs('detection', cfg, 2, torch.device('cpu'))
    assert torch.equal(torch.stack(detection), images[:2])


def test_benchmark_refuses_missing_images_before_any_work(tmp_path, caplog):
    out = tmp_path / 'bench'
    assert benchmark_cli.main(['--models', 'hardnet39ds', '--images', str(tmp_path / 'nowhere'),
                               '--output', str(out)]) == 2
    assert '--images: no such image file or folder' in caplog.text and not out.with_suffix('.json').exists()


def test_the_benchmark_shows_the_time_per_operator_class():
    from hardnet_backbones.benchmark.measure import op_class_shares
    from hardnet_backbones.benchmark.report import op_shares_cell
    from hardnet_backbones.deploy import optimize_for_inference

    model = optimize_for_inference(timm.create_model('hardnet39ds').eval())
    x = torch.randn(1, 3, 64, 64)

    def step():
        with torch.inference_mode():
            model(x)
    shares = op_class_shares(step, torch.device('cpu'))
    assert set(shares) == {'convolution', 'concatenation', 'elementwise', 'other'}
    assert abs(sum(shares.values()) - 1) < 1e-9 and shares['convolution'] > 0.3 and shares['concatenation'] > 0
    assert len(op_shares_cell(shares).split(' / ')) == 4 and op_shares_cell(None) == ''
    assert op_class_shares(lambda: None, torch.device('cpu')) is None  # no PyTorch operator (onnxruntime)
