"""First contact with R-CNN runs, as a new user meets it: metrics that do not move with the batch size, export
validation that compares detections, progress lines in long epochs, pictures that say when nothing was found,
checkpoints a third of the size on request."""
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hardnet_backbones
from hardnet_backbones.cli import evaluate as evaluate_cli
from hardnet_backbones.cli import export as export_cli
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.visualization.draw import draw_detections
from tests.helpers import DETECTION, ROOT, detection_overrides

FPN_CONFIG = ROOT / 'configs' / 'detection' / 'shapes_fasterrcnn_hardnet39ds_320_fpn.yaml'


def _mixed_sizes(shapes_root: Path, root: Path) -> Path:
    """The shapes set with one validation image padded (right and bottom, so its boxes stay) to another size: a
    batch of both is padded to the larger one."""
    shutil.copytree(shapes_root, root)
    ann_file = root / 'annotations' / 'val.json'
    coco = json.loads(ann_file.read_text())
    entry = coco['images'][1]
    path = root / 'images' / 'val' / entry['file_name']
    pixels = np.asarray(Image.open(path).convert('RGB'))
    padded = np.full((pixels.shape[0] + 40, pixels.shape[1] + 24, 3), 90, np.uint8)
    padded[:pixels.shape[0], :pixels.shape[1]] = pixels
    Image.fromarray(padded).save(path)
    entry['height'], entry['width'] = padded.shape[:2]
    ann_file.write_text(json.dumps(coco))
    return root


def _rcnn_run(data: Path, out: Path, *extra: str):
    overrides = [f'data.root={data}', f'output_dir={out}', 'train.epochs=1', 'train.batch_size=2',
                 'data.num_workers=0', 'train.save_images=1', 'train.warmup_epochs=0',
                 'model.kwargs={min_size: 64, max_size: 128, box_score_thresh: 0.0}', *extra]
    return [str(FPN_CONFIG), *(f'--set={o}' for o in overrides)]


@pytest.fixture(scope='module')
def rcnn_run(shapes_root, tmp_path_factory):
    root = tmp_path_factory.mktemp('rcnn')
    data = _mixed_sizes(shapes_root, root / 'data')
    assert train_cli.main(_rcnn_run(data, root / 'run', 'train.best_weights_only=true', 'train.log_every=0',
                                    'train.log_seconds=0.001')) == 0
    return dict(data=data, run=root / 'run')


def _saved_predictions(checkpoint: Path, out: Path, batch_size: int):
    assert evaluate_cli.main(['--checkpoint', str(checkpoint), '--batch-size', str(batch_size),
                              '--save-predictions', str(out), '--output', str(out / 'metrics.json')]) == 0
    return (json.loads((out / 'detections_coco.json').read_text()),
            json.loads((out / 'metrics.json').read_text()))


