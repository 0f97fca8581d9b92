"""The deployment path: optimize_for_inference (float32 and int8), int8 export, and evaluating an
exported file on the validation data (hardnet-evaluate --onnx)."""
import json

import numpy as np
import onnx
import pytest
import timm
import torch
from PIL import Image

from hardnet_backbones.cli import detect as detect_cli
from hardnet_backbones.cli import evaluate as evaluate_cli
from hardnet_backbones.cli import export as export_cli
from hardnet_backbones.cli import segment as segment_cli
from hardnet_backbones.deploy import OnnxRuntimeModel, optimize_for_inference, quantize_to_onnx, quantized_node_count
from hardnet_backbones.models import create_model

from .helpers import randomize_bn_stats

pytestmark = pytest.mark.slow

SIZE = (64, 64)


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == 'classification':
        model = timm.create_model('hardnet39ds', num_classes=10)
    elif kind == 'features':
        model = timm.create_model('hardnet39ds', features_only=True, out_indices=(3, 4))
    elif kind == 'segmentation':
        model = create_model('lraspp_hardnet39ds', num_classes=3)
    else:
        model = create_model('ssdlite320_hardnet39ds', num_classes=3)
    randomize_bn_stats(model)
    return model.eval()


def _inputs(kind: str, seed: int, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    if kind == 'detection':
        return [torch.rand(3, *SIZE, generator=g) for _ in range(n)]
    return torch.randn(n, 3, *SIZE, generator=g)


def _same_structure(got, expected) -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype
    elif isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            _same_structure(got[key], expected[key])
    else:
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            _same_structure(g, e)


def _raw_outputs(model: torch.nn.Module, kind: str, x):
    """What the network computes, before a detector's NMS (whose order near-equal random scores can flip)."""
    if kind == 'detection':
        images, _ = model.transform(x)
        return list(model.head(list(model.backbone(images.tensors).values())).values())
    out = model(x)
    return list(out.values()) if kind == 'segmentation' else [out]


@pytest.mark.parametrize('kind', ['classification', 'segmentation', 'detection'])
def test_float_fast_path_is_exact(kind):
    model = _model(kind)
    fast = optimize_for_inference(model, kind)
    assert model.training is False and next(model.parameters()).is_contiguous()  # the original is untouched
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in fast.parameters())
    x = _inputs(kind, 1)
    with torch.no_grad():
        for got, expected in zip(_raw_outputs(fast, kind, x), _raw_outputs(model, kind, x)):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('kind', ['classification', 'features', 'segmentation', 'detection'])
def test_int8_model_keeps_the_interface_of_each_kind(kind, tmp_path):
    model = _model(kind)
    path = tmp_path / 'model.int8.onnx'
    fast = optimize_for_inference(model, kind, int8=True, calibration=_inputs(kind, 2, n=3), image_size=SIZE,
                                  path=path)
    assert isinstance(fast, OnnxRuntimeModel) and quantized_node_count(path) > 10
    x = _inputs(kind, 3)
    with torch.no_grad():
        expected = model(x)
    got = fast(x)
    if kind == 'detection':  # the number of detections may differ; the fields and types may not
        assert [sorted(d) for d in got] == [sorted(d) for d in expected]
        assert all(d['boxes'].shape[1:] == (4,) and d['labels'].dtype == torch.int64 for d in got)
    else:
        _same_structure(got, expected)


def test_int8_follows_the_float_model_with_its_calibration_ranges():
    """Calibrated on data like the inputs, int8 logits stay near the float ones; calibrated on data of
    another scale (ranges 10x too narrow or 100x too wide) they do not, so the calibration inputs are what sets them."""
    model = _model('classification')
    calibration = [torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    x = _inputs('classification', 9, n=4)
    with torch.no_grad():
        expected = model(x)

    def error(scale: float) -> float:
        fast = optimize_for_inference(model, int8=True, calibration=[c * scale for c in calibration], image_size=SIZE)
        return float((fast(x) - expected).norm() / (expected - expected.mean()).norm())

    good = error(1.0)
    assert good < 0.45
    assert good < 0.8 * error(0.1) and good < 0.8 * error(100.0)


def test_int8_detector_keeps_pre_and_post_processing_float(tmp_path):
    path = quantize_to_onnx(_model('detection'), tmp_path / 'det.onnx', 'detection', _inputs('detection', 4, 2), SIZE)
    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == 'DequantizeLinear' for out in node.output}
    # Shape nodes read only the sizes of the feature maps (for the anchors)
    consumers = {node.name for node in graph.node if dequantized & set(node.input)
                 and node.op_type not in ('QuantizeLinear', 'DequantizeLinear', 'Shape')}
    assert consumers and all(name.startswith(('/model/backbone/', '/model/head/')) for name in consumers)
    assert any(name.startswith('/model/head/') for name in consumers)


