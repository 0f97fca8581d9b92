"""Real file formats load exactly or fail loudly: EXIF, 16-bit, palettes, VOC2012 folders, 0/255 masks."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hardnet_backbones.data.detection import CocoDetectionDataset, VOCDetectionDataset, coco_from_dict
from hardnet_backbones.data.image_io import read_image_array, read_mask
from hardnet_backbones.data.palettes import IGNORE_COLOR, color_palette
from hardnet_backbones.data.segmentation import cityscapes_segmentation, folder_segmentation
from hardnet_backbones.engine.config import config_to_dict, load_config
from hardnet_backbones.engine.task import create_task
from hardnet_backbones.errors import ConfigError, DataError, user_message
from hardnet_backbones.evaluation.detection import coco_map, voc_ap50
from hardnet_backbones.visualization.draw import overlay_segmentation


def _upright_scene(width=48, height=32):
    """Grey image with a red block at x 30..40, y 4..14 (upright coordinates)."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[4:14, 30:40] = (255, 0, 0)
    return image


def _save_rotated_jpeg(path, upright):
    """Store the pixels sideways with EXIF orientation 6 (display rotated 90 degrees clockwise), as phones do."""
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())


def test_exif_rotated_jpeg_loads_upright_and_its_boxes_fit(tmp_path):
    upright = _upright_scene()
    _save_rotated_jpeg(tmp_path / 'phone.jpg', upright)
    assert Image.open(tmp_path / 'phone.jpg').size == (32, 48)  # stored sideways
    loaded = read_image_array(tmp_path / 'phone.jpg')
    assert loaded.shape == upright.shape
    assert np.abs(loaded.astype(int) - upright).mean() < 3
    ann = dict(images=[dict(id=1, file_name='phone.jpg', width=48, height=32)],
               annotations=[dict(id=1, image_id=1, category_id=1, bbox=[30, 4, 10, 10])],
               categories=[dict(id=1, name='block')])
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    image, target = CocoDetectionDataset(tmp_path, tmp_path / 'ann.json')[0]
    x1, y1, x2, y2 = (int(v) for v in target['boxes'][0])
    inside = image[:, y1:y2, x1:x2]
    assert inside[0].mean() > 0.9 and inside[1].mean() < 0.1  # the box frames the red block

    # an annotation made on the stored (sideways) pixels is refused, with the option that fits it
    ann['images'][0].update(width=32, height=48)
    ann['annotations'][0]['bbox'] = [4, 8, 10, 10]
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r'phone.jpg: the image is 48x32 pixels but its annotation says 32x48.*'
                                        r'EXIF orientation 6.*data.exif_orientation=false'):
        CocoDetectionDataset(tmp_path, tmp_path / 'ann.json')[0]
    image, _ = CocoDetectionDataset(tmp_path, tmp_path / 'ann.json', exif_orientation=False)[0]
    assert image.shape == (3, 48, 32)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / 'depth.png')
    assert Image.open(tmp_path / 'depth.png').mode.startswith('I')
    expected = np.round(values / 257.0).astype(np.uint8)
    loaded = read_image_array(tmp_path / 'depth.png')
    assert loaded.shape == (30, 40, 3) and loaded.dtype == np.uint8
    assert np.abs(loaded[..., 0].astype(int) - expected).max() <= 1
    assert (loaded[..., 0] == loaded[..., 2]).all() and 120 < loaded.mean() < 135  # not white
    Image.fromarray(values.astype(np.int32), mode='I').save(tmp_path / 'depth.tif')
    assert np.abs(read_image_array(tmp_path / 'depth.tif')[..., 1].astype(int) - expected).max() <= 1
    Image.fromarray(np.full((4, 4), 70000, np.int32), mode='I').save(tmp_path / 'wide.tif')
    with pytest.raises(DataError, match='wide.tif: I image with values 70000..70000 outside the 16-bit range'):
        read_image_array(tmp_path / 'wide.tif')


