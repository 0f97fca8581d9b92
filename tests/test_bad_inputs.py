"""Bad input met the way users meet it: the real tools in a subprocess on a fresh tiny dataset, and each refusal is
exit code 2, one line naming the problem and the fix, no traceback, and nothing else changed on disk. One class of
problem per test (docs/data.md keeps the table of classes and messages); the API's own checks run in process."""
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.data.detection import CocoDetectionDataset
from hardnet_backbones.errors import CheckpointError, DataError
from hardnet_backbones.evaluation.detection import evaluate_detection
from hardnet_backbones.evaluation.segmentation import metrics_from_confusion
from hardnet_backbones.models import create_model
from hardnet_backbones.utils.distributed import DistInfo
from hardnet_backbones.visualization.draw import draw_detections, place_captions
from tests.helpers import DETECTION, detection_overrides

Snapshot = Dict[str, Tuple[int, int]]


def _snapshot(root: Path) -> Snapshot:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob('*') if p.is_file()}


def run_tool(tool: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m hardnet_backbones.cli.<tool> ARGS`` as a user runs it (output to a pipe, not a terminal)."""
    return subprocess.run([sys.executable, '-m', f'hardnet_backbones.cli.{tool}', *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert 'Traceback' not in output, output
    errors = [line for line in output.splitlines()
              if line.startswith('ERROR') or ' ERROR ' in line or ': error: ' in line]
    assert len(errors) == 1, output  # one line says it all
    for fragment in fragments:
        assert fragment in errors[0], output


@pytest.fixture
def data(tmp_path, shapes_root):
    """A fresh copy of the tiny shapes set a test may break."""
    import shutil
    root = tmp_path / 'data'
    shutil.copytree(shapes_root, root)
    return root


def _train_args(data: Path, out: Path, *extra: str):
    return [str(DETECTION), *(f'--set={o}' for o in detection_overrides(data, out, epochs=1, workers=0)), *extra]


# ------------------------------------------------------------------ config values: one schema, checked first

@pytest.mark.subprocess
def test_a_non_finite_learning_rate_is_refused_before_any_work(data, tmp_path):
    before = _snapshot(tmp_path)
    proc = run_tool('train', *_train_args(data, tmp_path / 'run', '--set=train.lr=.nan'), cwd=tmp_path)
    assert_refused(proc, 'train.lr: expected a finite number, got nan')
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize('override, message', [
    ('model.kwargs={size: 64, score_thresh: high}', 'model.kwargs.score_thresh: expected float'),
    ('model.kwargs={size: -64}', 'model.kwargs.size: -64 is invalid'),
    ('model.kwargs={size: 64, nms_thresh: 1.5}', 'must be in [0, 1]'),
    ('train.seed=99999999999999999', 'train.seed'),
    ('train.warmup_epochs=.inf', 'expected a finite number'),
    ('model.trainable_backbone_layers=9', 'trainable_backbone_layers must be an integer in [0, '),
    ('data.class_names=[circle, circle]', 'without repeated names'),
])
def test_config_values_are_refused_in_one_line(data, tmp_path, caplog, override, message):
    assert train_cli.main(_train_args(data, tmp_path / 'run', f'--set={override}')) == 2
    assert message in caplog.text and 'Traceback' not in caplog.text


# ------------------------------------------------------------------ COCO files

def _edit_coco(data: Path, split: str, edit) -> Path:
    path = data / 'annotations' / f'{split}.json'
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.subprocess
def test_repeated_annotation_ids_are_refused(data, tmp_path):
    path = _edit_coco(data, 'val', lambda c: c['annotations'][1].update(id=c['annotations'][0]['id']))
    before = _snapshot(tmp_path)
    assert_refused(run_tool('train', *_train_args(data, tmp_path / 'run'), cwd=tmp_path),
                   f'{path}: annotation ids repeat', 'needs its own id')
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize('edit, message', [
    (lambda c: c['images'][1].update(id=c['images'][0]['id']), 'image ids repeat'),
    (lambda c: c['images'][0].update(width='80'), "width='80'; it must be a positive integer"),
    (lambda c: c['annotations'][0].update(area='big'), "area='big'; it must be a number >= 0"),
    (lambda c: c['annotations'][0].update(image_id=[1]), 'image_id=[1]; it must be an integer or string id'),
    (lambda c: c['images'][0].update(id=[1, 2]), 'images[0] has id=[1, 2]'),
])
def test_coco_files_with_wrong_types_or_repeated_ids_are_refused(data, edit, message):
    path = _edit_coco(data, 'train', edit)
    with pytest.raises(DataError, match=f'{path}: .*' + message.replace('[', r'\[').replace(']', r'\]')):
        CocoDetectionDataset(data / 'images' / 'train', path)


def test_training_annotations_without_objects_are_refused(data, tmp_path, caplog):
    _edit_coco(data, 'train', lambda c: c.update(annotations=[]))
    assert train_cli.main(_train_args(data, tmp_path / 'run')) == 2
    assert 'has no object to learn from' in caplog.text


# ------------------------------------------------------------------ one run per output folder

@pytest.mark.subprocess
def test_a_second_training_into_a_running_runs_folder_is_refused(data, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'train.log').write_text('the running run\n')
    # this test's own process stands for the running training: alive, on this host
    (out / '.lock').write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getpid())))
    before = _snapshot(tmp_path)
    for flag in ([], ['--overwrite'], ['--resume']):
        proc = run_tool('train', *_train_args(data, out, *flag), cwd=tmp_path)
        assert_refused(proc, f'is in use by a running training (process {os.getpid()}')
    assert _snapshot(tmp_path) == before  # its log untouched, nothing wiped


def test_a_lock_left_by_a_killed_run_is_taken_over_and_released(data, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    (out / '.lock').write_text(json.dumps(dict(host=socket.gethostname(), pid=int(dead.stdout))))
    assert train_cli.main(_train_args(data, out)) == 0
    assert not (out / '.lock').exists() and (out / 'last.pth').is_file()


# ------------------------------------------------------------------ output paths, thresholds, sizes

@pytest.mark.subprocess
@pytest.mark.parametrize('tool, args, message', [
    ('detect', ['--checkpoint', 'missing.pth', '--out-dir', 'taken.txt', 'x.png'],
     'taken.txt is a file; give a folder'),
    ('evaluate', ['--checkpoint', 'missing.pth', '--output', '.'], '. is a folder; give a file name'),
    ('detect', ['--checkpoint', 'missing.pth', '--score-threshold', 'nan', 'x.png'], 'must be in [0, 1], got nan'),
    ('benchmark', ['--models', 'hardnet39ds', '--batch-size', '0'], 'must be at least 1, got 0'),
    ('segment', ['--checkpoint', 'missing.pth', '--mode', 'slide', '--window', '8', '8', 'x.png'],
     'must be 32 to 4096 pixels, got 8'),
])
def test_arguments_are_checked_before_any_work(tmp_path, tool, args, message):
    (tmp_path / 'taken.txt').write_text('a file\n')
    before = _snapshot(tmp_path)
    assert_refused(run_tool(tool, *args, cwd=tmp_path), message)
    assert _snapshot(tmp_path) == before


@pytest.mark.subprocess
def test_an_onnx_file_of_another_model_is_refused(runs, tmp_path):
    from hardnet_backbones.deploy import export_onnx

    other = create_model('fcn_hardnet39ds', num_classes=7, aux_loss=False).eval()  # the run's model has 4 classes
    onnx = export_onnx(other, tmp_path / 'other.onnx', 'segmentation', (64, 64))
    image = tmp_path / 'a.png'
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    proc = run_tool('segment', '--checkpoint', runs['seg'], '--onnx', onnx, '--out-dir', tmp_path / 'out', image,
                    cwd=tmp_path)
    assert_refused(proc, 'other.onnx predicts 7 classes', 'export it again')
    assert not list((tmp_path / 'out').glob('*.png'))


@pytest.mark.subprocess
def test_a_checkpoint_whose_weights_diverged_is_refused(runs, tmp_path):
    state = torch.load(runs['det'], weights_only=True)
    for weights in (state['model'], state.get('model_ema')):
        if weights:
            name = next(k for k, v in weights.items() if v.is_floating_point())
            weights[name] = torch.full_like(weights[name], math.nan)
    torch.save(state, tmp_path / 'nan.pth')
    image = tmp_path / 'a.png'
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    proc = run_tool('detect', '--checkpoint', tmp_path / 'nan.pth', '--out-dir', tmp_path / 'out', image, cwd=tmp_path)
    assert_refused(proc, 'hold nan or inf', 'the run diverged')


# ------------------------------------------------------------------ images

@pytest.mark.subprocess
def test_extreme_images_work_or_are_one_line(runs, tmp_path):
    import struct
    import zlib

    def png_header(width: int, height: int) -> bytes:  # a decompression bomb: a huge size, no pixels
        def chunk(kind, body):
            return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
        header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
        return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b'')

    (tmp_path / 'bomb.png').write_bytes(png_header(20000, 20000))
    proc = run_tool('detect', '--checkpoint', runs['det'], '--out-dir', tmp_path / 'out', tmp_path / 'bomb.png',
                    cwd=tmp_path)
    assert_refused(proc, 'bomb.png', 'exceeds limit', 'PIL.Image.MAX_IMAGE_PIXELS')

    Image.fromarray(np.full((24, 6000, 3), 128, np.uint8)).save(tmp_path / 'wide.png')  # a panorama strip
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(tmp_path / 'tiny.png')  # under 32 px
    proc = run_tool('detect', '--checkpoint', runs['det'], '--out-dir', tmp_path / 'det', tmp_path / 'wide.png',
                    tmp_path / 'tiny.png', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert max(Image.open(tmp_path / 'det' / 'wide.png').size) <= 6000
    proc = run_tool('segment', '--checkpoint', runs['seg'], '--out-dir', tmp_path / 'seg', tmp_path / 'tiny.png',
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / 'seg' / 'tiny.png').size == (24, 20)  # padded for the model, cropped back
    assert '\r' not in proc.stderr  # no progress bar when the output is not a terminal


# ------------------------------------------------------------------ the Python API

@pytest.mark.parametrize('name, kwargs, error, message', [
    ('fcn_hardnet39ds', dict(num_classes=0), ValueError, 'and must be an integer in [1, 100,000]'),
    ('lraspp_hardnet39ds', dict(num_classes=0), ValueError, 'and must be an integer in [1, 100,000]'),
    ('hardnet39ds', dict(drop_rate=math.nan), ValueError, 'drop_rate must be in'),
    ('ssdlite320_hardnet39ds', dict(num_classes=3, size=-1), ValueError, 'size must be an integer of at least 32'),
    ('ssdlite320_hardnet39ds', dict(num_classes=3, score_thres=0.1), TypeError, "did you mean 'score_thresh'"),
    ('fasterrcnn_hardnet39ds_320_fpn', dict(num_classes=3, box_score_thres=0.1), TypeError,
     "did you mean 'box_score_thresh'"),
    ('fasterrcnn_hardnet39ds_320_fpn', dict(num_classes=3, min_size=0), ValueError,
     'min_size must be a number of pixels in [32, 8192]'),
])
def test_builders_refuse_bad_arguments(name, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        create_model(name, **kwargs)


def test_optimize_for_inference_refuses_the_wrong_kind_and_bad_calibration():
    from hardnet_backbones.deploy import optimize_for_inference

    classifier = create_model('hardnet39ds').eval()
    with pytest.raises(ValueError, match="HarDNet is a classification model, not detection"):
        optimize_for_inference(classifier, 'detection')
    with pytest.raises(ValueError, match='calibration inputs hold nan'):
        optimize_for_inference(classifier, int8=True, calibration=[torch.full((3, 64, 64), math.nan)])
    with pytest.raises(ValueError, match='calibration inputs are normalised'):
        optimize_for_inference(classifier, int8=True, calibration=[torch.zeros(1, 64, 64)])


# ------------------------------------------------------------------ first contact

def test_degenerate_predictions_are_warned_about_and_recorded(caplog):
    confusion = torch.tensor([[50, 0, 0], [30, 0, 0], [20, 0, 0]])  # background everywhere
    metrics = metrics_from_confusion(confusion, ['background', 'person', 'car'])
    assert metrics['degenerate'] == "the model predicts 'background' on every pixel of every validation image"
    assert 'has not learnt the other classes' in caplog.text
    assert 'degenerate' not in metrics_from_confusion(torch.tensor([[5, 1], [1, 5]]), ['a', 'b'])


def test_a_detector_that_finds_nothing_is_warned_about(data, caplog):
    dataset = CocoDetectionDataset(data / 'images' / 'val', data / 'annotations' / 'val.json')

    def timid(images):
        return [dict(boxes=torch.tensor([[1., 1., 9., 9.]]), labels=torch.tensor([1]), scores=torch.tensor([0.05]))
                for _ in images]
    timid.eval = lambda: None
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=lambda b: tuple(zip(*b)))
    metrics, _ = evaluate_detection(timid, loader, dataset.coco, dataset.label_to_cat_id, DistInfo())
    assert metrics['degenerate'].startswith('no detection scores 0.3 or more on any validation image (best: 0.05)')
    assert 'finds nothing yet' in caplog.text


def test_box_captions_never_overlap():
    boxes = [[10, 50, 100, 150], [30, 50, 120, 160], [40, 50, 200, 190], [0, 0, 50, 40]]  # a shared top edge
    rects = place_captions(boxes, [(60, 12)] * 4, 300, 200)
    for i, a in enumerate(rects):
        assert 0 <= a[0] and a[2] <= 300 and 0 <= a[1] and a[3] <= 200
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    picture = draw_detections(torch.full((3, 200, 300), 0.5), torch.tensor(boxes, dtype=torch.float32),
                              torch.tensor([1, 2, 1, 2]), torch.tensor([0.9, 0.8, 0.7, 0.6]), ['car', 'person'],
                              min_side=0)
    assert picture.size == (300, 200)


def test_logs_carry_metrics_not_library_chatter(runs):
    log = (runs['det'].parent / 'train.log').read_text()
    assert 'mAP=' in log and 'Average Precision' not in log and 'index created' not in log


def test_every_mask_value_outside_the_classes_is_listed_at_once_and_nonzero_class_maps_them(tmp_path):
    from hardnet_backbones.data.segmentation import folder_segmentation

    for folder in ('images', 'masks'):
        (tmp_path / folder / 'train').mkdir(parents=True)
    for n in range(4):  # pedestrian masks: 0 background, 1..N one value per person
        ids = np.zeros((40, 48), np.uint8)
        for person in range(1, n + 2):
            ids[2 + 8 * person:8 + 8 * person, 4:20] = person
        Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / 'images' / 'train' / f'p{n}.png')
        Image.fromarray(ids).save(tmp_path / 'masks' / 'train' / f'p{n}.png')
    with pytest.raises(DataError) as info:
        folder_segmentation(tmp_path, 'train', ['background', 'person'])
    message = str(info.value)
    assert '2 in ' in message and '3 in ' in message and '4 in ' in message and '\n' not in message
    assert 'data.nonzero_class: 1' in message
    dataset = folder_segmentation(tmp_path, 'train', ['background', 'person'], nonzero_class=1)
    assert set(dataset[3][1].unique().tolist()) == {0, 1}


def test_a_checkpoint_with_nan_weights_is_refused_by_the_api(runs, tmp_path):
    import hardnet_backbones

    state = torch.load(runs['seg'], weights_only=True)
    for weights in (state['model'], state.get('model_ema') or {}):
        for key, value in weights.items():
            if value.is_floating_point():
                weights[key] = value * math.inf
    torch.save(state, tmp_path / 'inf.pth')
    with pytest.raises(CheckpointError, match='hold nan or inf'):
        hardnet_backbones.load_trained_model(tmp_path / 'inf.pth')


def test_segmentation_evaluation_runs_on_images_under_the_minimum(tmp_path):
    from hardnet_backbones.data.transforms import segmentation_eval_transform

    out = segmentation_eval_transform((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))(
        image=np.zeros((20, 24, 3), np.uint8), mask=np.ones((20, 24), np.int64))
    assert out['image'].shape[:2] == (32, 32) and (out['mask'][20:] == 255).all() and (out['mask'][:20, :24] == 1).all()


def test_exports_print_no_exporter_notes(tmp_path):
    import warnings

    from hardnet_backbones.deploy import export_onnx, export_torchscript, validate_torchscript

    model = create_model('ssdlite320_hardnet39ds', num_classes=3, size=64).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        export_onnx(model, tmp_path / 'm.onnx', 'detection', (64, 64))
        path = export_torchscript(model, tmp_path / 'm.pt', 'detection', (64, 64))
        validate_torchscript(path, model, 'detection', (64, 64))
    shown = [w for w in caught if not issubclass(w.category, DeprecationWarning)]  # what users see by default
    assert [str(w.message)[:80] for w in shown] == []
