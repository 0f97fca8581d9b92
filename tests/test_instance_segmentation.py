"""Instance segmentation end to end: COCO polygons / RLE (crowds included) as per-instance masks, augmentation that
keeps masks, boxes and labels aligned, mask AP beside box AP, Mask R-CNN through the engine and the tools."""
import json
import logging
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import hardnet_backbones
from hardnet_backbones.cli import detect as detect_cli
from hardnet_backbones.cli import evaluate as evaluate_cli
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.data.detection import CocoDetectionDataset
from hardnet_backbones.data.instance_masks import boxes_from_masks, decode_segmentation, encode_mask
from hardnet_backbones.data.transforms import detection_train_transform
from hardnet_backbones.errors import DataError
from hardnet_backbones.evaluation.detection import coco_map, predictions_to_coco
from hardnet_backbones.visualization.draw import draw_detections
from tests.helpers import ROOT

H, W = 48, 64
MASK_CONFIG = ROOT / 'configs' / 'detection' / 'shapes_maskrcnn_hardnet68_fpn.yaml'


def _rectangle(x0, y0, x1, y1):
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _uncompressed_rle(mask):
    runs, value, count = [], 0, 0
    for v in mask.flatten(order='F'):  # COCO runs go down the columns, starting with a run of zeros
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    return dict(size=list(mask.shape), counts=runs + [count])


def _write_instances(tmp_path, red_objects=True):
    """One image with a polygon object, a compressed-RLE object and an uncompressed-RLE crowd region; the objects
    are painted pure red, so image and masks can be compared after any geometric transform."""
    polygon = _rectangle(4, 6, 20, 30)
    compressed = _rectangle(30, 10, 50, 26)
    crowd = _rectangle(52, 30, 62, 46)
    image = np.full((H, W, 3), 60, np.uint8)
    if red_objects:
        image[(polygon | compressed).astype(bool)] = (255, 0, 0)
    (tmp_path / 'images').mkdir(exist_ok=True)
    Image.fromarray(image).save(tmp_path / 'images' / 'a.png')
    annotations = [
        dict(id=1, image_id=1, category_id=1, bbox=[4, 6, 16, 24], area=384, iscrowd=0,
             segmentation=[[4, 6, 20, 6, 20, 30, 4, 30]]),
        dict(id=2, image_id=1, category_id=2, bbox=[30, 10, 20, 16], area=320, iscrowd=0,
             segmentation=encode_mask(compressed)),
        dict(id=3, image_id=1, category_id=1, bbox=[52, 30, 10, 16], area=160, iscrowd=1,
             segmentation=_uncompressed_rle(crowd)),
    ]
    coco = dict(images=[dict(id=1, file_name='a.png', width=W, height=H)], annotations=annotations,
                categories=[dict(id=1, name='box'), dict(id=2, name='slab')])
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(json.dumps(coco))
    return ann_file, dict(polygon=polygon, compressed=compressed, crowd=crowd)


def test_polygons_and_both_rle_forms_decode_to_the_drawn_masks(tmp_path):
    _, masks = _write_instances(tmp_path)
    polygon = decode_segmentation([[4, 6, 20, 6, 20, 30, 4, 30]], H, W)
    assert polygon.sum() == pytest.approx(masks['polygon'].sum(), rel=0.1)  # polygon edges rasterise inclusively
    assert (polygon[masks['polygon'].astype(bool)] == 1).all()
    assert (decode_segmentation(encode_mask(masks['compressed']), H, W) == masks['compressed']).all()
    assert (decode_segmentation(_uncompressed_rle(masks['crowd']), H, W) == masks['crowd']).all()
    assert boxes_from_masks(masks['compressed'][None]) == [[30.0, 10.0, 50.0, 26.0]]


def test_the_dataset_gives_one_mask_per_object_and_leaves_crowds_to_evaluation(tmp_path):
    ann_file, masks = _write_instances(tmp_path)
    dataset = CocoDetectionDataset(tmp_path / 'images', ann_file, masks=True)
    image, target = dataset[0]
    assert target['masks'].shape == (2, H, W) and target['masks'].dtype == torch.uint8
    assert target['labels'].tolist() == [1, 2]  # the crowd region is no training target
    assert (target['masks'][1].numpy() == masks['compressed']).all()
    assert dataset.coco.anns[3]['iscrowd'] == 1  # ... but an ignored region in evaluation
    # a box detector on the same file gets no masks
    assert 'masks' not in CocoDetectionDataset(tmp_path / 'images', ann_file)[0][1]


