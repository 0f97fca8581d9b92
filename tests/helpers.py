"""What several test modules share: paths, the tiny-run overrides of the shipped configs, model helpers."""
import json
import socket
from pathlib import Path
from typing import List, Sequence

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DETECTION = ROOT / 'configs' / 'detection' / 'shapes_ssdlite320_hardnet39ds.yaml'
SEGMENTATION = ROOT / 'configs' / 'segmentation' / 'shapes_fcn_hardnet39ds.yaml'
CLASSIFICATION = ROOT / 'configs' / 'classification' / 'shapes_hardnet39ds.yaml'
MODEL_NAMES = ['hardnet39ds', 'hardnet68ds', 'hardnet68', 'hardnet85']
# to parametrize over: the largest variant's tests are slow (make test-fast leaves them out)
MODEL_PARAMS = [*MODEL_NAMES[:3], pytest.param('hardnet85', marks=pytest.mark.slow)]
KEYS_JSON = Path(__file__).resolve().parent / 'data' / 'hardnet_checkpoint_keys.json'


def detection_overrides(shapes_root, out, epochs: int = 2, workers: int = 2, extra: Sequence[str] = ()) -> List[str]:
    """``--set`` values that shrink the demo detection config to a run of seconds on the tiny shapes set."""
    return [f'data.root={shapes_root}', f'output_dir={out}', f'train.epochs={epochs}', 'train.batch_size=2',
            'train.eval_every=1', f'data.num_workers={workers}', 'model.kwargs={size: 64}', 'train.save_images=1',
            'train.warmup_epochs=0', *extra]


def segmentation_overrides(shapes_root, out, epochs: int = 2, workers: int = 2) -> List[str]:
    """``--set`` values that shrink the shapes FCN config to a run of seconds on the tiny shapes set."""
    return [f'data.root={shapes_root}', f'output_dir={out}', f'train.epochs={epochs}', 'train.batch_size=2',
            f'data.num_workers={workers}', 'data.crop_size=[64, 64]', 'train.eval_every=1', 'train.save_images=1']


def classification_overrides(crops_root, out, epochs: int = 2, workers: int = 2) -> List[str]:
    """``--set`` values that shrink the shapes classification config to a run of seconds on the tiny crops set."""
    return [f'data.root={crops_root}', f'output_dir={out}', f'train.epochs={epochs}', 'train.batch_size=2',
            f'data.num_workers={workers}', 'data.input_size=32', 'train.eval_every=1', 'train.save_images=2',
            'train.warmup_epochs=0']


def scale_coco_category_ids(root: Path, factor: int) -> None:
    """Multiply the category ids of a generated COCO-layout set, so that ids differ from labels."""
    for path in (root / 'annotations').glob('*.json'):
        coco = json.loads(path.read_text())
        for item in coco['categories']:
            item['id'] *= factor
        for item in coco['annotations']:
            item['category_id'] *= factor
        path.write_text(json.dumps(coco))


def randomize_bn_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics so that wrong wiring shows up in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def two_images_with_targets():
    """Two images of different sizes in one batch, one with an object and one without, for detector contracts."""
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 64)]
    targets = [dict(boxes=torch.tensor([[10., 12., 60., 70.]]), labels=torch.tensor([2])),
               dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))]
    return images, targets


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on the loopback address."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]
