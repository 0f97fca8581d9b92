"""SSD builders, detection data and augmentation, COCO / VOC metrics."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hardnet_backbones.data.detection import CocoDetectionDataset, VOCDetectionDataset, coco_from_dict
from hardnet_backbones.data.transforms import detection_train_transform
from hardnet_backbones.evaluation.detection import coco_map, voc_ap50
from hardnet_backbones.models import create_model, list_models, ssdlite320_hardnet39ds
from tests.helpers import two_images_with_targets

# on timm feature backbones; the FPN detectors: test_fpn_detectors.py; the published SSD512s: test_ssd512.py
BUILDERS = [n for n in list_models('detection') if n.startswith('ssd') and not n.startswith('ssd512')]
NUM_MAPS = {'ssd300_hardnet68': 6, 'ssdlite320_hardnet39ds': 6, 'ssdlite320_hardnet68ds': 6}


@pytest.mark.slow
@pytest.mark.parametrize('name', BUILDERS)
def test_builder_train_and_eval_contract(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, size=128)
    images, targets = two_images_with_targets()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {'bbox_regression', 'classification'}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        maps = model.backbone(torch.rand(1, 3, 128, 128))
        outputs = model(images)
    assert list(maps) == [str(i) for i in range(NUM_MAPS[name])]
    body_channels = model.backbone.body.feature_info.channels()
    assert [m.shape[1] for m in maps.values()][:2] == body_channels
    sizes = [m.shape[-1] for m in maps.values()]
    expected = [math.ceil(128 / model.backbone.body.feature_info.reduction()[0])]
    while len(expected) < len(sizes):
        expected.append(math.ceil(expected[-1] / 2))
    assert sizes == expected
    for out, img in zip(outputs, images):
        assert set(out) == {'boxes', 'labels', 'scores'}
        assert out['boxes'].shape[1] == 4 and len(out['labels']) == len(out['scores']) == len(out['boxes'])
        if len(out['boxes']):
            assert out['boxes'][:, 2].max() <= img.shape[2] and out['boxes'][:, 3].max() <= img.shape[1]
            assert 1 <= out['labels'].min() and out['labels'].max() <= 3


def test_builders_are_keyword_only_and_validate():
    with pytest.raises(TypeError):
        ssdlite320_hardnet39ds(4)
    with pytest.raises(ValueError, match='num_classes'):
        create_model('ssdlite320_hardnet39ds', num_classes=1)
    with pytest.raises(ValueError, match='unknown model'):
        create_model('ssd300_resnet')


@pytest.mark.slow
def test_weights_backbone_and_trainable_layers(hardnet39ds_weights):
    from torchvision.ops import FrozenBatchNorm2d
    reference = torch.load(hardnet39ds_weights, weights_only=True)
    model = create_model('ssdlite320_hardnet39ds', num_classes=3,
                         weights_backbone=str(hardnet39ds_weights), trainable_backbone_layers=2)
    body = model.backbone.body
    assert torch.equal(body.features_stem_conv1.conv.weight, reference['base.0.conv.weight'])
    # levels: stem(0), stride 4 (1), 8 (2), 16 (3), 32 (4): the last two train
    assert not any(p.requires_grad for p in body.features_block2.parameters())
    assert isinstance(body.features_transition2.norm, FrozenBatchNorm2d)
    assert all(p.requires_grad for p in body.features_block3.parameters())
    assert all(p.requires_grad for p in model.head.parameters())

    frozen = create_model('ssdlite320_hardnet39ds', num_classes=3,
                          weights_backbone=str(hardnet39ds_weights), trainable_backbone_layers=0)
    assert not any(p.requires_grad for p in frozen.backbone.body.parameters())
    with pytest.raises(ValueError, match='trainable_backbone_layers'):
        create_model('ssdlite320_hardnet39ds', weights_backbone=str(hardnet39ds_weights),
                     trainable_backbone_layers=9)
    scratch = create_model('ssdlite320_hardnet39ds', num_classes=3, trainable_backbone_layers=0)
    assert all(p.requires_grad for p in scratch.parameters())  # torchvision: no weights -> all train


def _two_images():
    rng = np.random.default_rng(0)
    images, targets = [], []
    for boxes, labels in [([[8, 10, 50, 60]], [1]), ([[30, 20, 90, 80], [5, 5, 25, 30]], [2, 1])]:
        img = rng.uniform(0, 0.3, (3, 96, 96)).astype(np.float32)
        for (x1, y1, x2, y2), label in zip(boxes, labels):
            img[label - 1, y1:y2, x1:x2] = 1.0
        images.append(torch.from_numpy(img))
        targets.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor(labels)))
    return images, targets


@pytest.mark.slow
def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = create_model('ssdlite320_hardnet39ds', num_classes=3, size=96).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, targets = _two_images()
    losses = []
    for _ in range(8):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def _gt_coco():
    return coco_from_dict(dict(
        images=[dict(id=1, file_name='a.png', width=100, height=100),
                dict(id=2, file_name='b.png', width=100, height=100)],
        categories=[dict(id=1, name='a'), dict(id=7, name='b')],
        annotations=[dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 30, 40], area=1200, iscrowd=0),
                     dict(id=2, image_id=1, category_id=7, bbox=[50, 50, 40, 40], area=1600, iscrowd=0),
                     dict(id=3, image_id=2, category_id=1, bbox=[5, 5, 60, 60], area=3600, iscrowd=0)]))


def test_coco_map_of_ground_truth_is_one():
    coco = _gt_coco()
    results = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=1.0)
               for a in coco.dataset['annotations']]
    metrics = coco_map(coco, results)
    assert metrics['mAP'] == pytest.approx(1.0) and metrics['AP50'] == pytest.approx(1.0)
    assert metrics['APs'] is None  # no small objects: COCOeval's -1 is reported as None
    assert voc_ap50(coco, results) == pytest.approx(1.0)
    assert coco_map(coco, [])['mAP'] == 0.0


def test_voc_ap50_matches_hand_computation():
    coco = _gt_coco()
    results = [
        dict(image_id=1, category_id=1, bbox=[10, 10, 30, 40], score=0.9),  # TP
        dict(image_id=2, category_id=1, bbox=[70, 70, 20, 20], score=0.8),  # FP
        dict(image_id=2, category_id=1, bbox=[6, 6, 60, 60], score=0.7),  # TP
        dict(image_id=1, category_id=7, bbox=[0, 0, 10, 10], score=0.5),  # FP, class b never found
    ]
    # class a: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3; class b: 0
    assert voc_ap50(coco, results) == pytest.approx((0.5 + 0.5 * 2 / 3 + 0.0) / 2)


def _write_coco(tmp_path, annotations, images=None, categories=None, make_files=True):
    images = images or [dict(id=1, file_name='a.png', width=64, height=48)]
    if make_files:
        for img in images:
            Image.new('RGB', (img['width'], img['height'])).save(tmp_path / img['file_name'])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=annotations,
                                    categories=categories or [dict(id=3, name='thing')])))
    return path


def test_coco_dataset_cleans_boxes(tmp_path, caplog):
    anns = [dict(id=1, image_id=1, category_id=3, bbox=[10, 5, 20, 10]),
            dict(id=2, image_id=1, category_id=3, bbox=[50, 40, 30, 30]),  # leaves the image: clipped
            dict(id=3, image_id=1, category_id=3, bbox=[5, 5, 0, 10]),  # zero width: dropped
            dict(id=4, image_id=1, category_id=3, bbox=[70, 60, 5, 5]),  # entirely outside: dropped
            dict(id=5, image_id=1, category_id=3, bbox=[0, 0, 64, 48], iscrowd=1)]  # crowd: not a target
    images = [dict(id=1, file_name='a.png', width=64, height=48), dict(id=2, file_name='b.png', width=32, height=32)]
    ds = CocoDetectionDataset(tmp_path, _write_coco(tmp_path, anns, images))
    assert len(ds) == 2 and ds.num_classes == 2 and ds.label_to_cat_id == {1: 3}
    image, target = ds[0]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32
    assert target['boxes'].tolist() == [[10, 5, 30, 15], [50, 40, 64, 48]]
    assert target['labels'].tolist() == [1, 1]
    assert ds[1][1]['boxes'].shape == (0, 4)  # image without boxes is kept
    assert '2 boxes have no area inside their image' in caplog.text
    # evaluation ground truth: the same clipped box, the dropped boxes ignored like the crowd
    assert ds.coco.loadAnns(2)[0]['bbox'] == [50, 40, 14, 8]
    assert sorted(ds.coco.getAnnIds(iscrowd=True)) == [3, 4, 5]


@pytest.mark.parametrize('ann, message', [
    (dict(id=9, image_id=1, category_id=3, bbox=[1, 2, 3]), r'annotation 9 has a malformed bbox \[1, 2, 3\]'),
    (dict(id=9, image_id=1, category_id=3, bbox=[1, 2, 'x', 4]), 'annotation 9 has a malformed bbox'),
    (dict(id=9, image_id=5, category_id=3, bbox=[1, 2, 3, 4]), 'annotation 9 refers to unknown image_id 5'),
    (dict(id=9, image_id=1, category_id=8, bbox=[1, 2, 3, 4]), 'annotation 9 has category_id 8 not in'),
])
def test_malformed_coco_annotations_are_named(tmp_path, ann, message):
    path = _write_coco(tmp_path, [ann])
    with pytest.raises(ValueError, match=message) as info:
        CocoDetectionDataset(tmp_path, path)
    assert 'ann.json' in str(info.value)


def test_broken_coco_files_fail_clearly(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [}')
    with pytest.raises(ValueError, match='bad.json is not valid JSON'):
        CocoDetectionDataset(tmp_path, bad)
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match='missing or malformed "annotations"'):
        CocoDetectionDataset(tmp_path, bad)
    missing = _write_coco(tmp_path, [], images=[dict(id=1, file_name='nope.png', width=8, height=8)], make_files=False)
    with pytest.raises(FileNotFoundError, match='image files not found: .*nope.png'):
        CocoDetectionDataset(tmp_path, missing)


def _voc_xml(objects, width=64, height=48):
    objs = ''.join(
        f'<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>'
        f'<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>' for n, b, d in objects)
    return (f'<annotation><filename>im.jpg</filename><size><width>{width}</width><height>{height}</height>'
            f'<depth>3</depth></size>{objs}</annotation>')


def test_voc_dataset(tmp_path):
    (tmp_path / 'Annotations').mkdir()
    (tmp_path / 'JPEGImages').mkdir()
    (tmp_path / 'ImageSets' / 'Main').mkdir(parents=True)
    Image.new('RGB', (64, 48)).save(tmp_path / 'JPEGImages' / 'im.jpg')
    (tmp_path / 'ImageSets' / 'Main' / 'val.txt').write_text('im\n')
    (tmp_path / 'Annotations' / 'im.xml').write_text(
        _voc_xml([('dog', (11, 6, 30, 20), 0), ('cat', (1, 1, 10, 10), 1)]))
    ds = VOCDetectionDataset(tmp_path, 'val')
    _, target = ds[0]
    assert target['boxes'].tolist() == [[10, 5, 30, 20]]
    assert target['labels'].tolist() == [12]  # 'dog' is the 12th VOC class
    assert len(ds.coco.getAnnIds(iscrowd=True)) == 1  # the difficult cat is ignored in evaluation
    (tmp_path / 'Annotations' / 'im.xml').write_text(_voc_xml([('unicorn', (1, 1, 5, 5), 0)]))
    with pytest.raises(ValueError, match="im.xml: object 0 has class 'unicorn', which is not among"):
        VOCDetectionDataset(tmp_path, 'val')
    (tmp_path / 'Annotations' / 'im.xml').write_text('<annotation><size>')
    with pytest.raises(ValueError, match='im.xml: malformed VOC annotation'):
        VOCDetectionDataset(tmp_path, 'val')


@pytest.mark.parametrize('seed', range(12))
def test_augmented_boxes_stay_on_their_objects(seed):
    """Each box must tightly frame its solid-coloured object after zoom-out, crop, flip and resize."""
    rng = np.random.default_rng(seed)
    image = (rng.uniform(0, 60, (90, 120, 3))).astype(np.uint8)
    boxes = np.array([[10, 15, 50, 60], [70, 30, 110, 80]], dtype=np.float32)
    colors = [(255, 0, 0), (0, 0, 255)]
    for (x1, y1, x2, y2), color in zip(boxes.astype(int), colors):
        image[y1:y2, x1:x2] = color
    transform = detection_train_transform(96, photometric_p=0.0)
    transform.set_random_seed(seed)
    out = transform(image=image, bboxes=boxes, labels=np.array([0, 1]))
    assert out['image'].shape == (96, 96, 3)
    for box, label in zip(out['bboxes'], out['labels']):
        channel = 0 if label == 0 else 2
        other = 2 - channel
        mask = (out['image'][..., channel] > 160) & (out['image'][..., other] < 100)
        ys, xs = np.nonzero(mask)
        assert len(xs), 'object vanished but its box was kept'
        x1, y1, x2, y2 = box
        # the visible object and its box agree to within interpolation blur (2 px)
        assert abs(xs.min() - x1) <= 2 and abs(ys.min() - y1) <= 2
        assert abs(xs.max() + 1 - x2) <= 2 and abs(ys.max() + 1 - y2) <= 2


@pytest.mark.parametrize('name', ['ssdlite320_hardnet39ds', 'ssdlite320_hardnet68ds'])
def test_ssdlite_from_scratch_uses_torchvisions_scratch_recipe(name):
    """Without backbone weights, torchvision's SSDLite recipe: N(0, 0.03) convolutions, BatchNorm eps 1e-3 /
    momentum 0.03 (on the shapes demo it lifts COCO mAP from 0.39 to 0.59, equal to torchvision's MobileNetV3)."""
    torch.manual_seed(0)
    backbone = create_model(name, num_classes=4).backbone
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.03 for m in norms)
    weights = torch.cat([m.weight.flatten() for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.03, rel=0.05) and abs(weights.mean().item()) < 1e-3
    ssd300 = create_model('ssd300_hardnet68', num_classes=4).backbone  # SSD keeps He init
    assert all(m.momentum == 0.1 for m in ssd300.modules() if isinstance(m, torch.nn.BatchNorm2d))