@pytest.mark.parametrize('problem, segmentation, message', [
    ('missing', None, 'has no "segmentation"'),
    ('short polygon', [[1, 2, 3, 4]], 'at least 3 points'),
    ('wrong size', dict(size=[10, 10], counts='abc'), 'is not the image size'),
    ('bad runs', dict(size=[H, W], counts=[5, 3]), 'summing to'),
])
def test_malformed_segmentations_are_refused_naming_file_and_annotation(tmp_path, problem, segmentation, message):
    ann_file, _ = _write_instances(tmp_path)
    coco = json.loads(ann_file.read_text())
    if segmentation is None:
        del coco['annotations'][1]['segmentation']
    else:
        coco['annotations'][1]['segmentation'] = segmentation
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=f'{ann_file}: annotation 2.*{message}'):
        CocoDetectionDataset(tmp_path / 'images', ann_file, masks=True)


@pytest.mark.parametrize('epoch', range(6))
def test_augmentation_keeps_masks_boxes_and_labels_on_their_objects(tmp_path, epoch):
    ann_file, _ = _write_instances(tmp_path)
    transform = detection_train_transform(None, photometric_p=0.0, zoom_out_p=1.0, iou_crop=True, hflip_p=0.5)
    dataset = CocoDetectionDataset(tmp_path / 'images', ann_file, transform, masks=True)
    dataset.set_epoch(epoch)
    image, target = dataset[0]
    masks, boxes, labels = target['masks'].bool(), target['boxes'], target['labels']
    assert len(masks) == len(boxes) == len(labels) >= 1
    red = (image[0] > 0.9) & (image[1] < 0.1)  # the objects' pixels, wherever flip, zoom-out and crop put them
    assert (masks.any(0) == red).all()  # masks moved with the image; the padded canvas belongs to no object
    assert boxes.tolist() == boxes_from_masks(masks.numpy())  # every box is its mask's box
    for mask, label in zip(masks, labels):
        aspect = (mask.any(0).sum() / mask.any(1).sum()).item()
        # the polygon object (label 1) is taller than wide, the RLE one (label 2) wider than tall, crops aside
        assert (label == 1) == (aspect < 1) or mask.sum() < 200


def test_an_object_the_crop_drops_takes_its_mask_along(tmp_path):
    ann_file, masks = _write_instances(tmp_path)
    right_half = A.Compose([A.Crop(x_min=24, y_min=0, x_max=W, y_max=H)], bbox_params=A.BboxParams(
        format='pascal_voc', label_fields=['labels'], min_width=1, min_height=1, clip=True))
    _, target = CocoDetectionDataset(tmp_path / 'images', ann_file, right_half, masks=True)[0]
    assert target['labels'].tolist() == [2]  # the polygon object (x 4-20) is gone, with its mask
    assert (target['masks'][0].numpy() == masks['compressed'][:, 24:]).all()
    assert target['boxes'].tolist() == [[6.0, 10.0, 26.0, 26.0]]


def test_ground_truth_as_predictions_scores_one_for_boxes_and_masks(tmp_path):
    ann_file, _ = _write_instances(tmp_path)
    dataset = CocoDetectionDataset(tmp_path / 'images', ann_file, masks=True)
    _, target = dataset[0]
    outputs = [dict(boxes=target['boxes'], labels=target['labels'], scores=torch.ones(2),
                    masks=target['masks'][:, None].float())]
    results = predictions_to_coco([1], outputs, dataset.label_to_cat_id)
    assert all(set(r['segmentation']) == {'size', 'counts'} for r in results)
    assert coco_map(dataset.coco, results)['mAP'] == pytest.approx(1.0)
    assert coco_map(dataset.coco, results, 'segm')['mAP'] == pytest.approx(1.0)
    # and a mask off its object scores 0 for masks while its box still scores
    outputs[0]['masks'] = torch.roll(outputs[0]['masks'], 12, dims=-1)
    shifted = predictions_to_coco([1], outputs, dataset.label_to_cat_id)
    assert coco_map(dataset.coco, shifted, 'segm')['mAP'] < 0.5 < coco_map(dataset.coco, shifted)['mAP']


def test_detections_are_drawn_with_their_masks():
    image = torch.full((3, H, W), 0.5)
    mask = torch.zeros(1, 1, H, W)
    mask[..., 10:30, 10:40] = 0.9
    args = (image, torch.tensor([[8., 8., 42., 32.]]), torch.tensor([1]), torch.tensor([0.9]), ['box'])
    plain = np.asarray(draw_detections(*args, min_side=0)).astype(int)
    tinted = np.asarray(draw_detections(*args, min_side=0, masks=mask)).astype(int)
    changed = np.abs(plain - tinted).sum(2) > 0
    assert changed[15:25, 15:35].all() and not changed[40:, :].any()


