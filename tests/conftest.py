import json
import os
from pathlib import Path

import pytest
import torch

import hardnet_backbones  # noqa: F401  (registers the models with timm)

MODEL_NAMES = ['hardnet39ds', 'hardnet68ds', 'hardnet68', 'hardnet85']
KEYS_JSON = Path(__file__).resolve().parent / 'data' / 'hardnet_checkpoint_keys.json'

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def published_keys():
    """Published state-dict key -> shape, per variant."""
    return json.loads(KEYS_JSON.read_text())['keys']


def randomize_bn_stats(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics so that wrong wiring shows up in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


@pytest.fixture(autouse=True, scope='session')
def _private_cache_dir(tmp_path_factory):
    """Mask-scan caches go to a folder of this test session, never the user's ~/.cache."""
    os.environ['HARDNET_CACHE_DIR'] = str(tmp_path_factory.mktemp('hardnet_cache'))
