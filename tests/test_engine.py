"""The shared training engine: configs, resume, DDP, and the train / evaluate / detect tools."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hardnet_backbones.cli import detect as detect_cli
from hardnet_backbones.cli import evaluate as evaluate_cli
from hardnet_backbones.cli import make_shapes_dataset as shapes_cli
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.engine import schedule
from hardnet_backbones.engine.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / 'configs' / 'detection' / 'shapes_ssdlite320_hardnet39ds.yaml'


def _tiny_overrides(shapes_root, out_dir, epochs=2):
    return [f'data.root={shapes_root}', f'output_dir={out_dir}', f'train.epochs={epochs}', 'train.batch_size=2',
            'train.eval_every=1', 'data.num_workers=2', 'model.kwargs={size: 64}', 'train.save_images=1',
            'train.warmup_epochs=0']


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(DEMO_CONFIG, ['train.lr=0.5', 'model.kwargs.score_thresh=0.2', 'data.crop_size=[64, 96]'])
    assert cfg.train.lr == 0.5 and cfg.model.kwargs == {'score_thresh': 0.2} and cfg.data.crop_size == (64, 96)
    assert cfg.model.name == 'ssdlite320_hardnet39ds'
    with pytest.raises(ConfigError, match='unknown config key.*in "train": lrr; valid keys: epochs'):
        load_config(DEMO_CONFIG, ['train.lrr=1'])
    with pytest.raises(ConfigError, match="train.epochs: expected int, got 'ten'"):
        load_config(DEMO_CONFIG, ['train.epochs=ten'])
    with pytest.raises(ConfigError, match="train.optimizer: 'adam' is not one of sgd, adamw"):
        load_config(DEMO_CONFIG, ['train.optimizer=adam'])
    with pytest.raises(ConfigError, match='must look like key.subkey=value'):
        load_config(DEMO_CONFIG, ['train.lr'])
    bad = tmp_path / 'bad.yaml'
    bad.write_text('task: detection\nmodel: {nam: x}\n')
    with pytest.raises(ConfigError, match=r'bad.yaml: unknown config key\(s\) in "model": nam'):
        load_config(bad)


@pytest.mark.parametrize('path', sorted((ROOT / 'configs').glob('*/*.yaml')), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    from hardnet_backbones.engine.config import validate_config
    from hardnet_backbones.models import get_model_entry
    from hardnet_backbones.tasks import check_model_config
    cfg = load_config(path)
    assert get_model_entry(cfg.model.name).task == cfg.task
    validate_config(cfg)
    check_model_config(cfg)
    assert cfg.data.num_workers >= 2 or 'shapes' not in path.name  # the tests run workers as the configs do
    assert path.parent.name == cfg.task


def test_lr_schedule_warmup_then_cosine():
    cfg = load_config(DEMO_CONFIG, ['train.epochs=10', 'train.warmup_epochs=1', 'train.scheduler=cosine'])
    factor = schedule.build_lr_lambda(cfg, steps_per_epoch=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)
    poly = schedule.build_lr_lambda(
        load_config(DEMO_CONFIG, ['train.epochs=10', 'train.scheduler=poly', 'train.warmup_epochs=0']), 10)
    assert poly(60) == pytest.approx((1 - 0.6) ** 0.9)


@pytest.mark.slow
def test_train_writes_every_artifact(shapes_root, tmp_path):
    out = tmp_path / 'run'
    overrides = _tiny_overrides(shapes_root, out) + ['train.ema=true', 'train.ema_decay=0.5']
    assert train_cli.main([str(DEMO_CONFIG), *(f'--set={o}' for o in overrides)]) == 0
    for name in ('config.yaml', 'train.log', 'metrics.jsonl', 'history.png', 'last.pth', 'best.pth', 'results.json'):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in records] == [1, 2]
    assert all({'loss', 'loss_classification', 'mAP', 'AP50', 'voc_AP50', 'lr'} <= set(r) for r in records)
    saved = yaml.safe_load((out / 'config.yaml').read_text())
    assert saved['train']['epochs'] == 2 and saved['model']['kwargs'] == {'size': 64}
    checkpoint = torch.load(out / 'last.pth', weights_only=True)
    assert checkpoint['model_ema'] is not None and checkpoint['class_names'] == ['circle', 'rectangle', 'triangle']
    assert any(not torch.equal(a, b) for a, b in zip(checkpoint['model'].values(), checkpoint['model_ema'].values()))
    results = json.loads((out / 'results.json').read_text())
    assert results['main_metric'] == 'mAP' and len(results['visuals']) == 1
    assert Path(results['visuals'][0]).is_file()

    # evaluate and detect reuse the checkpoint
    eval_json = tmp_path / 'eval.json'
    assert evaluate_cli.main([str(out / 'config.yaml'), '--checkpoint', str(out / 'last.pth'),
                              '--output', str(eval_json)]) == 0
    evaluated = json.loads(eval_json.read_text())['metrics']
    assert evaluated['mAP'] == pytest.approx(records[-1]['mAP'])
    image = next((shapes_root / 'images' / 'val').glob('*.png'))
    assert detect_cli.main([str(image), '--checkpoint', str(out / 'last.pth'), '--out-dir', str(tmp_path / 'det'),
                            '--score-threshold', '0.0']) == 0
    assert (tmp_path / 'det' / image.name).is_file()
    # a 16-bit PNG of the same picture goes through the same decoding (it used to load pure white)
    sixteen_bit = tmp_path / 'sixteen.png'
    gray = np.asarray(Image.open(image).convert('L')).astype(np.uint16) * 257
    Image.fromarray(gray).save(sixteen_bit)
    assert detect_cli.main([str(sixteen_bit), '--checkpoint', str(out / 'last.pth'), '--out-dir',
                            str(tmp_path / 'det16'), '--score-threshold', '1.0']) == 0
    drawn = np.asarray(Image.open(tmp_path / 'det16' / 'sixteen.png').convert('L')).astype(int)
    assert abs(drawn.mean() - (gray // 257).mean()) < 3 and drawn.mean() < 200  # enlarged for captions, not white
    assert image.as_posix() in json.loads((tmp_path / 'det' / 'detections.json').read_text())


def test_bad_inputs_give_clear_errors(shapes_root, tmp_path, caplog):
    args = [str(DEMO_CONFIG), '--set', f'data.root={tmp_path / "nowhere"}', '--set', f'output_dir={tmp_path}/o']
    assert train_cli.main(args) == 2
    assert 'COCO annotation file not found' in caplog.text
    assert train_cli.main([str(DEMO_CONFIG), '--set', 'train.bogus=1']) == 2
    assert 'unknown config key' in caplog.text
    assert train_cli.main([str(DEMO_CONFIG), '--resume', str(tmp_path / 'missing.pth'),
                           *(f'--set={o}' for o in _tiny_overrides(shapes_root, tmp_path / 'r'))]) == 2
    assert 'checkpoint not found' in caplog.text


@pytest.mark.slow
@pytest.mark.subprocess
def test_ddp_with_two_gloo_processes(shapes_root, tmp_path):
    out = tmp_path / 'ddp'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           str(ROOT / 'tools' / 'train.py'), str(DEMO_CONFIG),
           *(f'--set={o}' for o in _tiny_overrides(shapes_root, out, epochs=1)), '--set=train.device=cpu']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'on cpu x2' in (out / 'train.log').read_text()
    record = json.loads((out / 'metrics.jsonl').read_text().splitlines()[0])
    assert record['epoch'] == 1 and 'mAP' in record
    # 4 training images over 2 processes at batch 2: each process runs one step, and the
    # throughput counts all 4 images
    assert record['images_per_second'] * record['epoch_seconds'] == pytest.approx(4)


def test_make_shapes_dataset_is_deterministic(tmp_path, capsys):
    for name in ('a', 'b'):
        assert shapes_cli.main(['--out', str(tmp_path / name), '--train', '3', '--val', '1', '--size', '48', '64']) == 0
    a = json.loads((tmp_path / 'a' / 'annotations' / 'train.json').read_text())
    assert a == json.loads((tmp_path / 'b' / 'annotations' / 'train.json').read_text())
    assert len(a['images']) == 3 and {c['name'] for c in a['categories']} == {'circle', 'rectangle', 'triangle'}
    first = sorted((tmp_path / 'a' / 'images' / 'train').glob('*.png'))[0]
    assert first.read_bytes() == (tmp_path / 'b' / 'images' / 'train' / first.name).read_bytes()
    import numpy as np
    from PIL import Image
    mask = np.asarray(Image.open(tmp_path / 'a' / 'masks' / 'train' / first.name))
    assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 1, 2, 3}
    # each box frames exactly the pixels of its class in the mask (visible part of the shape)
    for ann in (a_ for a_ in a['annotations'] if a_['image_id'] == 1):
        x, y, w, h = (int(v) for v in ann['bbox'])
        inside = mask[y:y + h, x:x + w] == ann['category_id']
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