def _tiny_mask_run(shapes_root, out):
    return [f'--set=data.root={shapes_root}', f'--set=output_dir={out}', '--set=train.epochs=1',
            '--set=train.batch_size=2', '--set=data.num_workers=2', '--set=train.save_images=1',
            '--set=model.kwargs={min_size: 64, max_size: 96, box_score_thresh: 0.0}', '--set=train.warmup_epochs=0']


@pytest.mark.slow
def test_mask_rcnn_trains_evaluates_and_predicts_masks_through_the_tools(shapes_root, tmp_path):
    out = tmp_path / 'run'
    assert train_cli.main([str(MASK_CONFIG), *_tiny_mask_run(shapes_root, out)]) == 0
    metrics = json.loads((out / 'results.json').read_text())['metrics']
    assert {'mAP', 'segm_mAP', 'segm_AP50', 'voc_AP50'} <= set(metrics)
    record = json.loads((out / 'metrics.jsonl').read_text().splitlines()[-1])
    assert {'loss_mask', 'loss_classifier', 'loss_objectness', 'segm_mAP'} <= set(record)  # torchvision's names
    assert list((out / 'visuals').glob('*.png'))

    predictions = tmp_path / 'predictions'
    assert evaluate_cli.main(['--checkpoint', str(out / 'last.pth'), '--save-predictions', str(predictions)]) == 0
    results = json.loads((predictions / 'detections_coco.json').read_text())
    assert results and all(set(r) >= {'bbox', 'segmentation', 'score'} for r in results)
    first = results[0]
    image = json.loads((shapes_root / 'annotations' / 'val.json').read_text())['images'][0]
    assert mask_utils.decode(dict(first['segmentation'], counts=first['segmentation']['counts'].encode())).shape == (
        image['height'], image['width'])

    trained = hardnet_backbones.load_trained_model(out / 'last.pth')
    val_image = shapes_root / 'images' / 'val' / image['file_name']
    prediction = trained.model([trained.preprocess(Image.open(val_image).convert('RGB'))])[0]
    assert prediction['masks'].shape == (len(prediction['boxes']), 1, image['height'], image['width'])

    drawn = tmp_path / 'detect'
    assert detect_cli.main(['--checkpoint', str(out / 'last.pth'), '--score-threshold', '0', '--out-dir', str(drawn),
                            str(val_image)]) == 0
    assert (drawn / val_image.name).is_file()
    assert all('segmentation' in r for r in json.loads((drawn / 'detections_coco.json').read_text()))


def test_mask_rcnn_on_box_only_data_is_refused_in_one_line(shapes_root, tmp_path, caplog):
    data = tmp_path / 'data'
    (data / 'annotations').mkdir(parents=True)
    (data / 'images').symlink_to(shapes_root / 'images')
    for split in ('train', 'val'):
        coco = json.loads((shapes_root / 'annotations' / f'{split}.json').read_text())
        for ann in coco['annotations']:
            del ann['segmentation']
        (data / 'annotations' / f'{split}.json').write_text(json.dumps(coco))
    out = tmp_path / 'o'
    caplog.set_level(logging.ERROR)
    assert train_cli.main([str(MASK_CONFIG), *_tiny_mask_run(data, out)]) == 2
    assert 'has no "segmentation"; instance segmentation needs a polygon or RLE mask' in caplog.text
    assert 'Traceback' not in caplog.text


def test_mask_rcnn_on_voc_data_is_refused_in_one_line(tmp_path, caplog):
    args = [str(MASK_CONFIG), '--set=data.format=voc', f'--set=data.root={tmp_path}',
            f'--set=output_dir={tmp_path / "o"}']
    assert train_cli.main(args) == 2
    assert 'VOC XML files hold boxes only' in caplog.text


def _id_masks(tmp_path, values, suffix):
    """Two 48x64 images with id masks: objects are 10x12 blocks holding the given values."""
    (tmp_path / 'images' / 'sub').mkdir(parents=True)
    (tmp_path / 'masks' / 'sub').mkdir(parents=True)
    expected = {}
    for n in range(2):
        ids = np.zeros((H, W), np.uint16 if max(values) > 255 else np.uint8)
        for i, value in enumerate(values):
            ids[4 + 14 * i:14 + 14 * i, 5 + 10 * n:17 + 10 * n] = value
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / 'images' / 'sub' / f'ped{n}.png')
        Image.fromarray(ids).save(tmp_path / 'masks' / 'sub' / f'ped{n}{suffix}.png')
        expected[f'sub/ped{n}.png'] = ids
    return expected


