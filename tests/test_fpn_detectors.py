"""torchvision's FPN detectors on HarDNet: the FPN backbone helper, the builders' contracts, training."""
import json

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import hardnet_backbones
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.models import create_model, get_model_entry, hardnet_fpn_backbone, list_models
from hardnet_backbones.models.backbone import child_levels

from .helpers import ROOT

# SSD: test_detection.py; CenterNet: test_centernet.py
FPN_BUILDERS = [n for n in list_models('detection') if not n.startswith(('ssd', 'centernet'))]
SMALL = dict(min_size=96, max_size=128)  # the models resize their images themselves: keep the tests small
EXPECTED_LOSSES = {
    'fasterrcnn': {'loss_classifier', 'loss_box_reg', 'loss_objectness', 'loss_rpn_box_reg'},
    'maskrcnn': {'loss_classifier', 'loss_box_reg', 'loss_objectness', 'loss_rpn_box_reg', 'loss_mask'},
    'retinanet': {'classification', 'bbox_regression'},
    'fcos': {'classification', 'bbox_regression', 'bbox_ctrness'},
}


def _targets(images, with_masks: bool):
    targets = []
    for i, image in enumerate(images):
        h, w = image.shape[-2:]
        box = torch.tensor([[4.0 + i, 6.0, w / 2 + 10, h / 2 + 8]])
        target = dict(boxes=box, labels=torch.tensor([1 + i]))
        if with_masks:
            masks = torch.zeros(1, h, w, dtype=torch.uint8)
            x0, y0, x1, y1 = box[0].int().tolist()
            masks[0, y0:y1, x0:x1] = 1
            target['masks'] = masks
        targets.append(target)
    return targets


def test_every_family_is_registered_with_torchvisions_conventions():
    assert set(FPN_BUILDERS) == {'fasterrcnn_hardnet68_fpn', 'fasterrcnn_hardnet39ds_fpn',
                                 'fasterrcnn_hardnet39ds_320_fpn', 'retinanet_hardnet68_fpn', 'fcos_hardnet68_fpn',
                                 'maskrcnn_hardnet68_fpn'}
    for name in FPN_BUILDERS:
        entry = get_model_entry(name)
        assert entry.input_size is None  # they resize to min_size / max_size themselves
        assert {'num_classes', 'weights_backbone', 'trainable_backbone_layers', 'min_size', 'max_size'} <= set(
            entry.arguments())


@pytest.mark.slow
@pytest.mark.parametrize('name', FPN_BUILDERS)
def test_builder_train_and_eval_contract(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **SMALL)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 64)]  # different sizes in one batch
    family = name.split('_')[0]
    model.train()
    losses = model(images, _targets(images, with_masks=family == 'maskrcnn'))
    assert set(losses) == EXPECTED_LOSSES[family]
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for out, image in zip(outputs, images):
        assert set(out) == {'boxes', 'labels', 'scores'} | ({'masks'} if family == 'maskrcnn' else set())
        assert out['boxes'].shape[1] == 4 and len(out['labels']) == len(out['scores']) == len(out['boxes'])
        if len(out['boxes']):  # boxes in the original image's coordinates, labels without the background
            assert out['boxes'][:, 2].max() <= image.shape[2] and out['boxes'][:, 3].max() <= image.shape[1]
            assert 1 <= out['labels'].min() and out['labels'].max() <= 3
        if family == 'maskrcnn':
            assert out['masks'].shape == (len(out['boxes']), 1, *image.shape[-2:])


