"""SSD512-HarDNet68 / -85 as published, in torchvision's SSD: the published files load strictly, the head's outputs
equal a literal re-implementation on the same image, the anchors are the published priors."""
import json

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from hardnet_backbones.errors import CheckpointError
from hardnet_backbones.models import create_model
from hardnet_backbones.models.ssd512 import SSD512_HarDNet68_Weights, ssd512_checkpoint_filter

from .helpers import KEYS_JSON, randomize_bn_stats, two_images_with_targets
from .reference_ssd512 import ReferenceSSD512, reference_priors

VARIANTS = {'ssd512_hardnet68': 68, 'ssd512_hardnet85': 85}
PUBLISHED = {'ssd512_hardnet68': (433, 25_700_414), 'ssd512_hardnet85': (535, 38_782_074)}


def published_keys(name):
    return json.loads((KEYS_JSON.parent / f'{name}_checkpoint_keys.json').read_text())['keys']


def reference(name, seed=0):
    torch.manual_seed(seed)
    net = ReferenceSSD512(VARIANTS[name]).eval()
    randomize_bn_stats(net, seed)
    with torch.no_grad():
        for p in net.extras.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # non-zero biases too
    return net


@pytest.mark.parametrize('name', list(VARIANTS))
def test_published_files_load_strictly_and_have_the_published_size(name, tmp_path):
    keys = published_keys(name)
    assert list(reference(name).state_dict()) == list(keys)  # the literal re-implementation is the published layout
    path = tmp_path / 'coco.pth'
    torch.save({f'module.{k}': v for k, v in reference(name).state_dict().items()}, path)  # a plain state dict
    model = create_model(name, weights=path, trainable_backbone_layers=4)
    entries, parameters = PUBLISHED[name]
    assert len(model.state_dict()) == entries + 1  # and transform.inclusive_boxes, on for the published file
    assert sum(p.numel() for p in model.parameters()) == parameters and model.transform.inclusive_boxes == 1
    assert model.head.classification_head.num_columns == 81


@pytest.mark.parametrize('name', list(VARIANTS))
def test_head_outputs_equal_the_published_network_on_the_same_image(name):
    net = reference(name)
    model = create_model(name, num_classes=81).eval()
    model.load_state_dict(ssd512_checkpoint_filter(net.state_dict(), model))
    rgb = torch.randint(0, 256, (3, 512, 512), generator=torch.Generator().manual_seed(0)).float() / 255
    bgr_minus_means = rgb.flip(0) * 255 - torch.tensor([104.0, 117.0, 123.0]).view(3, 1, 1)
    with torch.no_grad():
        loc, conf = net(bgr_minus_means[None])
        images, _ = model.transform([rgb])  # 512 x 512: the resize is the identity, as published
        out = model.head(list(model.backbone(images.tensors).values()))
    torch.testing.assert_close(out['bbox_regression'], loc, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out['cls_logits'], conf, rtol=1e-3, atol=1e-3)


def test_anchors_are_the_published_priors():
    model = create_model('ssd512_hardnet68', num_classes=81).eval()
    images = ImageList(torch.zeros(1, 3, 512, 512), [(512, 512)])
    with torch.no_grad():
        maps = list(model.backbone(images.tensors).values())
    anchors = model.anchor_generator(images, maps)[0]
    priors = reference_priors()
    expected = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1) * 512
    assert anchors.shape == (32756, 4)
    torch.testing.assert_close(anchors, expected, rtol=0, atol=1e-3)
    assert model.anchor_generator.num_anchors_per_location() == [6, 6, 6, 6, 6, 4, 4]


def test_imagenet_weights_load_into_the_base_and_bad_files_are_one_line(tmp_path):
    from .reference_hardnet import RefHarDNet
    classifier = tmp_path / 'hardnet68.pth'
    torch.manual_seed(0)
    torch.save(RefHarDNet('hardnet68').state_dict(), classifier)  # the published ImageNet layout
    state = torch.load(classifier, weights_only=True)
    model = create_model('ssd512_hardnet68', weights_backbone=str(classifier), trainable_backbone_layers=1)
    assert torch.equal(model.backbone.base[11].layers[3].conv.weight, state['base.11.layers.3.conv.weight'])
    assert not model.backbone.base[0].conv.weight.requires_grad and model.backbone.base[12].conv.weight.requires_grad
    coco = tmp_path / 'coco.pth'
    published = reference('ssd512_hardnet68').state_dict()
    torch.save(published, coco)
    with pytest.raises(ValueError, match='counts the background .* pass num_classes=81'):
        create_model('ssd512_hardnet68', weights=coco, num_classes=80)
    # another class count: a new class head, everything else from the file
    tuned = create_model('ssd512_hardnet68', weights=coco, num_classes=4)
    assert tuned.head.classification_head.module_list[0].weight.shape[0] == 6 * 4
    assert torch.equal(tuned.head.regression_head.module_list[3].weight, published['loc.3.weight'])
    assert torch.equal(tuned.backbone.extras[9].weight, published['extras.9.weight'])
    with pytest.raises(CheckpointError, match='the weights have 81 classes .* build it with num_classes=81'):
        ssd512_checkpoint_filter(published, create_model('ssd512_hardnet68', num_classes=4))
    assert SSD512_HarDNet68_Weights.COCO.meta['categories'][1] == 'person'


@pytest.mark.parametrize('name', list(VARIANTS))
def test_train_and_eval_contract_at_another_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, size=320)
    images, targets = two_images_with_targets()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {'bbox_regression', 'classification'}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        maps = model.backbone(torch.rand(1, 3, 320, 320))
        outputs = model(images)
    assert [m.shape[-1] for m in maps.values()] == [40, 20, 10, 5, 3, 2, 1]
    assert [m.shape[1] for m in maps.values()] == model.backbone.out_channels
    assert all(set(o) == {'boxes', 'labels', 'scores'} for o in outputs)
    with pytest.raises(ValueError, match='at least 257 pixels'):
        create_model(name, size=256)


def test_a_published_layout_file_evaluates_with_a_config(shapes_root, tmp_path):
    from hardnet_backbones.cli import evaluate as evaluate_cli

    from .helpers import DETECTION, detection_overrides
    torch.manual_seed(0)
    path = tmp_path / 'SSD512_HarDNet68_shapes.pth'
    torch.save({f'module.{k}': v for k, v in ReferenceSSD512(68, classes=4).state_dict().items()}, path)
    overrides = detection_overrides(shapes_root, tmp_path / 'unused', epochs=1, workers=0,
                                    extra=['model.name=ssd512_hardnet68', 'model.kwargs={size: 320}'])
    out = tmp_path / 'metrics.json'
    assert evaluate_cli.main([str(DETECTION), *(f'--set={o}' for o in overrides), '--checkpoint', str(path),
                              '--output', str(out)]) == 0
    assert 'mAP' in json.loads(out.read_text())['metrics']
