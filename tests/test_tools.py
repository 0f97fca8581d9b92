"""Using a trained model: load_trained_model, and the segment / detect / classify tools end to end
(folders, globs, batches, saved predictions, one-line errors)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import hardnet_backbones
from hardnet_backbones.cli import classify as classify_cli
from hardnet_backbones.cli import detect as detect_cli
from hardnet_backbones.cli import segment as segment_cli
from hardnet_backbones.data.image_io import read_image_array
from hardnet_backbones.inference.windows import segment_logits
from hardnet_backbones.models import create_model

pytestmark = pytest.mark.slow


def test_load_trained_model_gives_model_classes_and_preprocessing(runs):
    seg = hardnet_backbones.load_trained_model(runs['seg'])
    image = read_image_array(next((runs['data'] / 'images' / 'val').glob('*.png')))
    out = seg.model(seg.preprocess(image)[None])['out']
    assert seg.task == 'segmentation' and out.shape == (1, 4, 64, 80) and not seg.model.training
    assert seg.class_names == ['background', 'circle', 'rectangle', 'triangle']
    det = hardnet_backbones.load_trained_model(runs['det'])
    assert det.task == 'detection' and det.category_ids == {1: 10, 2: 20, 3: 30}
    assert set(det.model([det.preprocess(image)])[0]) == {'boxes', 'labels', 'scores'}
    assert det.preprocess(image).max() <= 1 and seg.preprocess(image).min() < 0  # [0, 1] vs normalised


def test_segment_tool_writes_palette_masks_overlays_and_shares(runs, tmp_path):
    val = runs['data'] / 'images' / 'val'
    out = tmp_path / 'seg'
    assert segment_cli.main([str(val), '--checkpoint', str(runs['seg']), '--out-dir', str(out),
                             '--output-json', str(tmp_path / 'shares.json')]) == 0
    images = sorted(val.glob('*.png'))
    for image in images:
        mask = Image.open(out / image.name)
        assert mask.mode == 'P' and mask.size == Image.open(image).size
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}
        assert Image.open(out / f'{image.stem}_overlay.png').size == mask.size
    shares = json.loads((tmp_path / 'shares.json').read_text())
    assert sorted(shares) == [str(p) for p in images]
    first = shares[str(images[0])]
    assert first['mode'] == 'whole' and sum(first['class_shares'].values()) == pytest.approx(1.0)
    assert (first['width'], first['height']) == (80, 64)

    # a glob and sliding windows (smaller than the image, overlapping) work the same way
    assert segment_cli.main([str(val / '*.png'), '--checkpoint', str(runs['seg']), '--out-dir', str(tmp_path / 's'),
                             '--mode', 'slide', '--window', '48', '48', '--batch-size', '3']) == 0
    assert Image.open(tmp_path / 's' / images[0].name).size == (80, 64)


def test_sliding_window_of_the_image_size_equals_one_pass(runs):
    seg = hardnet_backbones.load_trained_model(runs['seg'])
    image = seg.preprocess(read_image_array(next((runs['data'] / 'images' / 'val').glob('*.png'))))
    whole = segment_logits(seg.model, image, 'whole')
    torch.testing.assert_close(segment_logits(seg.model, image, 'slide', window=(64, 80)), whole)
    several = segment_logits(seg.model, image, 'slide', window=(40, 48), batch_size=2)
    assert several.shape == whole.shape and torch.isfinite(several).all()


def test_detect_tool_writes_coco_results_with_dataset_category_ids(runs, tmp_path):
    val = runs['data'] / 'images' / 'val'
    out = tmp_path / 'det'
    assert detect_cli.main([str(val), '--checkpoint', str(runs['det']), '--out-dir', str(out),
                            '--score-threshold', '0.0', '--batch-size', '3']) == 0
    results = json.loads((out / 'detections_coco.json').read_text())
    images = json.loads((out / 'images.json').read_text())
    assert [i['file_name'] for i in images] == [str(p) for p in sorted(val.glob('*.png'))]
    assert results and {r['category_id'] for r in results} <= {10, 20, 30}
    assert {r['image_id'] for r in results} <= {i['id'] for i in images}
    per_image = json.loads((out / 'detections.json').read_text())
    assert sum(len(v) for v in per_image.values()) == len(results)


def test_tools_reject_bad_input_with_one_line(runs, tmp_path, caplog):
    not_an_image = tmp_path / 'notes.jpg'
    not_an_image.write_text('hello')
    empty = tmp_path / 'empty'
    empty.mkdir()
    cases = [
        (segment_cli, [str(tmp_path / 'missing.png'), '--checkpoint', str(runs['seg'])],
         'no such image file or folder: .*missing.png'),
        (segment_cli, [str(not_an_image), '--checkpoint', str(runs['seg']), '--out-dir', str(tmp_path / 'o')],
         'notes.jpg: cannot decode the image'),
        (detect_cli, [str(empty), '--checkpoint', str(runs['det'])], 'no images found in'),
        (segment_cli, [str(runs['data'] / 'images' / 'val'), '--checkpoint', str(runs['det'])],
         'holds a detection model .* not a segmentation model'),
        (detect_cli, [str(runs['data'] / 'images' / 'val'), '--checkpoint', str(runs['seg'])],
         'holds a segmentation model .* not a detection model'),
        (detect_cli, [str(runs['data'] / 'images' / 'val'), '--checkpoint', str(tmp_path / 'none.pth')],
         'Checkpoint not found'),
        (classify_cli, [str(runs['data'] / 'images' / 'val'), '--model', 'resnet_nonexistent'], 'unknown timm model'),
    ]
    import re
    for tool, args, message in cases:
        caplog.clear()
        assert tool.main(args) == 2, args
        errors = [r for r in caplog.records if r.levelname == 'ERROR']
        assert len(errors) == 1 and '\n' not in errors[0].getMessage(), caplog.text
        assert re.search(message, errors[0].getMessage()), (message, errors[0].getMessage())


@pytest.mark.parametrize('name', ['fcn_hardnet39ds', 'deeplabv3_hardnet68', 'lraspp_hardnet39ds', 'fchardnet70'])
def test_every_segmentation_builder_runs_whole_and_sliding(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    image = torch.randn(3, 72, 100)
    whole = segment_logits(model, image, 'whole')
    slide = segment_logits(model, image, 'slide', window=(64, 64), batch_size=2)
    assert whole.shape == slide.shape == (3, 72, 100) and torch.isfinite(slide).all()