def test_fpn_backbone_maps_strides_and_channels():
    torch.manual_seed(0)
    fpn = hardnet_fpn_backbone('hardnet39ds', trainable_layers=None).eval()
    with torch.no_grad():
        maps = fpn(torch.rand(1, 3, 128, 160))
    assert list(maps) == ['0', '1', '2', '3', 'pool'] and fpn.out_channels == 256
    assert [tuple(m.shape[-2:]) for m in maps.values()] == [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    assert all(m.shape[1] == 256 for m in maps.values())
    p6p7 = hardnet_fpn_backbone('hardnet39ds', returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(128, 128),
                                out_channels=128).eval()
    with torch.no_grad():
        maps = p6p7(torch.rand(1, 3, 128, 128))
    assert list(maps) == ['0', '1', '2', 'p6', 'p7'] and [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2, 1]
    dilated = hardnet_fpn_backbone('hardnet39ds', returned_layers=[2, 3, 4], output_stride=16).eval()
    with torch.no_grad():
        sizes = [m.shape[-1] for m in dilated(torch.rand(1, 3, 128, 128)).values()]
    assert sizes == [16, 8, 8, 4]  # the last stage runs dilated at stride 16


def test_fpn_backbone_is_the_features_only_model_not_a_copy():
    fpn = hardnet_fpn_backbone('hardnet39ds', returned_layers=[3, 4])
    assert type(fpn.body).__name__ == 'FeatureListNet'
    assert fpn.body.feature_info.reduction() == [16, 32]


@pytest.mark.parametrize('trainable', range(6))
def test_trainable_backbone_layers_freeze_exactly_the_levels_they_say(hardnet39ds_weights, trainable):
    model = create_model('fasterrcnn_hardnet39ds_fpn', num_classes=3, weights_backbone=str(hardnet39ds_weights),
                         trainable_backbone_layers=trainable)
    body = model.backbone.body
    first_trained = 5 - trainable  # levels 0..4 (stem, strides 4..32): the last `trainable` ones train
    for (name, child), level in zip(body.named_children(), child_levels(body)):
        parameters = list(child.parameters())
        trained = level >= first_trained
        assert all(p.requires_grad == trained for p in parameters), (name, level, trainable)
        if not trained and any(isinstance(m, torch.nn.BatchNorm2d) for m in child.modules()):
            pytest.fail(f'{name} is frozen but keeps a BatchNorm that would update its statistics')
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())
    assert all(p.requires_grad for p in model.rpn.parameters())


def test_weights_backbone_load_into_the_fpn_backbone(hardnet39ds_weights):
    reference = torch.load(hardnet39ds_weights, weights_only=True)
    model = create_model('fasterrcnn_hardnet39ds_fpn', num_classes=3, weights_backbone=str(hardnet39ds_weights))
    assert torch.equal(model.backbone.body.features_stem_conv1.conv.weight, reference['base.0.conv.weight'])
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.body.modules())  # 3 levels train by default
    scratch = create_model('fasterrcnn_hardnet39ds_fpn', num_classes=3, trainable_backbone_layers=0)
    assert all(p.requires_grad for p in scratch.parameters())  # torchvision: no weights -> everything trains


def test_bad_arguments_and_images_are_value_errors(hardnet39ds_weights):
    with pytest.raises(TypeError):
        get_model_entry('fasterrcnn_hardnet39ds_fpn').builder(3)  # keyword-only, as torchvision's
    with pytest.raises(ValueError, match='num_classes counts the background too'):
        create_model('fcos_hardnet68_fpn', num_classes=1)
    with pytest.raises(ValueError, match=r'trainable_backbone_layers must be an integer in \[0, 5\]'):
        create_model('fasterrcnn_hardnet39ds_fpn', weights_backbone=str(hardnet39ds_weights),
                     trainable_backbone_layers=6)
    with pytest.raises(ValueError, match='returned_layers must be distinct levels'):
        hardnet_fpn_backbone('hardnet39ds', returned_layers=[0, 4])
    model = create_model('fasterrcnn_hardnet39ds_320_fpn', num_classes=3).eval()
    with pytest.raises(ValueError, match=r'FasterRCNN expects images of shape \(3, H, W\)'):
        model([torch.rand(4, 64, 64)])
    with pytest.raises(ValueError, match='FasterRCNN expects float images'):
        model([torch.zeros(3, 64, 64, dtype=torch.uint8)])