@pytest.mark.slow
def test_int8_keeps_a_detectors_pointwise_output_convolutions_float(tmp_path):
    """CenterNet's heads end in 1x1 convolutions giving the raw heatmap and box maps: int8 outputs there cost mAP
    (docs/deployment.md), so they stay float while the 3x3 convolutions before them are quantized."""
    from hardnet_backbones.models import create_model
    torch.manual_seed(0)
    model = create_model('centernet_hardnet68', num_classes=4, size=64).eval()
    path = quantize_to_onnx(model, tmp_path / 'cn.onnx', 'detection', [torch.rand(3, 64, 64) for _ in range(2)],
                            (64, 64))
    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == 'DequantizeLinear' for out in node.output}
    quantized = {node.name: bool(dequantized & set(node.input)) for node in graph.node if node.op_type == 'Conv'}
    head = {name: q for name, q in quantized.items() if name.startswith('/model/head/')}
    assert head == {'/model/head/heatmap/heatmap.0/Conv': True, '/model/head/heatmap/heatmap.2/Conv': False,
                    '/model/head/box/box.0/Conv': True, '/model/head/box/box.2/Conv': False}
    assert sum(quantized.values()) == len(quantized) - 2


def test_int8_needs_real_calibration_inputs():
    model = _model('classification')
    with pytest.raises(ValueError, match='needs calibration'):
        optimize_for_inference(model, int8=True)
    with pytest.raises(ValueError, match='needs calibration inputs'):
        optimize_for_inference(model, int8=True, calibration=[])
    with pytest.raises(ValueError, match=r'\(3, H, W\) images'):
        optimize_for_inference(_model('detection'), 'detection', int8=True, calibration=[torch.rand(1, 3, 64, 64)])
    with pytest.raises(ValueError, match="calibration and path are for int8 \\(precision='float32'"):
        optimize_for_inference(model, calibration=[torch.rand(1, 3, 64, 64)])


def _with_spread_scores(checkpoint, path):
    """The tiny detector with He-init convolutions: one epoch leaves near-equal scores whose NMS order
    float rounding flips, and the export's check would (rightly) report a mismatch."""
    state = torch.load(checkpoint, weights_only=True)
    torch.manual_seed(0)
    for key, value in state['model'].items():
        if value.dim() == 4:
            torch.nn.init.kaiming_normal_(value)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_exported_files_are_evaluated_on_the_validation_data(runs, task, tmp_path):
    """export --int8 writes both files; evaluate --onnx on the float file reproduces the PyTorch
    metrics, and on the int8 file reports its own, recorded next to the file's name."""
    checkpoint = runs[task] if task == 'seg' else _with_spread_scores(runs[task], tmp_path / 'det' / 'last.pth')
    out = tmp_path / 'export'
    assert export_cli.main(['--checkpoint', str(checkpoint), '--image-size', '64', '80', '--no-torchscript',
                            '--int8', '--calibration', str(runs['data'] / 'images' / 'train'),
                            '--output', str(out)]) == 0
    report = json.loads(next(out.glob('*.export.json')).read_text())
    assert report['onnx']['ok'] and report['int8']['quantized_tensors'] > 10
    assert report['int8']['calibration_images'] == 2
    metric = 'mAP' if task == 'det' else 'mIoU'
    assert evaluate_cli.main(['--checkpoint', str(checkpoint), '--output', str(tmp_path / 'torch.json')]) == 0
    torch_metrics = json.loads((tmp_path / 'torch.json').read_text())['metrics']
    float_file, int8_file = report['onnx']['path'], report['int8']['path']
    assert evaluate_cli.main(['--checkpoint', str(checkpoint), '--onnx', float_file,
                              '--output', str(tmp_path / 'float.json')]) == 0
    onnx_metrics = json.loads((tmp_path / 'float.json').read_text())['metrics']
    assert onnx_metrics[metric] == pytest.approx(torch_metrics[metric], abs=1e-3)
    visuals = tmp_path / 'visuals'
    assert evaluate_cli.main(['--checkpoint', str(checkpoint), '--onnx', int8_file, '--visuals', str(visuals)]) == 0
    saved = json.loads((checkpoint.parent / f'eval_{int8_file.rsplit("/", 1)[1].replace(".", "_")}.json').read_text())
    assert saved['onnx'] == int8_file and 0 <= saved['metrics'][metric] <= 1
    assert len(list(visuals.glob('*.png'))) == 1  # train.save_images=1: the predictions drawn