def test_palette_gray_alpha_and_cmyk_become_rgb(tmp_path):
    palette = Image.new('P', (6, 4))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.paste(1, (0, 0, 3, 4))
    palette.save(tmp_path / 'p.png', transparency=0)
    rgb = read_image_array(tmp_path / 'p.png')
    assert rgb[0, 0].tolist() == [10, 200, 30] and rgb[0, 5].tolist() == [0, 0, 0]
    Image.new('LA', (4, 4), (100, 30)).save(tmp_path / 'la.png')
    assert read_image_array(tmp_path / 'la.png')[1, 1].tolist() == [100, 100, 100]
    Image.new('RGBA', (4, 4), (20, 40, 60, 0)).save(tmp_path / 'rgba.png')
    assert read_image_array(tmp_path / 'rgba.png')[1, 1].tolist() == [20, 40, 60]  # alpha dropped, colour kept
    Image.new('L', (4, 4), 77).save(tmp_path / 'gray.jpg', quality=100)
    assert read_image_array(tmp_path / 'gray.jpg')[2, 2].tolist() == [77, 77, 77]
    Image.new('CMYK', (4, 4), (0, 255, 255, 0)).save(tmp_path / 'cmyk.tif')
    assert read_image_array(tmp_path / 'cmyk.tif')[0, 0].tolist() == [255, 0, 0]


def _coco_folder(tmp_path, size=(64, 48), annotated=(64, 48), image_name='a.png'):
    Image.new('RGB', size, (90, 90, 90)).save(tmp_path / image_name)
    ann = dict(images=[dict(id=1, file_name=image_name, width=annotated[0], height=annotated[1])],
               annotations=[dict(id=1, image_id=1, category_id=1, bbox=[2, 2, 10, 10])],
               categories=[dict(id=1, name='thing')])
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    return tmp_path / 'ann.json'


def test_image_size_must_match_its_annotation(tmp_path):
    ds = CocoDetectionDataset(tmp_path, _coco_folder(tmp_path, size=(60, 48)))
    with pytest.raises(DataError, match=r'a.png: the image is 60x48 pixels but its annotation says 64x48'):
        ds[0]


