"""Fixtures shared by the whole suite: one generated shapes set, one pair of tiny trained runs, private caches."""
import json
import os
import shutil

import pytest
import torch

import hardnet_backbones  # noqa: F401  (registers the models with timm)
from hardnet_backbones.data.shapes import make_shapes_dataset

from .helpers import (
    CLASSIFICATION, DETECTION, KEYS_JSON, SEGMENTATION, classification_overrides, detection_overrides,
    scale_coco_category_ids, segmentation_overrides)
from .reference_hardnet import RefHarDNet

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def published_keys():
    """Published state-dict key -> shape, per variant."""
    return json.loads(KEYS_JSON.read_text())['keys']


@pytest.fixture(autouse=True, scope='session')
def _private_cache_dir(tmp_path_factory):
    """Mask-scan caches go to a folder of this test session, never the user's ~/.cache."""
    os.environ['HARDNET_CACHE_DIR'] = str(tmp_path_factory.mktemp('hardnet_cache'))


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """The tiny generated shapes set (COCO layout and masks: 4 train, 2 val images of 64x80) every run test uses."""
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_dataset(root, {'train': 4, 'val': 2}, image_size=(64, 80), max_shapes=2, seed=3, progress=False)
    return root


@pytest.fixture(scope='session')
def shape_crops(tmp_path_factory):
    """Crops of the generated shapes in class folders (15 train, 12 val, every class in both), 64 px."""
    root = tmp_path_factory.mktemp('crops')
    make_shapes_dataset(root, {'train': 8, 'val': 6}, image_size=(64, 80), max_shapes=3, seed=4, progress=False,
                        layout='classification')
    return root


@pytest.fixture(scope='session')
def runs(tmp_path_factory):
    """A tiny trained segmenter and a detector on shapes data whose COCO category ids are 10, 20, 30."""
    from hardnet_backbones.engine import trainer
    from hardnet_backbones.engine.config import load_config

    root = tmp_path_factory.mktemp('tools')
    data = root / 'data'
    make_shapes_dataset(data, {'train': 2, 'val': 2}, image_size=(64, 80), max_shapes=2, seed=5, progress=False)
    scale_coco_category_ids(data, 10)
    trainer.train(load_config(SEGMENTATION, segmentation_overrides(data, root / 'seg', epochs=1, workers=0)))
    trainer.train(load_config(DETECTION, detection_overrides(data, root / 'det', epochs=1, workers=0)))
    return dict(data=data, seg=root / 'seg' / 'last.pth', det=root / 'det' / 'last.pth')


@pytest.fixture(scope='session')
def app_runs(runs, shape_crops, tmp_path_factory):
    """A folder of runs as a person keeps them: a detector, a segmenter with an int8 export in its folder, and a
    classifier, each a copy of a tiny trained run; and an image of their data."""
    from hardnet_backbones.cli import export as export_cli
    from hardnet_backbones.engine import trainer
    from hardnet_backbones.engine.config import load_config

    root = tmp_path_factory.mktemp('app_runs')
    shutil.copytree(runs['det'].parent, root / 'shapes' / 'det')
    shutil.copytree(runs['seg'].parent, root / 'shapes' / 'seg')
    trainer.train(load_config(CLASSIFICATION, classification_overrides(shape_crops, root / 'cls', epochs=1,
                                                                       workers=0)))
    images = runs['data'] / 'images' / 'train'
    assert export_cli.main(['--checkpoint', str(root / 'shapes' / 'seg' / 'last.pth'), '--int8', '--calibration',
                            str(images), '--calibration-images', '2', '--image-size', '64', '64', '--no-torchscript',
                            '--output', str(root / 'shapes' / 'seg' / 'export')]) == 0
    image = sorted((runs['data'] / 'images' / 'val').iterdir())[0]
    return dict(root=root, image=image, crops=shape_crops)


@pytest.fixture(scope='session')
def hardnet39ds_weights(tmp_path_factory):
    """A HarDNet-39DS checkpoint in the published layout (random values), for weights_backbone."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('weights') / 'hardnet39ds.pth'
    torch.save(RefHarDNet('hardnet39ds').state_dict(), path)
    return path


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend to run on a CPU with the given /proc/cpuinfo flags."""
    from hardnet_backbones.utils import cpu

    def pretend(flags: str, name: str = 'Test CPU'):
        monkeypatch.setattr(cpu, '_cpuinfo', lambda: (name, frozenset(flags.split())))
    return pretend