FPN_CONFIG = ROOT / 'configs' / 'detection' / 'shapes_fasterrcnn_hardnet39ds_320_fpn.yaml'
TV_CONFIG = ROOT / 'configs' / 'detection' / 'shapes_fasterrcnn_mobilenet_v3_large_320_fpn.yaml'


def _tiny_fpn_run(shapes_root, out):
    return [f'data.root={shapes_root}', f'output_dir={out}', 'train.epochs=1', 'train.batch_size=2',
            'data.num_workers=2', 'model.kwargs={min_size: 64, max_size: 96}', 'train.save_images=1',
            'train.warmup_epochs=0']


@pytest.mark.slow
@pytest.mark.parametrize('config', [FPN_CONFIG, TV_CONFIG], ids=['hardnet39ds', 'torchvision_mobilenet_v3'])
def test_the_engine_trains_and_evaluates_an_fpn_detector(shapes_root, tmp_path, config):
    from hardnet_backbones.engine.config import load_config
    from hardnet_backbones.engine.task import create_task

    out = tmp_path / 'run'
    cfg = load_config(config, _tiny_fpn_run(shapes_root, out))
    train_set, _ = create_task(cfg).build_datasets()
    image, _ = train_set[0]
    assert tuple(image.shape[-2:]) == (64, 80)  # not resized to a square: the model resizes it
    assert train_cli.main([str(config), *(f'--set={o}' for o in _tiny_fpn_run(shapes_root, out))]) == 0
    results = json.loads((out / 'results.json').read_text())
    assert {'mAP', 'AP50', 'voc_AP50'} <= set(results['metrics'])
    assert list((out / 'visuals').glob('*.png'))
    trained = hardnet_backbones.load_trained_model(out / 'last.pth')
    assert type(trained.model).__name__ == 'FasterRCNN' and trained.model.transform.min_size == (64,)


def test_keypoint_detectors_are_refused_by_the_engine_in_one_line(shapes_root, tmp_path, caplog):
    args = [str(FPN_CONFIG), f'--set=data.root={shapes_root}', f'--set=output_dir={tmp_path / "o"}']
    assert train_cli.main(args + ['--set=model.name=torchvision:keypointrcnn_resnet50_fpn']) == 2
    assert 'is not a detection model this engine trains yet: it learns from keypoints' in caplog.text
    assert not (tmp_path / 'o').exists()


@pytest.mark.slow
@pytest.mark.parametrize('name, low_threshold', [
    ('fasterrcnn_hardnet39ds_320_fpn', {}), ('maskrcnn_hardnet68_fpn', dict(box_score_thresh=0.0)),
    ('retinanet_hardnet68_fpn', dict(score_thresh=0.0)), ('fcos_hardnet68_fpn', dict(score_thresh=0.0))])
def test_onnx_export_matches_pytorch_for_every_family(tmp_path, name, low_threshold):
    from hardnet_backbones.deploy import OnnxRuntimeModel, export_onnx, validate_onnx

    torch.manual_seed(0)  # random weights: a threshold of 0 keeps detections to compare
    model = create_model(name, num_classes=3, min_size=96, max_size=128, **low_threshold).eval()
    path = export_onnx(model, tmp_path / f'{name}.onnx', 'detection', (96, 128))
    report = validate_onnx(path, model, 'detection', (96, 128), 1e-3)
    assert report['ok'] and report['detections'] > 0, report
    out = OnnxRuntimeModel(path, 'detection')([torch.rand(3, 80, 112)])[0]  # another size: dynamic axes
    expected = {'boxes', 'scores', 'labels'} | ({'masks'} if name.startswith('maskrcnn') else set())
    assert set(out) == expected
    if 'masks' in out:
        assert out['masks'].shape[1:] == (1, 80, 112)