def test_detect_and_segment_run_an_exported_file_like_the_checkpoint(runs, tmp_path, monkeypatch):
    images = str(runs['data'] / 'images' / 'val')
    calls = []
    forward = OnnxRuntimeModel.forward
    monkeypatch.setattr(OnnxRuntimeModel, 'forward', lambda self, x: calls.append(self.path) or forward(self, x))
    det = _with_spread_scores(runs['det'], tmp_path / 'det' / 'last.pth')
    for checkpoint, tool, report in ((det, detect_cli, 'detections.json'), (runs['seg'], segment_cli, None)):
        out = tmp_path / checkpoint.parent.name
        assert export_cli.main(['--checkpoint', str(checkpoint), '--image-size', '64', '80', '--no-torchscript',
                                '--output', str(out / 'export')]) == 0
        onnx_file = str(next((out / 'export').glob('*.onnx')))
        assert tool.main([images, '--checkpoint', str(checkpoint), '--out-dir', str(out / 'torch')]) == 0
        assert not calls
        assert tool.main([images, '--checkpoint', str(checkpoint), '--onnx', onnx_file,
                          '--out-dir', str(out / 'onnx')]) == 0
        assert calls and all(str(path) == onnx_file for path in calls)
        calls.clear()
        if report:  # the same boxes, labels and scores (float rounding aside)
            expected = json.loads((out / 'torch' / report).read_text())
            got = json.loads((out / 'onnx' / report).read_text())
            assert list(got) == list(expected) and any(expected.values())
            for image in expected:
                assert [d['label'] for d in got[image]] == [d['label'] for d in expected[image]]
                for g, e in zip(got[image], expected[image]):
                    assert g['box'] == pytest.approx(e['box'], abs=1e-3)
                    assert g['score'] == pytest.approx(e['score'], abs=1e-4)
        else:  # the same class masks
            masks = [p for p in sorted((out / 'torch').glob('*.png')) if not p.stem.endswith('_overlay')]
            assert len(masks) == 2
            for mask in masks:
                assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(Image.open(out / 'onnx' / mask.name)))


def test_deployment_tools_refuse_bad_input_with_one_line(runs, tmp_path, caplog):
    out = tmp_path / 'export'
    caplog.clear()
    assert export_cli.main(['--checkpoint', str(runs['det']), '--int8', '--output', str(out)]) == 2
    assert '--int8 needs --calibration' in caplog.text
    caplog.clear()
    assert export_cli.main(['--checkpoint', str(runs['det']), '--int8', '--calibration', str(tmp_path / 'none'),
                            '--output', str(out)]) == 2
    assert 'no such image file or folder' in caplog.text and len(caplog.records) == 1
    seg_file = tmp_path / 'seg.onnx'
    assert export_cli.main(['--checkpoint', str(runs['seg']), '--image-size', '64', '64', '--no-torchscript',
                            '--output', str(tmp_path)]) == 0
    next(tmp_path.glob('*.onnx')).rename(seg_file)
    caplog.clear()
    assert evaluate_cli.main(['--checkpoint', str(runs['det']), '--onnx', str(seg_file)]) == 2
    assert "not the 'image' of a detection model" in caplog.text and len(caplog.records) == 1
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'not a model')
    caplog.clear()
    assert evaluate_cli.main(['--checkpoint', str(runs['det']), '--onnx', str(broken)]) == 2
    assert 'is not a readable ONNX model' in caplog.text and len(caplog.records) == 1
