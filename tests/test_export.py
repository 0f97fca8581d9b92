"""ONNX (onnxruntime) and TorchScript exports of each model kind match PyTorch."""
import json

import pytest
import timm
import torch

from hardnet_backbones.cli import export as export_cli
from hardnet_backbones.deploy.export import export_onnx, export_torchscript, validate_onnx, validate_torchscript
from hardnet_backbones.models import create_model

pytestmark = pytest.mark.slow

pytest.importorskip('onnxruntime')

SIZE = (96, 128)


def _model(kind):
    torch.manual_seed(0)
    if kind == 'classification':
        return timm.create_model('hardnet39ds')
    if kind == 'features':
        return timm.create_model('hardnet68ds', features_only=True, out_indices=(1, 2, 3, 4))
    if kind == 'detection':
        model = create_model('ssdlite320_hardnet39ds', num_classes=3, size=128)
        # He-init weights spread the random scores apart: the scratch init's near-equal scores leave ties in
        # the NMS order that float rounding in any exporter can flip
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
        return model
    return create_model('fcn_hardnet39ds', num_classes=3)


@pytest.mark.parametrize('kind', ['classification', 'features', 'detection', 'segmentation'])
def test_onnx_and_torchscript_match_pytorch(kind, tmp_path):
    model = _model(kind).eval()
    onnx_path = export_onnx(model, tmp_path / 'm.onnx', kind, SIZE)
    # validated on another batch size and the same size: dynamic axes must hold
    result = validate_onnx(onnx_path, model, kind, SIZE, atol=1e-4)
    assert result['ok'], result
    assert result['max_abs_diff'] < 1e-4 if kind != 'detection' else result['detections'] > 0
    ts_path = export_torchscript(model, tmp_path / 'm.pt', kind, SIZE)
    assert validate_torchscript(ts_path, model, kind, SIZE)['ok']


def test_onnx_dynamic_spatial_size(tmp_path):
    import onnxruntime as ort
    model = _model('segmentation').eval()
    path = export_onnx(model, tmp_path / 'seg.onnx', 'segmentation', SIZE)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 64, 160)
    out, aux = session.run(['out', 'aux'], {'images': x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert out.shape == (1, 3, 64, 160) and abs(out - ref['out'].numpy()).max() < 1e-4


def test_export_tool(tmp_path):
    assert export_cli.main(['--model', 'hardnet39ds', '--image-size', '64', '64', '--output', str(tmp_path)]) == 0
    report = json.loads((tmp_path / 'hardnet39ds.export.json').read_text())
    assert report['onnx']['ok'] and report['torchscript']['ok'] and report['opset'] == 17
    assert export_cli.main(['--model', 'hardnet39ds', '--opset', '13', '--output', str(tmp_path)]) == 2