def test_instance_id_pngs_become_one_mask_per_object(tmp_path):
    from hardnet_backbones.cli import instances_to_coco

    expected = _id_masks(tmp_path, [1, 2, 3], '_mask')
    out = tmp_path / 'annotations' / 'train.json'
    assert instances_to_coco.main(['--images', str(tmp_path / 'images'), '--masks', str(tmp_path / 'masks'),
                                   '--out', str(out), '--mask-suffix', '_mask', '--class-name', 'person']) == 0
    dataset = CocoDetectionDataset(tmp_path / 'images', out, masks=True)
    assert dataset.class_names == ['person']
    for index, record in enumerate(dataset.records):
        ids = expected[Path(record['file']).relative_to(tmp_path / 'images').as_posix()]
        _, target = dataset[index]
        assert target['labels'].tolist() == [1, 1, 1]  # ids are objects, not classes
        for value, mask in zip((1, 2, 3), target['masks'].numpy()):
            assert (mask == (ids == value)).all()


def test_cityscapes_instance_ids_give_objects_of_their_classes_only(tmp_path):
    from hardnet_backbones.data.instance_ids import instance_masks_to_coco

    _id_masks(tmp_path, [7, 26001, 26002, 24000], '_gtFine_instanceIds')
    coco = instance_masks_to_coco(tmp_path / 'images', tmp_path / 'masks', tmp_path / 'c.json', 'cityscapes',
                                  mask_suffix='_gtFine_instanceIds', progress=False)
    names = {c['id']: c['name'] for c in coco['categories']}
    assert [names[a['category_id']] for a in coco['annotations'][:3]] == ['person', 'car', 'car']  # road: none


def test_instance_ids_read_as_semantic_classes_are_refused_with_the_way_out(tmp_path):
    from hardnet_backbones.data.segmentation import folder_segmentation

    _id_masks(tmp_path, [1, 2, 3], '')
    for folder in ('images', 'masks'):
        (tmp_path / folder / 'sub').rename(tmp_path / folder / 'train')
    with pytest.raises(DataError, match=r'mask values outside .*: 2 in .*; 3 in .*instances_to_coco'):
        folder_segmentation(tmp_path, 'train', ['background', 'person'])


def test_images_without_id_masks_are_one_line(tmp_path, caplog):
    from hardnet_backbones.cli import instances_to_coco

    _id_masks(tmp_path, [1], '_mask')
    out = tmp_path / 'a.json'
    assert instances_to_coco.main(['--images', str(tmp_path / 'images'), '--masks', str(tmp_path / 'masks'),
                                   '--out', str(out)]) == 2
    assert '2 of 2 images have no mask' in caplog.text and 'set the suffix' in caplog.text
    assert not out.exists()


def _unannotated_images_and_crowds(shapes_root: Path, root: Path) -> Path:
    """The shapes set with every object of each split's first image removed and a crowd RLE region (uncompressed)
    added beside the polygon objects of its second: valid COCO data that Mask R-CNN must train on."""
    (root / 'annotations').mkdir(parents=True)
    (root / 'images').symlink_to(shapes_root / 'images')
    for split in ('train', 'val'):
        coco = json.loads((shapes_root / 'annotations' / f'{split}.json').read_text())
        first, second = coco['images'][:2]
        coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] != first['id']]
        crowd = np.zeros((second['height'], second['width']), np.uint8)
        crowd[2:10, 2:12] = 1
        coco['annotations'].append(dict(id=10 ** 6, image_id=second['id'], category_id=coco['categories'][0]['id'],
                                        bbox=[2, 2, 10, 8], area=80, iscrowd=1, segmentation=_uncompressed_rle(crowd)))
        (root / 'annotations' / f'{split}.json').write_text(json.dumps(coco))
    return root


@pytest.mark.parametrize('epoch', range(8))
def test_an_image_without_objects_keeps_an_empty_mask_stack_through_augmentation(shapes_root, tmp_path, epoch):
    root = _unannotated_images_and_crowds(shapes_root, tmp_path / 'data')
    dataset = CocoDetectionDataset(root / 'images' / 'train', root / 'annotations' / 'train.json',
                                   transform=detection_train_transform(None), masks=True)
    dataset.set_epoch(epoch)
    image, target = dataset[0]
    assert target['boxes'].shape == (0, 4) and target['labels'].shape == (0,)
    assert target['masks'].shape == (0, *image.shape[1:])


@pytest.mark.slow
def test_mask_rcnn_trains_on_unannotated_images_and_crowds_beside_polygons(shapes_root, tmp_path):
    root = _unannotated_images_and_crowds(shapes_root, tmp_path / 'data')
    out = tmp_path / 'run'
    assert train_cli.main([str(MASK_CONFIG), *_tiny_mask_run(root, out)]) == 0  # two loader workers
    assert {'mAP', 'segm_mAP'} <= set(json.loads((out / 'results.json').read_text())['metrics'])
    assert evaluate_cli.main(['--checkpoint', str(out / 'last.pth')]) == 0