def test_truncated_image_is_named_also_from_loader_workers(tmp_path):
    ann = _coco_folder(tmp_path, image_name='a.jpg')
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / 'a.jpg')
    data = (tmp_path / 'a.jpg').read_bytes()
    (tmp_path / 'a.jpg').write_bytes(data[:len(data) // 2])
    ds = CocoDetectionDataset(tmp_path, ann)
    with pytest.raises(DataError, match='a.jpg: cannot decode the image, the file is truncated'):
        ds[0]
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=lambda b: b)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    message = user_message(info.value)
    assert message.startswith(str(tmp_path / 'a.jpg')) and '\n' not in message


def test_boxes_dropped_in_training_are_not_missed_objects_in_evaluation(tmp_path):
    images = [dict(id=1, file_name='a.png', width=64, height=48)]
    Image.new('RGB', (64, 48)).save(tmp_path / 'a.png')
    real = [dict(id=1, image_id=1, category_id=1, bbox=[5, 5, 20, 20]),
            dict(id=2, image_id=1, category_id=1, bbox=[30, 10, 15, 25])]
    zero_width = [dict(id=10 + i, image_id=1, category_id=1, bbox=[3 * i, 2, 0, 10]) for i in range(10)]
    outside = [dict(id=30, image_id=1, category_id=1, bbox=[80, 60, 5, 5])]
    (tmp_path / 'ann.json').write_text(json.dumps(dict(
        images=images, annotations=real + zero_width + outside, categories=[dict(id=1, name='thing')])))
    ds = CocoDetectionDataset(tmp_path, tmp_path / 'ann.json')
    assert len(ds[0][1]['boxes']) == 2
    predictions = [dict(image_id=1, category_id=1, bbox=a['bbox'], score=0.9) for a in real]
    assert coco_map(ds.coco, predictions)['mAP'] == pytest.approx(1.0)
    assert voc_ap50(ds.coco, predictions) == pytest.approx(1.0)
    # the raw annotations (as evaluated before) count the 11 unusable boxes as misses
    raw = coco_from_dict(dict(images=images, annotations=[dict(a, area=a['bbox'][2] * a['bbox'][3], iscrowd=0)
                                                          for a in real + zero_width + outside],
                              categories=[dict(id=1, name='thing')]))
    assert coco_map(raw, predictions)['mAP'] < 0.5


@pytest.mark.parametrize('categories, annotations, message', [
    ([dict(name='thing')], [], r"categories\[0\] = \{'name': 'thing'\} needs an id and a name"),
    ([dict(id=1)], [], r"categories\[0\] = \{'id': 1\} needs an id and a name"),
    ([dict(id=1, name='a')], [dict(image_id=1, category_id=1, bbox=[1, 1, 2, 2])], r'annotations\[0\] has no "id"'),
])
def test_coco_entries_without_id_or_name_are_named(tmp_path, categories, annotations, message):
    Image.new('RGB', (8, 8)).save(tmp_path / 'a.png')
    (tmp_path / 'ann.json').write_text(json.dumps(dict(
        images=[dict(id=1, file_name='a.png', width=8, height=8)], annotations=annotations, categories=categories)))
    with pytest.raises(DataError, match=message):
        CocoDetectionDataset(tmp_path, tmp_path / 'ann.json')


def _voc_root(root, ids, xml_filename='whatever.jpg', classes=('dog',), size=(40, 30)):
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        Image.new('RGB', size, (30, 60, 90)).save(root / 'JPEGImages' / f'{image_id}.jpg')
        objects = ''.join(f'<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>3</xmin><ymin>4</ymin>'
                          f'<xmax>20</xmax><ymax>25</ymax></bndbox></object>' for c in classes)
        (root / 'Annotations' / f'{image_id}.xml').write_text(
            f'<annotation><folder>VOC2012</folder><filename>{xml_filename}</filename><size><width>{size[0]}</width>'
            f'<height>{size[1]}</height><depth>3</depth></size>{objects}</annotation>')
    (root / 'ImageSets' / 'Main' / 'trainval.txt').write_text(''.join(f'{i}\n' for i in ids))
    return root


def test_voc_images_come_from_split_ids_and_roots_join(tmp_path):
    voc07 = _voc_root(tmp_path / 'VOC2007', ['000005', '000007'])
    voc12 = _voc_root(tmp_path / 'VOC2012', ['2008_000008'], xml_filename='2008_000008.png')
    joined = VOCDetectionDataset([voc07, voc12], 'trainval')
    assert len(joined) == 3 and [r['image_id'] for r in joined.records] == [0, 1, 2]
    assert joined.records[2]['file'] == voc12 / 'JPEGImages' / '2008_000008.jpg'
    assert len(joined.coco.getImgIds()) == 3 and joined[2][1]['labels'].tolist() == [12]

    cfg = load_config(None, ['task=detection', 'data.format=voc', f'data.root=[{voc07}, {voc12}]',
                             'data.train_split=trainval', f'data.val_root={voc07}', 'data.val_split=trainval',
                             'data.class_names=[dog, cat]', 'model.name=ssdlite320_hardnet39ds'])
    train_set, val_set = create_task(cfg).build_datasets()
    assert len(train_set) == 3 and len(val_set) == 2 and train_set.class_names == ['dog', 'cat']
    assert train_set[0][1]['labels'].tolist() == [1]

    (voc07 / 'Annotations' / '000007.xml').unlink()
    with pytest.raises(FileNotFoundError, match='VOC annotation file not found: .*000007.xml'):
        VOCDetectionDataset(voc07, 'trainval')


def _mask_folder(root, masks, split='train', image_mode='RGB'):
    (root / 'images' / split).mkdir(parents=True, exist_ok=True)
    (root / 'masks' / split).mkdir(parents=True, exist_ok=True)
    for name, mask in masks.items():
        Image.new(image_mode, mask.shape[::-1]).save(root / 'images' / split / f'{name}.jpg')
        Image.fromarray(mask).save(root / 'masks' / split / f'{name}.png')
    return root


def _binary_mask(seed):
    mask = np.zeros((24, 32), np.uint8)
    mask[4 + seed:14, 6:20] = 255
    return mask


def test_binary_masks_saved_as_0_255_are_refused_or_mapped(tmp_path):
    root = _mask_folder(tmp_path, {'a': _binary_mask(0), 'b': _binary_mask(1)})
    with pytest.raises(DataError, match=r'holds only the values 0 and 255.*data.mask_values: \{255: 1\}'):
        folder_segmentation(root, 'train', ['background', 'person'])
    ds = folder_segmentation(root, 'train', ['background', 'person'], mask_values={255: 1})
    _, mask = ds[0]
    assert set(mask.unique().tolist()) == {0, 1} and int((mask == 1).sum()) == 10 * 14

    cfg = load_config(None, ['task=segmentation', 'data.format=folder', f'data.root={root}', 'data.val_split=train',
                             'data.class_names=[background, person]', 'data.mask_values={255: 1}',
                             'model.name=fcn_hardnet39ds'])
    _, val_set = create_task(cfg).build_datasets()  # no augmentation on the validation split
    assert val_set.class_names == ['background', 'person'] and int((val_set[1][1] == 1).sum()) == 9 * 14


def test_masks_are_checked_when_the_dataset_is_built_and_the_scan_is_cached(tmp_path, monkeypatch):
    good = np.zeros((24, 32), np.uint8)
    good[2:6, 2:6] = 1
    root = _mask_folder(tmp_path, {'a': good, 'b': good})
    folder_segmentation(root, 'train', ['bg', 'fg'])
    from hardnet_backbones.data import segmentation as seg_data

    def no_scan(*args):
        raise AssertionError('rescanned an unchanged file')

    monkeypatch.setattr(seg_data, '_scan_pair', no_scan)
    folder_segmentation(root, 'train', ['bg', 'fg'])  # every file from the cache
    monkeypatch.undo()
    bad = good.copy()
    bad[10, 10] = 7
    Image.fromarray(bad).save(root / 'masks' / 'train' / 'b.png')  # changed file: scanned again
    with pytest.raises(DataError, match=r'mask values outside the 2 classes .*: 7 in .*b.png'):
        folder_segmentation(root, 'train', ['bg', 'fg'])
    Image.fromarray(good[:, :30]).save(root / 'masks' / 'train' / 'b.png')
    with pytest.raises(DataError, match=r'b.png: the mask is 30x24 pixels but its image .*b.jpg is 32x24'):
        folder_segmentation(root, 'train', ['bg', 'fg'])


def test_sixteen_bit_masks_keep_their_values(tmp_path):
    mask = np.zeros((8, 8), np.uint16)
    mask[:4] = 300
    root = _mask_folder(tmp_path, {'a': mask})
    assert read_mask(root / 'masks' / 'train' / 'a.png').max() == 300
    with pytest.raises(DataError, match=r'mask values outside .*: 300 in '):
        folder_segmentation(root, 'train', ['bg', 'fg'])
    _, loaded = folder_segmentation(root, 'train', ['bg', 'fg'], mask_values={300: 1})[0]
    assert int(loaded.sum()) == 32


def test_cityscapes_train_id_files_are_read_as_they_are(tmp_path):
    city, gt = tmp_path / 'leftImg8bit' / 'val' / 'ulm', tmp_path / 'gtFine' / 'val' / 'ulm'
    city.mkdir(parents=True)
    gt.mkdir(parents=True)
    Image.new('RGB', (4, 2)).save(city / 'ulm_000000_000019_leftImg8bit.png')
    Image.fromarray(np.array([[0, 13, 255, 18], [11, 255, 2, 10]], np.uint8)).save(
        gt / 'ulm_000000_000019_gtFine_labelTrainIds.png')
    _, mask = cityscapes_segmentation(tmp_path, 'val', labels='labelTrainIds')[0]
    assert mask.tolist() == [[0, 13, 255, 18], [11, 255, 2, 10]]
    with pytest.raises(FileNotFoundError, match='_gtFine_labelIds.png'):
        cityscapes_segmentation(tmp_path, 'val')


def test_pictures_colour_class_zero_and_ignore_with_standard_palettes():
    from hardnet_backbones.data.segmentation import CITYSCAPES_CLASSES, VOC_SEG_CLASSES
    voc = color_palette(VOC_SEG_CLASSES)
    assert voc[0] == (0, 0, 0) and voc[1] == (128, 0, 0) and voc[15] == (192, 128, 128)  # person
    city = color_palette(CITYSCAPES_CLASSES)
    assert city[0] == (128, 64, 128) and city[13] == (0, 0, 142)  # road, car
    generated = color_palette(['road', 'car', 'sky'])
    assert len(set(generated)) == 3 and IGNORE_COLOR not in generated and (0, 0, 0) not in generated

    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.array([[0, 13, 255], [0, 0, 0]])
    overlay = np.asarray(overlay_segmentation(image, mask, CITYSCAPES_CLASSES, alpha=1.0))
    assert overlay[0, 0].tolist() == [128, 64, 128]  # road (class 0) is coloured
    assert overlay[0, 1].tolist() == [0, 0, 142] and overlay[0, 2].tolist() == list(IGNORE_COLOR)
    voc_overlay = np.asarray(overlay_segmentation(image, np.array([[0, 1, 255], [0, 0, 0]]), VOC_SEG_CLASSES, 1.0))
    assert voc_overlay[0, 0].tolist() == [100, 100, 100]  # VOC background stays the image
    assert voc_overlay[0, 1].tolist() == [128, 0, 0] and voc_overlay[0, 2].tolist() == list(IGNORE_COLOR)


def test_detection_pictures_use_the_dataset_palette():
    from hardnet_backbones.data.detection import VOC_CLASSES
    from hardnet_backbones.visualization.draw import draw_detections
    image = torch.full((3, 400, 400), 0.5)
    picture = draw_detections(image, torch.tensor([[10., 10., 200., 200.]]), torch.tensor([15]),
                              torch.tensor([0.9]), VOC_CLASSES)
    assert np.asarray(picture)[10, 100].tolist() == [192, 128, 128]  # person in the VOC palette


# ---------------------------------------------------------------- the generated VOC folder

def test_generated_voc_folder_reads_back_the_boxes_and_masks_of_the_coco_layout(tmp_path):
    """Same seed, two layouts: the VOC loader (1-based inclusive XML boxes, palette masks with 255
    outlines, difficult flags) gives the boxes and classes the COCO layout holds."""
    from hardnet_backbones.data.shapes import SHAPE_CLASSES, make_shapes_dataset
    splits = {'train': 3, 'val': 2}
    make_shapes_dataset(tmp_path / 'coco', splits, (48, 64), max_shapes=6, seed=3, progress=False)
    make_shapes_dataset(tmp_path / 'voc', splits, (48, 64), max_shapes=6, seed=3, progress=False, layout='voc')
    for split in splits:
        coco_root = tmp_path / 'coco'
        coco = CocoDetectionDataset(coco_root / 'images' / split, coco_root / 'annotations' / f'{split}.json')
        voc = VOCDetectionDataset(tmp_path / 'voc', split, class_names=SHAPE_CLASSES)
        assert len(voc) == len(coco) == splits[split]
        for i in range(len(voc)):
            expected = coco.coco.loadAnns(coco.coco.getAnnIds(imgIds=coco.coco.getImgIds()[i]))
            got = voc.coco.loadAnns(voc.coco.getAnnIds(imgIds=[i]))
            assert [a['bbox'] for a in got] == [a['bbox'] for a in expected]
            assert [a['category_id'] for a in got] == [a['category_id'] for a in expected]
            small = [min(a['bbox'][2:]) < 8 for a in expected]
            assert [bool(a['iscrowd']) for a in got] == small  # 'difficult': ignored, not missed
        seg_cfg = load_config(overrides=['task=segmentation', 'data.format=voc', f'data.root={tmp_path / "voc"}',
                                         'data.class_names=[background, circle, rectangle, triangle]'])
        seg = create_task(seg_cfg).build_dataset(split, train=False)
        assert seg.class_names == ['background', *SHAPE_CLASSES]
        with pytest.raises(ConfigError, match='model.num_classes=5 but data.class_names lists 4 classes'):
            create_task(load_config(base=config_to_dict(seg_cfg), overrides=['model.num_classes=5'])).build_dataset(
                split, train=False)
        reference = folder_segmentation(tmp_path / 'coco', split, ['background', *SHAPE_CLASSES])
        for i in range(len(seg)):
            mask, expected_mask = seg[i][1], reference[i][1]
            labelled = mask != 255
            assert 0.05 < (~labelled).float().mean() < 0.6  # the VOC-style void outlines
            assert torch.equal(mask[labelled], expected_mask[labelled])
