"""Segmentation builders, data, augmentation alignment, losses, metrics and the engine on shapes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hardnet_backbones.data.segmentation import cityscapes_segmentation, folder_segmentation
from hardnet_backbones.data.transforms import segmentation_train_transform
from hardnet_backbones.engine import trainer
from hardnet_backbones.engine.config import load_config
from hardnet_backbones.errors import CheckpointError
from hardnet_backbones.evaluation.segmentation import confusion_matrix, metrics_from_confusion
from hardnet_backbones.models import create_model, fcn_hardnet68, list_models
from hardnet_backbones.tasks import build_model_from_config
from hardnet_backbones.tasks.losses import SegmentationLoss, bootstrapped_cross_entropy

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize('name', list_models('segmentation'))
def test_builder_outputs_at_input_resolution(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 72, 104)
    out = model(x)
    expected = {'out'} if name.startswith(('lraspp', 'fchardnet')) else {'out', 'aux'}
    assert set(out) == expected
    for value in out.values():
        assert value.shape == (2, 5, 72, 104)
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_builder_options():
    assert set(create_model('fcn_hardnet68', num_classes=3, aux_loss=False).eval()(
        torch.randn(1, 3, 64, 64))) == {'out'}
    deeplab = create_model('deeplabv3_hardnet68', num_classes=3)
    assert deeplab.backbone.body.feature_info.reduction() == [8, 8]
    deeplab16 = create_model('deeplabv3_hardnet68', num_classes=3, output_stride=16)
    assert deeplab16.backbone.body.feature_info.reduction() == [16, 16]
    lraspp = create_model('lraspp_hardnet39ds', num_classes=3)
    assert lraspp.backbone.body.feature_info.reduction() == [8, 16]
    assert lraspp.backbone.channels == {'low': 320, 'high': 640}  # the last stage is not run
    assert not any(k.startswith('backbone.body.features_block4') for k in lraspp.state_dict())
    dilated = create_model('lraspp_hardnet39ds', num_classes=3, dilated_last_stage=True)
    assert dilated.backbone.body.feature_info.reduction() == [8, 16]
    assert dilated.backbone.channels == {'low': 320, 'high': 1024}
    with pytest.raises(ValueError, match='output_stride 8 or 16'):
        create_model('deeplabv3_hardnet68', output_stride=32)
    with pytest.raises(TypeError):
        fcn_hardnet68(3)


def test_weights_of_the_earlier_lraspp_layout_name_the_option_that_loads_them():
    old_weights = create_model('lraspp_hardnet39ds', num_classes=3, dilated_last_stage=True).state_dict()
    cfg = load_config(overrides=['task=segmentation', 'model.name=lraspp_hardnet39ds'])
    with pytest.raises(CheckpointError, match='set model.kwargs.dilated_last_stage=true'):
        build_model_from_config(cfg, 3, old_weights)
    cfg = load_config(overrides=['task=segmentation', 'model.name=lraspp_hardnet39ds',
                                 'model.kwargs={dilated_last_stage: true}'])
    model = build_model_from_config(cfg, 3, old_weights)
    assert model.backbone.channels['high'] == 1024


@pytest.mark.slow
def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = create_model('fcn_hardnet39ds', num_classes=3, output_stride=16).train()
    x = torch.rand(2, 3, 64, 96)
    target = torch.zeros(2, 64, 96, dtype=torch.long)
    target[:, 10:40, 20:60] = 1
    target[1, 40:60, 60:90] = 2
    x[:, 0][target == 1] += 1.0
    x[:, 2][target == 2] += 1.0
    criterion = SegmentationLoss(aux_weight=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss, parts = criterion(model(x), target)
        assert set(parts) == {'out', 'aux'}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_miou_of_ground_truth_is_one_and_matches_hand_computation():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    perfect = metrics_from_confusion(confusion_matrix(target.clamp(max=2), target, 3), ['a', 'b', 'c'])
    assert perfect['mIoU'] == 1.0 and perfect['pixel_accuracy'] == 1.0
    # rows = truth, columns = prediction
    confusion = torch.tensor([[8, 2, 0], [1, 5, 4], [0, 0, 0]])
    metrics = metrics_from_confusion(confusion, ['a', 'b', 'c'])
    iou_a = 8 / (10 + 9 - 8)
    iou_b = 5 / (10 + 7 - 5)
    iou_c = 0 / (0 + 4 - 0)  # predicted but absent: counts, as an IoU of 0
    assert metrics['per_class_iou'] == pytest.approx({'a': iou_a, 'b': iou_b, 'c': iou_c})
    assert metrics['mIoU'] == pytest.approx((iou_a + iou_b + iou_c) / 3)
    assert metrics['pixel_accuracy'] == pytest.approx(13 / 20)
    assert metrics['mean_accuracy'] == pytest.approx((8 / 10 + 5 / 10) / 2)
    absent = metrics_from_confusion(torch.tensor([[3, 0], [0, 0]]), ['a', 'b'])
    assert absent['per_class_iou'] == {'a': 1.0, 'b': None} and absent['mIoU'] == 1.0


def test_bootstrapped_cross_entropy_matches_hand_computation():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0] = torch.tensor([4.0, 0.0, -1.0, 2.0])  # class-0 logit; class 1 stays 0
    target = torch.tensor([[[0, 0, 0, 255]]])
    pixel = [F.cross_entropy(logits[0, :, 0, i][None], target[0, 0, i][None]).item() for i in range(3)]
    # pixel losses: ~0.018, 0.693, 1.313 (the 4th pixel is ignored)
    assert bootstrapped_cross_entropy(logits, target, min_k=2, threshold=0.3).item() == pytest.approx(
        (pixel[1] + pixel[2]) / 2)  # 2nd largest 0.693 > 0.3: mean of all losses above 0.3
    assert bootstrapped_cross_entropy(logits, target, min_k=1, threshold=2.0).item() == pytest.approx(
        pixel[2])  # the largest is below 2.0: mean of the top 1
    assert bootstrapped_cross_entropy(logits, target, min_k=1, threshold=0.5).item() == pytest.approx(
        (pixel[1] + pixel[2]) / 2)
    assert bootstrapped_cross_entropy(logits, target, min_k=10, threshold=5.0).item() == pytest.approx(
        sum(pixel) / 3)  # fewer labelled pixels than min_k: all of them


def _write_pair(folder, name, image, mask):
    (folder / 'images' / 'train').mkdir(parents=True, exist_ok=True)
    (folder / 'masks' / 'train').mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / 'images' / 'train' / f'{name}.png')
    Image.fromarray(mask).save(folder / 'masks' / 'train' / f'{name}.png')


def test_out_of_range_mask_values_name_the_file(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 7
    mask[6:8, 6:8] = 255  # ignore is fine
    _write_pair(tmp_path, 'bad', np.zeros((16, 16, 3), np.uint8), mask)
    with pytest.raises(ValueError, match=r'mask values outside the 2 classes .*: 7 in .*bad.png'):
        folder_segmentation(tmp_path, 'train', ['bg', 'fg'])  # checked when built, not when a worker reads it
    with pytest.raises(FileNotFoundError, match='no images under'):
        folder_segmentation(tmp_path, 'val', ['bg', 'fg'])


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    city = tmp_path / 'leftImg8bit' / 'val' / 'ulm'
    gt = tmp_path / 'gtFine' / 'val' / 'ulm'
    city.mkdir(parents=True)
    gt.mkdir(parents=True)
    Image.new('RGB', (4, 2)).save(city / 'ulm_000000_000019_leftImg8bit.png')
    Image.fromarray(np.array([[7, 26, 0, 33], [24, 1, 11, 23]], np.uint8)).save(
        gt / 'ulm_000000_000019_gtFine_labelIds.png')
    _, mask = cityscapes_segmentation(tmp_path, 'val')[0]
    assert mask.tolist() == [[0, 13, 255, 18], [11, 255, 2, 10]]


@pytest.mark.parametrize('seed', range(8))
def test_augmented_masks_stay_aligned(seed):
    colors = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[5:35, 10:45] = 1
    mask[30:55, 40:75] = 2
    mask[0:4, :] = 255  # an unlabelled strip keeps its ignore value
    image = colors[np.minimum(mask, 2) * (mask != 255)]
    transform = segmentation_train_transform((64, 64), MEAN, STD, scale=(0.6, 1.6), color_jitter_p=0.0)
    transform.set_random_seed(seed)
    out = transform(image=image, mask=mask)
    assert out['image'].shape == (64, 64, 3) and out['mask'].shape == (64, 64)
    rgb = out['image'] * np.array(STD) * 255 + np.array(MEAN) * 255
    labels = out['mask']
    for cls in (1, 2):
        # interior pixels (whole 3x3 neighbourhood of the class): free of interpolation blur at edges
        padded_labels = np.pad(labels == cls, 1)
        where = np.ones_like(labels, dtype=bool)
        for dy in range(3):
            for dx in range(3):
                where &= padded_labels[dy:dy + labels.shape[0], dx:dx + labels.shape[1]]
        if where.sum() < 20:
            continue
        agree = (np.abs(rgb[where] - colors[cls]).max(1) < 60).mean()
        assert agree > 0.99, (cls, agree)
    padded = (np.abs(rgb - np.array(MEAN) * 255).max(2) < 2)
    assert set(np.unique(labels[padded])) <= {255}  # padding is ignored, not background


@pytest.mark.slow
def test_engine_trains_segmentation_on_shapes(shapes_root, tmp_path):
    out = tmp_path / 'seg'
    cfg = load_config(ROOT / 'configs' / 'segmentation' / 'shapes_fcn_hardnet39ds.yaml', [
        f'data.root={shapes_root}', f'output_dir={out}', 'train.epochs=2', 'train.batch_size=2',
        'data.num_workers=0', 'data.crop_size=[64, 64]', 'train.eval_every=1', 'train.save_images=1',
        'loss.name=bootstrapped_cross_entropy', 'loss.bootstrap_min_k=64'])
    metrics = trainer.train(cfg)
    assert 0 <= metrics['mIoU'] <= 1
    assert set(metrics['per_class_iou']) == {'background', 'circle', 'rectangle', 'triangle'}
    records = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in records] == [1, 2] and {'loss_out', 'loss_aux', 'mIoU'} <= set(records[-1])
    overlay = Image.open(out / 'visuals' / 'overlay_0000.png')
    assert overlay.size == (3 * 80, 64)  # image | truth | prediction
    assert (out / 'history.png').is_file()