@pytest.mark.slow
def test_rcnn_metrics_do_not_depend_on_the_evaluation_batch_size(rcnn_run, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    one, metrics_one = _saved_predictions(rcnn_run['run'] / 'last.pth', tmp_path / 'b1', 1)
    four, metrics_four = _saved_predictions(rcnn_run['run'] / 'last.pth', tmp_path / 'b4', 4)
    assert one and one == four  # every box and score, hence every AP
    assert metrics_one['metrics'] == metrics_four['metrics'] and metrics_four['batch_size'] == 1
    assert 'evaluated one image per batch: its outputs depend on how a batch is padded' in caplog.text
    trained = json.loads((rcnn_run['run'] / 'results.json').read_text())['metrics']
    assert trained['mAP'] == metrics_one['metrics']['mAP']  # training's evaluation is the same exact one


@pytest.mark.slow
def test_ssd_evaluation_takes_the_batch_size(runs, tmp_path):
    _, metrics = _saved_predictions(runs['det'], tmp_path / 'b3', 3)
    assert metrics['batch_size'] == 3


@pytest.mark.slow
@pytest.mark.parametrize('threshold, lowered', [(0.0, False), (1.0, True)])
def test_export_validation_compares_detections(rcnn_run, tmp_path, caplog, threshold, lowered):
    caplog.set_level(logging.INFO)
    checkpoint = rcnn_run['run'] / 'last.pth'
    if lowered:  # a model that finds nothing at its threshold: a copy at threshold 0 is compared instead
        state = torch.load(checkpoint, weights_only=True)
        state['config']['model']['kwargs']['box_score_thresh'] = threshold
        checkpoint = tmp_path / 'strict.pth'
        torch.save(state, checkpoint)
    out = tmp_path / 'export'
    with _no_index_warning():
        assert export_cli.main(['--checkpoint', str(checkpoint), '--output', str(out), '--image-size', '64', '80']) == 0
    report = json.loads(next(out.glob('*.export.json')).read_text())
    for key in ('onnx', 'torchscript'):
        assert report[key]['ok'] and report[key]['compared_boxes'] > 0 and report[key]['images'] == 2
        assert ('score_threshold' in report[key]) == lowered
    assert "validating on 2 images from the run's val split" in caplog.text
    assert 'boxes and 0 masks on 2 images) matches PyTorch' in caplog.text


class _no_index_warning:
    """The exporter's aten::index caveat is answered in the code (indices are never negative), not shown."""

    def __enter__(self):
        import warnings
        self._catcher = warnings.catch_warnings(record=True)
        self._seen = self._catcher.__enter__()
        warnings.simplefilter('always')

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        assert not [w for w in self._seen if 'aten::index' in str(w.message)]


def test_export_validation_without_detections_is_not_called_validated():
    from hardnet_backbones.deploy.export import _merge_detection_checks

    nothing = dict(max_abs_diff=0.0, ok=True, detections=0, reference_detections=0, compared_boxes=0,
                   compared_masks=0)
    merged = _merge_detection_checks([nothing, nothing])
    assert merged['ok'] is False and 'nothing was compared' in merged['reason']


@pytest.mark.slow
def test_long_epochs_log_progress_lines(rcnn_run):
    log = (rcnn_run['run'] / 'train.log').read_text()
    assert 'epoch 1/1 step 1/2 loss ' in log and ' img/s, epoch ETA 0m' in log  # by time, with log_every 0


def test_the_librarys_warnings_reach_train_log(tmp_path):
    from hardnet_backbones.engine.run_folder import close_logging, setup_logging

    handler = setup_logging(tmp_path)
    try:
        logging.getLogger('hardnet_backbones.evaluation.detection').warning('the model finds nothing yet')
    finally:
        close_logging(handler)
    assert 'WARNING hardnet_backbones.evaluation.detection: the model finds nothing yet' in (
        tmp_path / 'train.log').read_text()


@pytest.mark.slow
def test_a_weights_only_best_checkpoint_is_smaller_loads_and_refuses_a_resume(rcnn_run, caplog):
    run = rcnn_run['run']
    assert (run / 'best.pth').stat().st_size < 0.6 * (run / 'last.pth').stat().st_size
    trained = hardnet_backbones.load_trained_model(run / 'best.pth')
    assert type(trained.model).__name__ == 'FasterRCNN'
    args = _rcnn_run(rcnn_run['data'], run, 'train.best_weights_only=true', 'train.log_every=0',
                     'train.log_seconds=0.001', 'train.epochs=2')
    assert train_cli.main([*args, '--resume', str(run / 'best.pth')]) == 2
    assert 'holds the weights only (train.best_weights_only)' in caplog.text and 'resume from last.pth' in caplog.text


def test_a_warm_up_as_long_as_the_run_is_warned_about(shapes_root, tmp_path):
    out = tmp_path / 'run'
    overrides = detection_overrides(shapes_root, out, epochs=1, workers=0)
    assert train_cli.main([str(DETECTION), *(f'--set={o}' for o in overrides), '--set=train.warmup_epochs=1']) == 0
    assert 'train.warmup_epochs=1 covers the whole run of 1 epoch(s)' in (out / 'train.log').read_text()


def test_a_picture_without_detections_says_so():
    image = torch.full((3, 48, 64), 0.8)
    boxes, labels = torch.tensor([[5., 5., 30., 30.]]), torch.tensor([1])
    silent = np.asarray(draw_detections(image, boxes, labels, torch.tensor([0.12]), ['box'], min_side=0))
    drawn = np.asarray(draw_detections(image, boxes, labels, torch.tensor([0.12]), ['box'], 0.1, min_side=0))
    empty = np.asarray(draw_detections(image, boxes[:0], labels[:0], torch.zeros(0), ['box'], min_side=0))

    def black_band(picture):  # the notice "no detection scores 0.30 or more (best: 0.12)", white on black
        return (picture[1:8, 1:64].max(axis=2) < 40).mean() > 0.5
    assert black_band(silent) and black_band(empty) and not black_band(drawn)


def test_list_kwargs_shows_the_models_arguments_with_the_configs_values(capsys):
    assert train_cli.main([str(FPN_CONFIG), '--list-kwargs']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'model.kwargs.min_size: 256 (this config; default 800)' in lines
    assert 'model.kwargs.box_score_thresh: 0.05' in lines
