"""The engine's promises under the shipped settings: loader workers, kills at any moment, full disks,
changed configs on resume, early validation, evaluation from a checkpoint alone, collectives."""
import ast
import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hardnet_backbones.cli import evaluate as evaluate_cli
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.data.shapes import make_shapes_dataset
from hardnet_backbones.engine import loaders, trainer
from hardnet_backbones.engine.config import load_config
from hardnet_backbones.engine.task import create_task
from hardnet_backbones.errors import DiskFullError
from hardnet_backbones.utils import distributed, files
from hardnet_backbones.utils.distributed import DistInfo

from .helpers import (
    CLASSIFICATION, DETECTION, ROOT, SEGMENTATION, classification_overrides, detection_overrides,
    segmentation_overrides)

pytestmark = pytest.mark.slow

TIMING = ('epoch_seconds', 'images_per_second')


# ---------------------------------------------------------------- augmentation with loader workers

def _epoch_images(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return {t['image_id']: image for images, targets in loader for image, t in zip(images, targets)}


def test_augmentation_changes_per_epoch_and_repeats_after_restart_with_workers(shapes_root, tmp_path):
    train_loaders = {}
    for workers in (0, 2):
        cfg = load_config(DETECTION, detection_overrides(shapes_root, tmp_path, workers=workers))
        task = create_task(cfg)
        train_set, val_set = task.build_datasets()
        train_loaders[workers] = lambda: loaders.train_and_val_loaders(cfg, task, train_set, val_set, DistInfo())[0]
    loader = train_loaders[2]()
    assert loader.persistent_workers and loader.num_workers == 2  # as the shipped configs run
    epochs = [_epoch_images(loader, epoch) for epoch in range(3)]
    for earlier, later in zip(epochs, epochs[1:]):  # an image may draw "no change" twice, not all of them
        assert sum(not torch.equal(earlier[i], later[i]) for i in earlier) >= len(earlier) - 1
    in_process = train_loaders[0]()
    for epoch, images in enumerate(epochs):  # the workers saw the epoch that the main process set
        assert all(torch.equal(a, images[i]) for i, a in _epoch_images(in_process, epoch).items())
    restarted = train_loaders[2]()  # new workers, as after a kill
    assert all(torch.equal(a, epochs[2][i]) for i, a in _epoch_images(restarted, 2).items())


def _strip_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _run_files(out):
    last = torch.load(out / 'last.pth', weights_only=True)
    best = torch.load(out / 'best.pth', weights_only=True)
    results = json.loads((out / 'results.json').read_text())
    results.pop('train_seconds')
    metrics = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    return last, best, results, metrics


def _assert_same_run(out, reference):
    last, best, results, metrics = _run_files(out)
    ref_last, ref_best, ref_results, ref_metrics = reference
    for got, expected in ((last, ref_last), (best, ref_best)):
        assert got['epoch'] == expected['epoch'] and got['best'] == expected['best']
        for key, value in expected['model'].items():
            assert torch.equal(got['model'][key], value), key
        assert _strip_timing(got['history']) == _strip_timing(expected['history'])
        assert torch.equal(got['rng']['torch'], expected['rng']['torch'])
    assert results['metrics'] == ref_results['metrics'] and results['best'] == ref_results['best']
    assert _strip_timing(metrics) == _strip_timing(ref_metrics)
    assert [r['epoch'] for r in metrics] == list(range(1, len(ref_metrics) + 1))
    assert not list(out.glob('*.tmp'))


def _classification_with_mixup(root, out, epochs):  # Mixup draws from NumPy's RNG in the main process
    return [*classification_overrides(root, out, epochs=epochs), 'data.mixup=0.2', 'data.cutmix=1.0',
            'data.auto_augment=rand-m9-mstd0.5', 'data.reprob=0.25']


@pytest.mark.parametrize('kind', ['detection', 'segmentation', 'classification'])
def test_killed_and_resumed_with_workers_equals_uninterrupted(shapes_root, shape_crops, tmp_path, monkeypatch, kind):
    config, overrides, root = {
        'detection': (DETECTION, detection_overrides, shapes_root),
        'segmentation': (SEGMENTATION, segmentation_overrides, shapes_root),
        'classification': (CLASSIFICATION, _classification_with_mixup, shape_crops)}[kind]
    trainer.train(load_config(config, overrides(root, tmp_path / 'full', epochs=3)))
    reference = _run_files(tmp_path / 'full')

    cut = load_config(config, overrides(root, tmp_path / 'cut', epochs=3))
    original = trainer._Run.train_one_epoch

    def killed_in_epoch_two(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt('simulated kill')
        return original(self, epoch)

    monkeypatch.setattr(trainer._Run, 'train_one_epoch', killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cut)
    monkeypatch.setattr(trainer._Run, 'train_one_epoch', original)
    trainer.train(cut, resume=True)
    _assert_same_run(tmp_path / 'cut', reference)


# ---------------------------------------------------------------- kills at every file write

class _Kill(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing cleans up (it is no Exception)."""


def _count_writes(monkeypatch):
    names = []
    original = files._commit

    def counting(tmp, path):
        names.append(path.name)
        original(tmp, path)

    monkeypatch.setattr(files, '_commit', counting)
    return names


def test_a_kill_at_any_write_then_resume_ends_as_an_uninterrupted_run(shapes_root, tmp_path, monkeypatch):
    overrides = detection_overrides(shapes_root, tmp_path / 'full', workers=0)  # workers: see the test above
    writes = _count_writes(monkeypatch)
    trainer.train(load_config(DETECTION, overrides))
    reference = _run_files(tmp_path / 'full')
    monkeypatch.undo()
    assert {'config.yaml', 'best.pth', 'last.pth', 'metrics.jsonl', 'history.png', 'results.json'} <= set(writes)
    original = files._commit
    for point, name in enumerate(writes):
        for moment in ('torn', 'after rename'):  # a finished .tmp before its rename resumes as a torn one
            out = tmp_path / f'kill{point}-{moment.replace(" ", "_")}'
            calls = []

            def commit(tmp, path):
                calls.append(path)
                if len(calls) == point + 1:
                    if moment == 'torn':
                        tmp.write_bytes(tmp.read_bytes()[:max(1, tmp.stat().st_size // 2)])
                    if moment == 'after rename':
                        original(tmp, path)
                    raise _Kill(f'{moment} {path.name}')
                original(tmp, path)

            monkeypatch.setattr(files, '_commit', commit)
            cfg = load_config(DETECTION, detection_overrides(shapes_root, out, workers=0))
            with pytest.raises(_Kill):
                trainer.train(cfg)
            monkeypatch.setattr(files, '_commit', original)
            trainer.train(cfg, resume=True)
            _assert_same_run(out, reference)


KILLER = '''
import os, signal, sys
from hardnet_backbones.engine import trainer
from hardnet_backbones.engine.config import load_config
from hardnet_backbones.utils import files
import torch
torch.set_num_threads(int(sys.argv[2]))  # the reference's thread count: float sums depend on it
target, calls = int(sys.argv[1]), []
original = files._commit
def commit(tmp, path):
    calls.append(path)
    if len(calls) == target:
        tmp.write_bytes(tmp.read_bytes()[:tmp.stat().st_size // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    original(tmp, path)
files._commit = commit
trainer.train(load_config(sys.argv[3], sys.argv[4:]))
'''


@pytest.mark.parametrize('target', [3, 6])  # best.pth of epoch 1 torn; last.pth of epoch 2 torn
@pytest.mark.subprocess
def test_real_sigkill_while_a_checkpoint_is_written(shapes_root, tmp_path, target):
    trainer.train(load_config(DETECTION, detection_overrides(shapes_root, tmp_path / 'full')))
    reference = _run_files(tmp_path / 'full')
    out = tmp_path / 'killed'
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, '-c', KILLER, str(target), str(torch.get_num_threads()), str(DETECTION),
                           *detection_overrides(shapes_root, out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list(out.glob('*.tmp'))  # the torn file is still there
    trainer.train(load_config(DETECTION, detection_overrides(shapes_root, out)), resume=True)
    _assert_same_run(out, reference)


# ---------------------------------------------------------------- full disk

def test_full_disk_is_one_clear_error_and_leaves_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / 'last.pth'
    files.save_atomic({'epoch': 1, 'weights': torch.zeros(10)}, target)

    class FullDisk:
        def __init__(self, path):
            self.file = open(path, 'wb')
            self.written = 0

        def write(self, data):
            self.written += len(data)
            if self.written > 600:
                raise OSError(errno.ENOSPC, 'No space left on device')
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(files, '_open_for_writing', FullDisk)
    with pytest.raises(DiskFullError, match=r'cannot write .*last.pth: the disk is full \(\d+ MB free in .*\); '
                                            r'the previous file is intact') as info:
        files.save_atomic({'epoch': 2, 'weights': torch.zeros(100_000)}, target)
    assert '\n' not in str(info.value)
    assert not (tmp_path / 'last.pth.tmp').exists()
    assert torch.load(target, weights_only=True)['epoch'] == 1


# ---------------------------------------------------------------- config changes on resume, output folders

def test_resume_refuses_changes_that_break_exactness_and_records_safe_ones(shapes_root, tmp_path, caplog):
    out = tmp_path / 'run'
    args = [str(DETECTION), *(f'--set={o}' for o in detection_overrides(shapes_root, out, epochs=1, workers=0))]
    assert train_cli.main(args) == 0
    stored = (out / 'config.yaml').read_text()

    assert train_cli.main(args + ['--set=train.lr=0.1', '--resume']) == 2
    assert 'train.lr: 0.003 -> 0.1' in caplog.text and 'in keys that change the result' in caplog.text
    assert (out / 'config.yaml').read_text() == stored  # a refused resume writes nothing but its log line
    assert 'ERROR hardnet.train: --resume: the config differs' in (out / 'train.log').read_text()
    assert train_cli.main(args + ['--set=model.name=ssdlite320_hardnet68ds', '--resume']) == 2
    assert "model.name: 'ssdlite320_hardnet39ds' -> 'ssdlite320_hardnet68ds'" in caplog.text
    assert (out / 'config.yaml').read_text() == stored

    caplog.clear()
    assert train_cli.main(args) == 2  # a run is there: --resume or --overwrite
    assert 'already holds a run; continue it with --resume, replace it with --overwrite' in caplog.text
    assert json.loads((out / 'metrics.jsonl').read_text())['epoch'] == 1

    assert train_cli.main(args + ['--set=train.epochs=2', '--resume']) == 0
    assert yaml.safe_load((out / 'config.yaml').read_text())['train']['epochs'] == 2
    state = torch.load(out / 'last.pth', weights_only=True)
    assert state['epoch'] == 2 and state['config_changes'] == [
        dict(epoch=1, changes={'train.epochs': [1, 2]})]
    assert 'Resumed with changed config: train.epochs: 1 -> 2' in (out / 'train.log').read_text()

    assert train_cli.main(args + ['--overwrite']) == 0
    assert [json.loads(line)['epoch'] for line in (out / 'metrics.jsonl').read_text().splitlines()] == [1]


@pytest.mark.parametrize('override, message', [
    ('train.eval_every=0', 'train.eval_every: 0 is invalid; it must be at least 1'),
    ('train.epochs=0', 'train.epochs: 0 is invalid; it must be at least 1'),
    ('data.hflip_p=1.5', 'data.hflip_p: 1.5 is invalid; it must be a probability'),
    ('model.kwargs={size: 64, score_tresh: 0.1}',
     "takes no argument 'score_tresh' \\(did you mean 'score_thresh'\\?\\)"),
    ('model.kwargs={num_classes: 3}', 'model.kwargs.num_classes: set it as model.num_classes instead'),
    ('model.weights_backbone=/no/such/file.pth', 'model.weights_backbone: file not found: /no/such/file.pth'),
    ('model.name=fcn_hardnet68', "model.name: 'fcn_hardnet68' is not a detection model"),
])
def test_config_values_are_checked_before_any_work(shapes_root, tmp_path, caplog, override, message):
    out = tmp_path / 'run'
    args = [str(DETECTION), *(f'--set={o}' for o in detection_overrides(shapes_root, out, workers=0)),
            f'--set={override}']
    assert train_cli.main(args) == 2
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert __import__('re').search(message, caplog.records[0].getMessage()), caplog.text
    assert not out.exists()  # nothing was started


def test_cli_failures_are_one_line_and_reach_train_log(shapes_root, tmp_path, caplog, monkeypatch):
    file_as_dir = tmp_path / 'a_file'
    file_as_dir.write_text('x')
    assert train_cli.main([str(DETECTION), f'--set=output_dir={file_as_dir}']) == 2
    assert 'exists and is not a folder' in caplog.text
    if not torch.cuda.is_available():
        assert train_cli.main([str(DETECTION), '--set=train.device=cuda']) == 2
        assert 'no CUDA device is available here' in caplog.text

    out = tmp_path / 'run'
    args = [str(DETECTION), *(f'--set={o}' for o in detection_overrides(shapes_root, out, epochs=1, workers=0))]
    assert train_cli.main(args) == 0
    (out / 'last.pth').write_bytes((out / 'last.pth').read_bytes()[:1000])
    caplog.clear()
    assert train_cli.main(args + ['--resume']) == 2
    assert 'Cannot read checkpoint' in caplog.text and 'last.pth' in caplog.text
    assert len(caplog.records) == 1 and '\n' not in caplog.records[0].getMessage()

    # a data error inside a loader worker: one line in the console and in train.log
    data = tmp_path / 'data'
    make_shapes_dataset(data, {'train': 2, 'val': 1}, image_size=(64, 64), max_shapes=1, seed=0, progress=False)
    broken = next((data / 'images' / 'train').glob('*.png'))
    broken.write_bytes(broken.read_bytes()[:200])
    caplog.clear()
    run2 = tmp_path / 'run2'
    overrides = detection_overrides(data, run2, epochs=1, workers=2)
    assert train_cli.main([str(DETECTION), *(f'--set={o}' for o in overrides)]) == 2
    assert caplog.records[-1].getMessage().startswith(str(broken))
    assert 'cannot decode the image' in (run2 / 'train.log').read_text()


# ---------------------------------------------------------------- evaluation from a checkpoint alone

def test_evaluate_from_the_checkpoint_alone_one_split_no_download(shapes_root, tmp_path, monkeypatch):
    out = tmp_path / 'seg'
    cfg = load_config(SEGMENTATION, segmentation_overrides(shapes_root, out, epochs=1, workers=0))
    trainer.train(cfg)
    expected = json.loads((out / 'metrics.jsonl').read_text())['mIoU']
    # the stored config asks for published backbone weights: evaluation must not fetch them
    state = torch.load(out / 'last.pth', weights_only=True)
    state['config']['model']['weights_backbone'] = 'DEFAULT'
    torch.save(state, out / 'last.pth')

    def no_download(*args, **kwargs):
        raise AssertionError('evaluation downloaded backbone weights')

    monkeypatch.setattr('hardnet_backbones.models.hub.cached_download', no_download)
    data = tmp_path / 'val_only'
    (data / 'images').mkdir(parents=True)
    (data / 'masks').mkdir(parents=True)
    for sub in ('images', 'masks'):
        os.symlink(shapes_root / sub / 'val', data / sub / 'val')  # no train split at all
    predictions = tmp_path / 'pred'
    assert evaluate_cli.main(['--checkpoint', str(out / 'last.pth'), '--set', f'data.root={data}',
                              '--output', str(tmp_path / 'eval.json'), '--save-predictions', str(predictions)]) == 0
    assert json.loads((tmp_path / 'eval.json').read_text())['metrics']['mIoU'] == pytest.approx(expected)
    masks = sorted(predictions.glob('*.png'))
    assert [m.name for m in masks] == sorted(p.name for p in (shapes_root / 'images' / 'val').glob('*.png'))
    saved = Image.open(masks[0])
    assert saved.mode == 'P' and set(np.unique(np.asarray(saved))) <= {0, 1, 2, 3}


def test_evaluate_saves_coco_results_and_rejects_a_checkpoint_of_another_task(shapes_root, tmp_path, caplog):
    out = tmp_path / 'det'
    trainer.train(load_config(DETECTION, detection_overrides(shapes_root, out, epochs=1, workers=0)))
    predictions = tmp_path / 'pred'
    assert evaluate_cli.main(['--checkpoint', str(out / 'last.pth'), '--save-predictions', str(predictions)]) == 0
    results = json.loads((predictions / 'detections_coco.json').read_text())
    assert results and {'image_id', 'category_id', 'bbox', 'score'} <= set(results[0])
    assert {r['category_id'] for r in results} <= {1, 2, 3}
    caplog.clear()
    assert evaluate_cli.main([str(SEGMENTATION), '--checkpoint', str(out / 'last.pth')]) == 2
    assert 'holds a detection model (task), but the config asks for segmentation' in caplog.text
    assert len(caplog.records) == 1


# ---------------------------------------------------------------- collectives and layering

def test_collectives_run_on_the_process_group_device(monkeypatch):
    calls = {}
    monkeypatch.setattr(distributed.dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(distributed.dist, 'init_process_group', lambda backend: calls.setdefault('backend', backend))
    monkeypatch.setattr(distributed.torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, 'set_device', lambda index: None)
    monkeypatch.setenv('WORLD_SIZE', '2')
    info = distributed.init_distributed('cuda')
    assert info.device == torch.device('cuda', 0) and distributed.collective_device() == info.device
    assert calls['backend'] == 'cpu:gloo,cuda:nccl'  # a CPU tensor still finds a backend

    seen = []
    monkeypatch.setattr(distributed, '_DEVICE', torch.device('meta'))  # stands for the GPU
    monkeypatch.setattr(distributed, 'is_distributed', lambda: True)
    monkeypatch.setattr(distributed.dist, 'all_reduce', lambda tensor, op: seen.append(tensor.device))
    with pytest.raises(NotImplementedError):  # the meta "GPU" cannot copy back; the call already happened
        distributed.all_reduce_sum(torch.ones(3))
    assert seen == [torch.device('meta')]


def test_the_engine_does_not_import_the_task_package():
    for path in (ROOT / 'hardnet_backbones' / 'engine').glob('*.py'):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = ('.' * node.level) + (node.module or '')
                assert 'tasks' not in module, f'{path.name} imports {module}'


def test_gpu_check_refuses_without_a_gpu_and_its_training_steps_run(caplog):
    from hardnet_backbones.cli import gpu_check
    if not torch.cuda.is_available():
        assert gpu_check.main(['--skip-benchmark']) == 2
        assert 'no CUDA device here' in caplog.text
    for task, model in (('detection', 'ssdlite320_hardnet39ds'), ('segmentation', 'fcn_hardnet39ds')):
        report = gpu_check._amp_steps(task, model, steps=1, device='cpu')  # the code path the GPU runs with AMP
        assert len(report['losses']) == 1


def test_published_backbone_weights_offline_name_the_config_fix(shapes_root, tmp_path, caplog, monkeypatch):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError('no network')

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # an empty weights cache
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    args = [str(DETECTION), *(f'--set={o}' for o in detection_overrides(shapes_root, tmp_path / 'run', workers=0)),
            '--set=model.weights_backbone=DEFAULT']
    assert train_cli.main(args) == 2
    message = caplog.records[-1].getMessage()
    assert message.startswith('model.weights_backbone=DEFAULT: could not download https://')
    assert message.endswith('set model.weights_backbone=PATH') and '\n' not in message
    assert 'pretrained_cfg_overlay' not in message and '--checkpoint' not in message  # not options of this tool


@pytest.mark.parametrize('config', ['detection/shapes_ssdlite320_mobilenet_v3_large.yaml',
                                    'segmentation/shapes_lraspp_mobilenet_v3_large.yaml'])
def test_torchvision_models_train_by_name_with_the_same_recipe(shapes_root, tmp_path, config):
    from hardnet_backbones.inference.trained import load_trained_model
    out = tmp_path / 'tv'
    overrides = [f'data.root={shapes_root}', f'output_dir={out}', 'train.epochs=1', 'train.batch_size=2',
                 'data.num_workers=0', 'train.save_images=0', 'train.eval_every=1']
    if config.startswith('segmentation'):
        overrides.append('data.crop_size=[64, 64]')
    metrics = trainer.train(load_config(ROOT / 'configs' / config, overrides))
    assert ('mAP' if config.startswith('detection') else 'mIoU') in metrics
    trained = load_trained_model(out / 'last.pth')
    assert type(trained.model).__module__.startswith('torchvision.models')


def test_torchvision_model_arguments_are_checked(shapes_root, tmp_path, caplog):
    args = [str(ROOT / 'configs' / 'detection' / 'shapes_ssdlite320_mobilenet_v3_large.yaml'),
            f'--set=data.root={shapes_root}', f'--set=output_dir={tmp_path / "o"}']
    assert train_cli.main(args + ['--set=model.kwargs={size: 64}']) == 2
    assert "takes no argument 'size'" in caplog.text  # torchvision's SSDLite has a fixed size
    weights = tmp_path / 'backbone.pth'
    torch.save({}, weights)
    assert train_cli.main(args + [f'--set=model.weights_backbone={weights}']) == 2
    assert 'torchvision models take null or DEFAULT' in caplog.text
    assert train_cli.main(args + ['--set=model.name=torchvision:lraspp_mobilenet_v3_large']) == 2
    assert "is not a detection model (it is a segmentation model)" in caplog.text
    assert train_cli.main(args + ['--set=model.name=torchvision:keypointrcnn_resnet50_fpn']) == 2
    assert "is not a detection model this engine trains yet" in caplog.text
