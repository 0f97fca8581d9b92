"""CenterNet-HarDNet's published training augmentation: equal to a literal re-implementation for given draws, the
draws in the published ranges, and the engine feeding it to the CenterNet models (and only where it fits)."""
import numpy as np
import pytest
import torch

from hardnet_backbones.data.centernet_transforms import CenterNetAugmentParams, CenterNetTrainTransform
from hardnet_backbones.engine.config import load_config, validate_config
from hardnet_backbones.errors import ConfigError

from .helpers import ROOT, detection_overrides
from .reference_centernet import reference_augment

BOXES = np.array([[10.0, 12.0, 50.5, 40.0],      # inside
                  [70.0, 5.0, 95.0, 60.0],       # near the right edge: partly outside after some shifts
                  [0.0, 50.0, 8.0, 58.0]])       # at the left edge
LABELS = np.array([1, 2, 3])
DRAWS = [
    # scale_x, scale_y, shift_x, shift_y, flip, colour order
    (1.6, 1.2, -20.0, 4.5, False, ['brightness', 'contrast', 'saturation']),
    (0.55, 0.8, 30.25, 11.0, True, ['saturation', 'brightness', 'contrast']),
    (2.4, 2.0, -90.0, -33.0, True, None),
    (1.0, 1.0, 0.0, 0.0, False, ['contrast', 'saturation', 'brightness']),
]


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (64, 100, 3), dtype=np.uint8)


@pytest.mark.parametrize('draw', DRAWS, ids=[f'draw{i}' for i in range(len(DRAWS))])
def test_the_augmentation_equals_the_published_one_for_given_draws(draw):
    scale_x, scale_y, shift_x, shift_y, flip, order = draw
    factors = dict(brightness=1.31, contrast=0.72, saturation=1.12)
    lighting = np.array([0.05, -0.12, 0.2], np.float32)
    params = CenterNetAugmentParams(scale_x, scale_y, shift_x, shift_y, flip, order, factors if order else {},
                                    lighting if order else np.zeros(3, np.float32))
    got = CenterNetTrainTransform(96).apply(_image(), BOXES, LABELS, params)
    image, boxes = reference_augment(_image(), BOXES, 96, scale_x, scale_y, shift_x, shift_y, flip, order, factors,
                                     lighting)
    assert got['image'].shape == (96, 96, 3) and got['image'].dtype == np.float32
    np.testing.assert_allclose(got['image'], image, atol=2e-6)
    visible = [(min(b[2], 96) > max(b[0], 0)) and (min(b[3], 96) > max(b[1], 0)) for b in boxes]
    np.testing.assert_allclose(got['bboxes'], boxes[visible], atol=1e-4)  # unclipped: CenterNet's rule needs them
    np.testing.assert_array_equal(got['labels'], LABELS[visible])


def test_boxes_come_back_unclipped_and_those_outside_the_canvas_are_dropped():
    params = CenterNetAugmentParams(2.0, 2.0, -60.0, 0.0, False, None, {}, np.zeros(3, np.float32))
    out = CenterNetTrainTransform(96).apply(_image(), BOXES, LABELS, params)
    # box 0 at x -40..41: kept as it is; box 2 at x -60..-44: dropped
    np.testing.assert_allclose(out['bboxes'], [[-40.0, 24.0, 41.0, 80.0], [80.0, 10.0, 130.0, 120.0]])
    np.testing.assert_array_equal(out['labels'], [1, 2])


