"""CenterNet-HarDNet: the published files load strictly, the network and its coding equal a literal
re-implementation, the resize matches OpenCV's warp, and the detector trains and predicts with torchvision's
contract."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardnet_backbones.errors import CheckpointError, DownloadError
from hardnet_backbones.models import create_model, get_model_entry
from hardnet_backbones.models.centernet import (
    CENTERNET_MEAN_BGR, CENTERNET_STD_BGR, CenterNet_HarDNet85_Weights, centernet_checkpoint_filter)
from hardnet_backbones.models.centernet_coding import (
    decode_detections, encode_targets, focal_loss, gaussian_radius, masked_l1, stretch_image)
from hardnet_backbones.models.hub import PINS_FILE, pinned_download

from .helpers import KEYS_JSON, randomize_bn_stats
from .reference_centernet import (
    ReferenceCenterNet, reference_decode, reference_focal, reference_radius, reference_targets)

VARIANTS = {'centernet_hardnet85': 85, 'centernet_hardnet68': 68}


def published_keys(name):
    return json.loads((KEYS_JSON.parent / f'{name}_checkpoint_keys.json').read_text())['keys']


def published_file(path, name, prefix='module.', seed=0):
    """A file laid out as the published ones: {'epoch', 'state_dict'} with random tensors of the published shapes."""
    gen = torch.Generator().manual_seed(seed)
    state = {f'{prefix}{k}': (torch.randn(shape, generator=gen) * 0.05 if shape else torch.tensor(7))
             for k, shape in published_keys(name).items()}
    for k in state:
        if k.endswith('running_var'):
            state[k] = state[k].abs() + 0.5
    torch.save({'epoch': 140, 'state_dict': state}, path)
    return path


def reference_with_weights(name, seed=0):
    torch.manual_seed(seed)
    reference = ReferenceCenterNet(VARIANTS[name]).eval()
    randomize_bn_stats(reference, seed)
    return reference


@pytest.mark.parametrize('name', list(VARIANTS))
def test_published_files_load_strictly_with_or_without_module_prefix(name, tmp_path):
    for prefix in ('module.', ''):
        path = published_file(tmp_path / f'{name}{prefix}.pth', name, prefix)
        model = create_model(name, weights=path, trainable_backbone_layers=4)  # frozen BatchNorm has fewer keys
        assert model.num_classes == 81 and model.size == 512
        published = torch.load(path, weights_only=True)['state_dict']
        ours = model.state_dict()
        assert len(ours) == len(published_keys(name))
        assert torch.equal(ours['backbone.base.0.conv.weight'], published[f'{prefix}base.0.conv.weight'])
        assert torch.equal(ours['head.heatmap.2.bias'], published[f'{prefix}hm.2.bias'])
        assert torch.equal(ours['backbone.up_blocks.2.layers.3.norm.running_var'],
                           published[f'{prefix}denseBlocksUp.2.layers.3.norm.running_var'])


def test_files_that_do_not_fit_are_one_line(tmp_path):
    path = published_file(tmp_path / 'cn.pth', 'centernet_hardnet85')
    state = torch.load(path, weights_only=True)
    del state['state_dict']['module.denseBlocksUp.1.layers.0.conv.weight']
    torch.save(state, tmp_path / 'missing.pth')
    with pytest.raises(CheckpointError, match=r'missing keys: backbone.up_blocks.1.layers.0.conv.weight'):
        create_model('centernet_hardnet85', weights=tmp_path / 'missing.pth')
    with pytest.raises(CheckpointError, match='shape mismatch'):  # a HarDNet68 file into the 85 network
        create_model('centernet_hardnet85', weights=published_file(tmp_path / '68.pth', 'centernet_hardnet68'))
    (tmp_path / 'page.pth').write_text('<!DOCTYPE html><html><body>moved</body></html>')
    with pytest.raises(CheckpointError, match='web page, not a PyTorch file'):
        create_model('centernet_hardnet85', weights=tmp_path / 'page.pth')
    (tmp_path / 'cut.pth').write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match='truncated, corrupt or not a PyTorch file'):
        create_model('centernet_hardnet85', weights=tmp_path / 'cut.pth')
    with pytest.raises(ValueError, match=r'counts the background .* pass num_classes=81'):
        create_model('centernet_hardnet85', weights=path, num_classes=80)
    model = create_model('centernet_hardnet85', num_classes=81)
    with pytest.raises(CheckpointError, match=r'80 heatmap classes, the model 3: build it with num_classes=81'):
        centernet_checkpoint_filter(torch.load(path, weights_only=True),
                                    create_model('centernet_hardnet85', num_classes=4))
    assert model.num_classes == 81


@pytest.mark.parametrize('name', list(VARIANTS))
def test_heatmap_and_box_maps_equal_the_published_network(name):
    reference = reference_with_weights(name)
    model = create_model(name).eval()
    model.load_state_dict(centernet_checkpoint_filter(reference.state_dict(), model))
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected_heat, expected_box = reference(x)
        heat, box = model.head(model.backbone(x))
    torch.testing.assert_close(heat, expected_heat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(box, expected_box, rtol=1e-4, atol=1e-4)


def test_detections_on_a_512_image_equal_the_published_pipeline():
    name = 'centernet_hardnet68'
    reference = reference_with_weights(name, seed=1)
    model = create_model(name).eval()
    model.load_state_dict(centernet_checkpoint_filter(reference.state_dict(), model))
    rgb = torch.randint(0, 256, (3, 512, 512), generator=torch.Generator().manual_seed(0)).float() / 255
    bgr = rgb.flip(0)
    mean, std = torch.tensor(CENTERNET_MEAN_BGR).view(3, 1, 1), torch.tensor(CENTERNET_STD_BGR).view(3, 1, 1)
    with torch.no_grad():
        heat, box = reference(((bgr - mean) / std)[None])
        # widths around 0 (some negative, some not) and positive heights, to check both kinds of box
        reference.wh[2].bias[0] -= box[0, 0].median()
        reference.wh[2].bias[1] += 1.0
        model.load_state_dict(centernet_checkpoint_filter(reference.state_dict(), model))
        heat, box = reference(((bgr - mean) / std)[None])
        boxes, scores, classes = reference_decode(heat.sigmoid(), box)
        out = model([rgb])[0]
    assert len(out['boxes']) == 100
    torch.testing.assert_close(out['scores'], scores[0], rtol=0, atol=1e-5)
    assert torch.equal(out['labels'], classes[0] + 1)
    # the same centres; a negative size (the published decoder inverts the box) is an empty box here
    torch.testing.assert_close((out['boxes'][:, :2] + out['boxes'][:, 2:]) / 2,
                               (boxes[0, :, :2] + boxes[0, :, 2:]) * 2, rtol=0, atol=1e-3)
    extent = (boxes[0, :, 2:] - boxes[0, :, :2]) * 4
    torch.testing.assert_close(out['boxes'][:, 2:] - out['boxes'][:, :2], extent.clamp(min=0), rtol=0, atol=1e-3)
    assert (extent < 0).any() and (extent > 0).any()  # random weights predict both


def test_decoding_equals_the_published_top_k():
    gen = torch.Generator().manual_seed(0)
    heat = torch.rand(2, 5, 16, 20, generator=gen)
    box = torch.randn(2, 4, 16, 20, generator=gen)
    boxes, scores, classes = decode_detections(heat, box.abs(), 30)
    expected = reference_decode(heat, box.abs(), 30)
    torch.testing.assert_close(boxes, expected[0])
    assert torch.equal(scores, expected[1]) and torch.equal(classes, expected[2])
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    assert scores[0, 0] == peaks[0].max()


def test_the_resize_matches_the_published_opencv_warp():
    """The published stretch is OpenCV's fixed-point warpAffine; tests/data holds what OpenCV 4.5.5 (the fixed-point
    generation; OpenCV 5 warps in floating point) gives on two blurred-noise images, up- and downsampled."""
    cases = np.load(KEYS_JSON.parent / 'opencv455_warp_affine.npz')
    for case in ('up', 'down'):
        source, expected = cases[f'{case}_source'], cases[f'{case}_warped'].astype(np.int64)
        image = torch.from_numpy(source).permute(2, 0, 1).float() / 255
        ours = stretch_image(image, *expected.shape[:2])
        ours = torch.round(ours * 255).permute(1, 2, 0).numpy().astype(np.int64)
        difference = np.abs(ours - expected)
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (case, (difference > 0).mean())
        # a floating-point bilinear resize with the same corner-aligned mapping is further off
        rows = torch.arange(expected.shape[0]) * (source.shape[0] / expected.shape[0])
        cols = torch.arange(expected.shape[1]) * (source.shape[1] / expected.shape[1])
        grid = torch.stack([(2 * cols + 1) / source.shape[1] - 1, (2 * rows + 1) / source.shape[0] - 1])
        grid = torch.stack(torch.meshgrid(grid[1], grid[0], indexing='ij')[::-1], -1)[None]
        floating = F.grid_sample(image[None], grid, mode='bilinear', padding_mode='zeros', align_corners=False)[0]
        floating = torch.round(floating * 255).permute(1, 2, 0).numpy().astype(np.int64)
        assert (np.abs(floating - expected) > 0).mean() > 5 * (difference > 0).mean()
    identity = torch.randint(0, 256, (3, 40, 50)).float() / 255
    assert torch.equal(stretch_image(identity, 40, 50), identity)


def test_gaussian_radius_and_targets_equal_the_published_ones():
    for size in [(3, 4), (10, 30), (57.3, 12.2), (1, 1)]:
        assert gaussian_radius(*size) == pytest.approx(reference_radius(size))
    h, w = 24, 32
    boxes = torch.tensor([[2.5, 3.2, 10.7, 12.1],     # inside
                          [6.0, 5.0, 14.0, 13.5],      # overlaps the first: the larger weight wins
                          [-10.0, 10.0, 1.5, 20.0],    # clipped to 1.5 of 11.5 cells on x: dropped
                          [25.0, 18.0, 40.0, 30.0],    # clipped, kept
                          [12.0, 1.0, 13.0, 2.5]])     # tiny: kept (h / h_orig = 1)
    labels = torch.tensor([0, 2, 1, 1, 0])
    got = encode_targets(boxes, labels, 3, h, w)
    hm, wh, off, weight = reference_targets(boxes.tolist(), labels.tolist(), 3, h, w)
    np.testing.assert_allclose(got['heatmap'].numpy(), hm, atol=1e-6)
    np.testing.assert_allclose(got['size'].numpy(), wh, atol=1e-5)
    np.testing.assert_allclose(got['offset'].numpy(), off, atol=1e-5)
    np.testing.assert_allclose(got['weight'].numpy(), weight, atol=1e-7)
    assert got['heatmap'].eq(1).sum() == 4  # one peak per drawn object


def test_losses_equal_the_published_ones():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.rand(2, 3, 8, 8, generator=gen) * 0.9
    target[0, 1, 2, 3] = target[1, 0, 5, 5] = 1
    torch.testing.assert_close(focal_loss(logits, target), reference_focal(logits, target))
    no_peaks = target.clamp(max=0.5)
    torch.testing.assert_close(focal_loss(logits, no_peaks), reference_focal(logits, no_peaks))
    prediction, wanted = torch.randn(2, 2, 8, 8, generator=gen), torch.randn(2, 2, 8, 8, generator=gen)
    weight = torch.zeros(2, 8, 8)
    weight[0, 1, 1], weight[1, 4, 4] = 0.7, 0.3
    expected = (0.7 * (prediction[0, :, 1, 1] - wanted[0, :, 1, 1]).abs().sum()
                + 0.3 * (prediction[1, :, 4, 4] - wanted[1, :, 4, 4]).abs().sum()) / (2 * 1.0 + 1e-4)
    torch.testing.assert_close(masked_l1(prediction, wanted, weight), expected)


def test_trains_with_torchvisions_contract_and_predicts_in_image_pixels():
    torch.manual_seed(0)
    model = create_model('centernet_hardnet68', num_classes=4, size=128)
    images = [torch.rand(3, 100, 140), torch.rand(3, 120, 90)]
    targets = [{'boxes': torch.tensor([[10.0, 20.0, 60.0, 70.0]]), 'labels': torch.tensor([1])},
               {'boxes': torch.zeros(0, 4), 'labels': torch.zeros(0, dtype=torch.int64)}]
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(4):
        parts = model(images, targets)
        assert set(parts) == {'loss_heatmap', 'loss_size', 'loss_offset'}
        loss = sum(parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert [len(o['boxes']) for o in out] == [100, 100]
    assert all(torch.isfinite(o['boxes']).all() and o['scores'].max() <= 1 for o in out)
    assert all(int(o['labels'].min()) >= 1 and int(o['labels'].max()) <= 3 for o in out)
    # boxes in each image's own pixels: the stretch is undone per axis
    model.flip_test = True
    with torch.no_grad():
        flipped = model(images)
    assert flipped[0]['boxes'].shape == (100, 4)
    model.flip_test, model.keep_res = False, True
    with torch.no_grad():
        kept = model([images[0]])[0]
    assert kept['boxes'].shape == (100, 4)


def test_boxes_map_back_to_each_images_pixels():
    """A heatmap peak at a known cell comes back at the matching place of a non-square image, both resize modes."""
    model = create_model('centernet_hardnet68', num_classes=2, size=128).eval()

    def fake_head(features):
        heat = torch.full((features.shape[0], 1, *features.shape[-2:]), -10.0)
        heat[:, 0, 8, 16] = 5.0
        box = torch.zeros(features.shape[0], 4, *features.shape[-2:])
        box[:, 0, 8, 16], box[:, 1, 8, 16] = 4.0, 2.0  # 4 x 2 cells wide and high
        return heat, box
    model.head.forward = fake_head
    image = torch.rand(3, 64, 256)
    with torch.no_grad():
        top = model([image])[0]['boxes'][0]
    # cell (16, 8) of the 32 x 32 grid of a 128-px stretch: x = 16 * 4 * 256 / 128, y = 8 * 4 * 64 / 128
    torch.testing.assert_close(top, torch.tensor([(16 - 2) * 8.0, (8 - 1) * 2.0, (16 + 2) * 8.0, (8 + 1) * 2.0]))
    model.keep_res = True  # a 64 x 288 canvas (next multiples of 32 above), the image centred in it
    with torch.no_grad():
        top = model([image])[0]['boxes'][0]
    left, up = 288 // 2 - 128, 96 // 2 - 32
    torch.testing.assert_close(top, torch.tensor([56.0 - left, 28.0 - up, 72.0 - left, 36.0 - up]))


def test_fine_tuning_from_coco_weights_replaces_the_heatmap_head_only(tmp_path):
    path = published_file(tmp_path / 'coco.pth', 'centernet_hardnet85')
    published = torch.load(path, weights_only=True)['state_dict']
    model = create_model('centernet_hardnet85', weights=path, num_classes=4, trainable_backbone_layers=1)
    assert model.head.heatmap[2].weight.shape[0] == 3
    assert torch.all(model.head.heatmap[2].bias == -2.19)
    assert torch.equal(model.head.box[2].weight, published['module.wh.2.weight'])
    assert torch.equal(model.backbone.up_proj[0].conv.weight, published['module.conv1x1_up.0.conv.weight'])
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith('backbone.base.') for n in frozen)
    assert all(p.requires_grad for p in model.backbone.base[13].parameters())  # the deepest level trains
    assert not any(p.requires_grad for p in model.backbone.base[9].parameters())
    # from a file of ours (another run's weights) the same way
    ours = tmp_path / 'ours.pth'
    torch.save(model.state_dict(), ours)
    again = create_model('centernet_hardnet85', weights=ours, num_classes=6)
    assert again.head.heatmap[2].weight.shape[0] == 5
    assert torch.equal(again.head.box[2].weight, published['module.wh.2.weight'])


def test_named_weights_download_once_and_are_pinned(tmp_path, monkeypatch):
    served = tmp_path / 'server' / 'centernet_hardnet85_coco.pth'
    served.parent.mkdir()
    published_file(served, 'centernet_hardnet85')
    cache = tmp_path / 'cache'
    url = served.as_uri()
    path = pinned_download(url, cache_dir=cache, progress=False)
    pins = json.loads((cache / PINS_FILE).read_text())
    assert path.read_bytes() == served.read_bytes() and list(pins) == [served.name]
    assert pinned_download(url, cache_dir=cache, progress=False) == path  # from the cache
    published_file(path, 'centernet_hardnet85', seed=1)  # another model under the same name
    with pytest.raises(DownloadError, match=rf'not the file first used.*delete the "{served.name}" entry'):
        pinned_download(url, cache_dir=cache, progress=False)
    (cache / PINS_FILE).write_text('{}')
    assert pinned_download(url, cache_dir=cache, progress=False) == path  # accepted, pinned anew
    page = tmp_path / 'server' / 'page.pth'
    page.write_text('<html><body>Not found</body></html>')
    with pytest.raises(CheckpointError, match='web page'):
        pinned_download(page.as_uri(), cache_dir=cache, progress=False)
    assert not (cache / 'page.pth').exists()
    # the named weights go through it: a file URL stands in for the published one
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    (tmp_path / 'hub' / 'checkpoints').mkdir(parents=True)
    cached = tmp_path / 'hub' / 'checkpoints' / 'centernet_hardnet85_coco.pth'
    cached.write_bytes(served.read_bytes())
    model = create_model('centernet_hardnet85', weights='COCO_512')
    assert model.size == 512 and CenterNet_HarDNet85_Weights.DEFAULT.meta['categories'][0] == 'person'
    assert len(CenterNet_HarDNet85_Weights.COCO_512.meta['categories']) == 80


def test_bad_settings_and_inputs_are_one_line():
    with pytest.raises(ValueError, match='multiple of 32'):
        create_model('centernet_hardnet68', size=500)
    with pytest.raises(ValueError, match='num_classes counts the background'):
        create_model('centernet_hardnet68', num_classes=1)
    with pytest.raises(ValueError, match=r'score_thresh must be a number in \[0, 1\]'):
        create_model('centernet_hardnet68', score_thresh=2.0)
    model = create_model('centernet_hardnet68', num_classes=3, size=64)
    with pytest.raises(ValueError, match=r'images of shape \(3, H, W\)'):
        model.eval()([torch.rand(1, 3, 64, 64)])
    with pytest.raises(ValueError, match='float images'):
        model([torch.zeros(3, 64, 64, dtype=torch.uint8)])
    model.train()
    with pytest.raises(ValueError, match='needs targets'):
        model([torch.rand(3, 64, 64)])
    with pytest.raises(ValueError, match=r'labels outside 1..2'):
        model([torch.rand(3, 64, 64)], [{'boxes': torch.tensor([[1.0, 1, 9, 9]]), 'labels': torch.tensor([3])}])
    with pytest.raises(ValueError, match='got 1 images but 0 targets'):
        model([torch.rand(3, 64, 64)], [])
    with pytest.raises(ValueError, match=r'"boxes" of shape \(N, 4\)'):
        model([torch.rand(3, 64, 64)], [{'boxes': torch.zeros(4), 'labels': torch.zeros(0, dtype=torch.int64)}])
    model.eval()
    with torch.no_grad():  # any image size: a 1 x 1 image is stretched too, or padded to 32 with keep_res
        assert len(model([torch.rand(3, 1, 1)])[0]['boxes']) == 100
        model.keep_res = True
        assert len(model([torch.rand(3, 1, 1)])[0]['boxes']) == 100
    assert get_model_entry('centernet_hardnet85').input_size == 512
    assert math.isclose(torch.sigmoid(torch.tensor(-2.19)).item(), 0.1, abs_tol=0.001)


def test_trains_evaluates_detects_and_exports_through_the_tools(shapes_root, tmp_path):
    from hardnet_backbones.cli import detect as detect_cli
    from hardnet_backbones.cli import evaluate as evaluate_cli
    from hardnet_backbones.cli import train as train_cli
    from hardnet_backbones.deploy import export_onnx, validate_onnx
    from hardnet_backbones.inference.trained import load_trained_model

    from .helpers import ROOT, detection_overrides
    config = ROOT / 'configs' / 'detection' / 'shapes_centernet_hardnet68.yaml'
    out = tmp_path / 'run'
    assert train_cli.main([str(config), *(f'--set={o}' for o in detection_overrides(shapes_root, out, epochs=1))]) == 0
    record = json.loads((out / 'metrics.jsonl').read_text().splitlines()[-1])
    assert {'loss_heatmap', 'loss_size', 'loss_offset', 'mAP', 'AP50'} <= set(record)
    assert list((out / 'visuals').glob('*.png'))

    # a file in the published layout evaluates with a config, as the published COCO weights would
    trained = load_trained_model(out / 'last.pth')
    published = {'epoch': 1, 'state_dict': {
        f'module.{k.replace("backbone.base.", "base.").replace("head.heatmap.", "hm.").replace("head.box.", "wh.")}'
        .replace('backbone.last_proj.', 'last_proj.').replace('backbone.last_block.', 'last_blk.')
        .replace('backbone.up_proj.', 'conv1x1_up.').replace('backbone.up_blocks.', 'denseBlocksUp.'): v
        for k, v in trained.model.state_dict().items()}}
    torch.save(published, tmp_path / 'published.pth')
    overrides = [f'--set={o}' for o in detection_overrides(shapes_root, tmp_path / 'unused', epochs=1)]
    assert evaluate_cli.main([str(config), *overrides, '--checkpoint', str(tmp_path / 'published.pth'),
                              '--output', str(tmp_path / 'published.json')]) == 0
    assert evaluate_cli.main(['--checkpoint', str(out / 'last.pth'), '--output', str(tmp_path / 'run.json')]) == 0
    assert (json.loads((tmp_path / 'published.json').read_text())['metrics']
            == json.loads((tmp_path / 'run.json').read_text())['metrics'])

    drawn = tmp_path / 'detect'
    val_image = next((shapes_root / 'images' / 'val').glob('*.png'))
    assert detect_cli.main(['--checkpoint', str(out / 'last.pth'), '--score-threshold', '0', '--out-dir', str(drawn),
                            str(val_image)]) == 0
    assert (drawn / val_image.name).is_file()

    # ONNX with dynamic height and width: compared on images of other sizes than the export's
    model = trained.model
    randomize_bn_stats(model, seed=2)  # distinct scores, so the top detections have one order
    path = export_onnx(model, tmp_path / 'cn.onnx', 'detection', (64, 64), 17, dynamic=True)
    check = validate_onnx(path, model, 'detection', (64, 64), images=[torch.rand(3, 97, 131), torch.rand(3, 150, 90)])
    assert check['ok'] and check['compared_boxes'] == 40, check


def test_the_tools_refuse_bad_centernet_input_in_one_line(shapes_root, tmp_path, caplog):
    from hardnet_backbones.cli import evaluate as evaluate_cli
    from hardnet_backbones.cli import train as train_cli

    from .helpers import ROOT, detection_overrides
    config = str(ROOT / 'configs' / 'detection' / 'shapes_centernet_hardnet68.yaml')
    base = [f'--set={o}' for o in detection_overrides(shapes_root, tmp_path / 'run', epochs=2)]
    cases = [
        (['--set=train.scheduler=step'], 'train.scheduler=step needs train.milestones'),
        (['--set=train.scheduler=step', '--set=train.milestones=[1, 5]'], 'at or past train.epochs=2'),
        (['--set=model.kwargs={size: 64, weights: ' + str(tmp_path / 'none.pth') + '}'], 'not found'),
        (['--set=model.kwargs={size: 60}'], 'multiple of 32'),
    ]
    for extra, message in cases:
        caplog.clear()
        assert train_cli.main([config, *base, *extra]) == 2, extra
        errors = [r for r in caplog.records if r.levelname == 'ERROR']
        assert len(errors) == 1 and message in errors[0].getMessage(), (extra, caplog.text)
        assert not (tmp_path / 'run').exists()
    # a published-layout file for 80 classes, evaluated on the 3-class shapes data
    published_file(tmp_path / 'coco68.pth', 'centernet_hardnet68')
    caplog.clear()
    assert evaluate_cli.main([config, *base, '--checkpoint', str(tmp_path / 'coco68.pth')]) == 2
    assert '80 heatmap classes, the model 3: build it with num_classes=81' in caplog.text