def test_the_draws_cover_the_published_ranges_and_repeat_with_the_seed():
    transform = CenterNetTrainTransform(512)
    transform.set_random_seed(3)
    height, width = 480, 640
    draws = [transform.draw(height, width) for _ in range(2000)]
    short_sides = {round(d.scale_y * height, 6) for d in draws}
    assert short_sides == {float(s) for s in range(192, 897, 64)}
    aspects = np.array([d.scale_x / d.scale_y for d in draws])
    assert aspects.min() >= 0.4 and aspects.max() <= 1.6 and aspects.min() < 0.45 and aspects.max() > 1.55
    for d in draws:
        for extent, shift in ((width * d.scale_x, d.shift_x), (height * d.scale_y, d.shift_y)):
            if extent <= 512:  # inside the canvas
                assert 0 <= shift <= 512 - extent + 1e-9
            else:  # the canvas stays covered
                assert 512 - extent - 1e-9 <= shift <= 0
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    assert all(d.color_order is not None and sorted(d.color_order) == ['brightness', 'contrast', 'saturation']
               for d in draws)
    assert all(0.6 <= f <= 1.4 for d in draws for f in d.color_factors.values())
    assert 0.08 < np.std([d.lighting for d in draws]) < 0.12
    transform.set_random_seed(3)
    again = transform.draw(height, width)
    assert (again.scale_x, again.shift_x, again.flip) == (draws[0].scale_x, draws[0].shift_x, draws[0].flip)
    without = CenterNetTrainTransform(128, hflip_p=0, color_p=0, scale_shift=False).draw(height, width)
    assert (without.scale_x, without.scale_y, without.shift_x, without.flip, without.color_order) == (
        0.2, 128 / 480, 0.0, False, None)  # stretched to the canvas, as at test time


def _config(shapes_root, tmp_path, *overrides, name='configs/detection/shapes_centernet_hardnet68.yaml'):
    common = [o for o in detection_overrides(shapes_root, tmp_path / 'run', epochs=1)
              if 'centernet' in name or not o.startswith('model.kwargs')]  # size 64: the SSD and CenterNet side
    return load_config(ROOT / name, [*common, *overrides])


def test_the_engine_feeds_it_to_centernet_and_the_loss_trains_on_it(shapes_root, tmp_path):
    from hardnet_backbones.engine.task import create_task
    from hardnet_backbones.models import create_model

    cfg = _config(shapes_root, tmp_path, 'data.augmentation=auto')  # auto: the published one for CenterNet
    task = create_task(cfg)
    dataset = task.build_dataset(cfg.data.train_split, train=True)
    assert isinstance(dataset.transform, CenterNetTrainTransform) and dataset.transform.size == 64
    image, target = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert dataset[0][0].equal(image)  # seeded per sample
    model = create_model('centernet_hardnet68', num_classes=dataset.num_classes, size=64).train()
    losses = model([image], [target])
    assert torch.isfinite(sum(losses.values()))
    ssd = create_task(_config(shapes_root, tmp_path)).build_dataset('train', train=True)  # the CPU config's ssd
    assert not isinstance(ssd.transform, CenterNetTrainTransform)
    other = _config(shapes_root, tmp_path, name='configs/detection/shapes_ssdlite320_hardnet39ds.yaml')
    assert not isinstance(create_task(other).build_dataset('train', train=True).transform, CenterNetTrainTransform)


def test_settings_that_do_not_fit_it_are_one_line(shapes_root, tmp_path):
    from hardnet_backbones.engine.task import create_task

    with pytest.raises(ConfigError, match=r'data\.augmentation.*auto, ssd or centernet'):
        validate_config(_config(shapes_root, tmp_path, 'data.augmentation=mosaic'))
    for name, fits in (('configs/detection/shapes_fasterrcnn_hardnet39ds_320_fpn.yaml', 'no square input size'),
                       ('configs/detection/shapes_maskrcnn_hardnet68_fpn.yaml', 'moves boxes only')):
        cfg = _config(shapes_root, tmp_path, 'data.augmentation=centernet', name=name)
        with pytest.raises(ConfigError, match=fits):
            create_task(cfg).build_dataset('train', train=True)
    with pytest.raises(ValueError, match='moves boxes only'):
        CenterNetTrainTransform(64)(image=_image(), bboxes=BOXES, labels=LABELS, masks=np.zeros((3, 64, 100)))
