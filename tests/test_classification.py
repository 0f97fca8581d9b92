"""Classification as a task of the engine: folder and CSV data, timm's recipe, fine-tuning from published weights,
metrics and pictures, the tools, and bad input refused in one line before training."""
import json
import logging
import random
import shutil

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import hardnet_backbones
from hardnet_backbones.cli import classify as classify_cli
from hardnet_backbones.cli import evaluate as evaluate_cli
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.data.classification import csv_classification, folder_classification
from hardnet_backbones.data.sampling import EpochIndex
from hardnet_backbones.engine.config import load_config
from hardnet_backbones.engine.task import create_task
from hardnet_backbones.errors import DataError
from tests.helpers import CLASSIFICATION, ROOT, classification_overrides

from .reference_hardnet import RefHarDNet

CLASSES = ['circle', 'rectangle', 'triangle']


def _args(root, out, *extra, epochs=2, workers=0):
    return [str(CLASSIFICATION), *(f'--set={o}' for o in classification_overrides(root, out, epochs, workers)),
            *(f'--set={o}' for o in extra)]


@pytest.fixture
def crops(tmp_path, shape_crops):
    """A copy of the crops a test may break."""
    root = tmp_path / 'crops'
    shutil.copytree(shape_crops, root)
    return root


# ------------------------------------------------------------------ data

def test_folders_give_sorted_classes_and_class_names_fix_the_order(shape_crops):
    dataset = folder_classification(shape_crops, 'train')
    assert dataset.class_names == CLASSES and len(dataset) == 15
    assert {label for _, label in dataset.samples} == {0, 1, 2}
    reordered = folder_classification(shape_crops, 'train', class_names=['triangle', 'circle', 'rectangle'])
    path, label = reordered.samples[0]
    assert reordered.class_names[label] == path.parent.name


@pytest.mark.parametrize('break_it, message', [
    (lambda r: shutil.rmtree(r / 'val'), 'split folder not found'),
    (lambda r: [shutil.rmtree(r / 'train' / c) for c in CLASSES], 'no class folders'),
    (lambda r: shutil.copy(next((r / 'train' / 'circle').iterdir()), r / 'train' / 'loose.png'),
     '1 images lie beside the class folders'),
    (lambda r: (r / 'train' / 'square').mkdir(), 'train/square: the class folder holds no images'),
    (lambda r: (r / 'train' / 'circle' / 'broken.png').write_bytes(b'not a png'), 'broken.png: cannot read'),
])
def test_broken_folders_are_refused_naming_the_problem(crops, break_it, message):
    break_it(crops)
    with pytest.raises((DataError, FileNotFoundError), match=message):
        folder_classification(crops, 'val' if 'split' in message else 'train')


def test_files_that_are_not_images_are_skipped_with_a_count(crops, caplog):
    caplog.set_level(logging.INFO)
    (crops / 'train' / 'circle' / 'README.txt').write_text('notes')
    assert len(folder_classification(crops, 'train')) == 15
    assert 'skipped 1 files that are not images (e.g. README.txt)' in caplog.text


def test_class_names_that_do_not_match_the_folders_are_refused(shape_crops):
    with pytest.raises(DataError, match=r"no folder for \['square'\]; folders not listed \['triangle'\]"):
        folder_classification(shape_crops, 'train', class_names=['circle', 'rectangle', 'square'])


def test_csv_lists_read_paths_and_labels(shape_crops, tmp_path):
    files = sorted((shape_crops / 'val').rglob('*.png'))
    lines = ['path,label'] + [f'{f.relative_to(shape_crops)},{f.parent.name}' for f in files]
    (tmp_path / 'val.csv').write_text('\n'.join(lines))
    dataset = csv_classification(tmp_path / 'val.csv', shape_crops)
    assert dataset.class_names == CLASSES and len(dataset) == len(files)
    (tmp_path / 'bad.csv').write_text('path,label\nval/circle/missing.png,circle\n')
    with pytest.raises(DataError, match=r'bad.csv, line 2: .*missing.png is not found'):
        csv_classification(tmp_path / 'bad.csv', shape_crops)
    (tmp_path / 'odd.csv').write_text(f'{files[0].relative_to(shape_crops)},hexagon\n')
    with pytest.raises(DataError, match=r"line 1: label 'hexagon' is not one of data.class_names"):
        csv_classification(tmp_path / 'odd.csv', shape_crops, class_names=CLASSES)


def test_augmentation_depends_on_seed_epoch_and_index_only(shape_crops):
    cfg = load_config(CLASSIFICATION, classification_overrides(shape_crops, 'unused') + [
        'data.auto_augment=rand-m9-mstd0.5', 'data.reprob=0.5'])
    dataset = create_task(cfg).build_dataset('train', train=True)
    torch.manual_seed(123)
    random.seed(5)
    before = (torch.rand(1), random.random())
    torch.manual_seed(123)
    random.seed(5)
    first = dataset[EpochIndex(1, 3)][0]
    assert torch.equal(first, dataset[EpochIndex(1, 3)][0])
    assert not torch.equal(first, dataset[EpochIndex(2, 3)][0])
    assert (torch.rand(1), random.random()) == before  # the training RNG is left as it was


# ------------------------------------------------------------------ the engine and the tools

@pytest.fixture(scope='module')
def cls_run(shape_crops, tmp_path_factory):
    out = tmp_path_factory.mktemp('cls') / 'run'
    assert train_cli.main(_args(shape_crops, out, 'data.mixup=0.2', workers=2)) == 0
    return out


@pytest.mark.slow
def test_a_classifier_trains_with_metrics_pictures_and_best_on_top1(cls_run):
    records = [json.loads(line) for line in (cls_run / 'metrics.jsonl').read_text().splitlines()]
    assert {'top1', 'top5', 'val_loss', 'per_class_accuracy', 'loss'} <= set(records[-1])
    assert records[-1]['top5'] == 100.0  # three classes: top-5 clipped at the class count covers them all
    assert set(records[-1]['per_class_accuracy']) == set(CLASSES)
    best = torch.load(cls_run / 'best.pth', weights_only=True)
    assert best['best'] == max(r['top1'] for r in records)
    confusion = json.loads((cls_run / 'visuals' / 'confusion_matrix.json').read_text())
    assert confusion['class_names'] == CLASSES and sum(map(sum, confusion['counts'])) == 12
    assert (cls_run / 'visuals' / 'confusion_matrix.png').is_file()
    assert len(list((cls_run / 'visuals').glob('prediction_*.png'))) == 2


def test_layer_decay_scales_the_lr_from_the_head_down_to_the_stem(shape_crops, tmp_path):
    out = tmp_path / 'run'
    assert train_cli.main(_args(shape_crops, out, 'train.layer_decay=0.5', epochs=1)) == 0
    groups = torch.load(out / 'last.pth', weights_only=True)['optimizer']['param_groups']
    scales = sorted({g['lr_scale'] for g in groups})
    # HarDNet-39DS's group_matcher: the stem, one group per harmonic layer (transitions with their block), the head
    assert len(scales) > 10 and scales[-1] == 1.0 and scales[0] == pytest.approx(0.5 ** (len(scales) - 1))


@pytest.mark.slow
def test_the_benchmark_measures_a_trained_classifier(cls_run, tmp_path):
    from hardnet_backbones.cli import benchmark as benchmark_cli
    out = tmp_path / 'bench'
    checkpoint = str(cls_run / 'best.pth')
    assert benchmark_cli.main(['--models', checkpoint, 'hardnet39ds', '--baseline', 'hardnet39ds', '--batch-size', '1',
                               '--image-size', '32', '--no-train', '--warmup', '1', '--iters', '1',
                               '--output', str(out)]) == 0
    rows = {r['model']: r for r in json.loads(out.with_suffix('.json').read_text())['results']}
    assert rows[checkpoint]['task'] == 'classification' and rows[checkpoint]['infer_images_per_s'] > 0
    assert rows[checkpoint]['params_m'] < rows['hardnet39ds']['params_m']  # a 3-class head, not 1000


@pytest.mark.slow
def test_evaluate_classify_and_load_trained_model_agree(cls_run, shape_crops, tmp_path, capsys):
    predictions = tmp_path / 'pred'
    assert evaluate_cli.main(['--checkpoint', str(cls_run / 'best.pth'), '--save-predictions', str(predictions)]) == 0
    rows = (predictions / 'predictions.csv').read_text().splitlines()
    assert rows[0].startswith('path,true,class1,probability1') and len(rows) == 13
    first_path, _, first_class, first_probability = rows[1].split(',')[:4]
    capsys.readouterr()
    assert classify_cli.main([first_path, '--checkpoint', str(cls_run / 'best.pth'), '--topk', '1']) == 0
    assert f'{float(first_probability):6.2%}  {first_class}' in capsys.readouterr().out
    trained = hardnet_backbones.load_trained_model(cls_run / 'best.pth')
    image = trained.preprocess(Image.open(first_path))
    assert image.shape == (3, 32, 32) and trained.class_names == CLASSES


def test_fine_tuning_loads_the_published_body_with_a_new_head_and_freezes_levels(shape_crops, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / 'hardnet39ds-published.pth'
    torch.save(RefHarDNet('hardnet39ds').state_dict(), weights)
    cfg = load_config(CLASSIFICATION, classification_overrides(shape_crops, tmp_path / 'o') + [
        f'model.weights_backbone={weights}', 'model.trainable_backbone_layers=0'])
    model = create_task(cfg).build_model(3)
    published = torch.load(weights, weights_only=True)
    assert torch.equal(model.features.stem_conv1.conv.weight, published['base.0.conv.weight'])
    assert model.classifier.out_features == 3
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ['classifier.weight', 'classifier.bias']


@pytest.mark.parametrize('name', ['resnet18', 'mobilenetv3_small_050'])
def test_any_timm_classifier_takes_the_same_config(shape_crops, tmp_path, name):
    cfg = load_config(CLASSIFICATION, classification_overrides(shape_crops, tmp_path / 'o') + [
        f'model.name={name}', 'model.trainable_backbone_layers=1', 'loss.name=bce', 'data.mixup=0.2'])
    task = create_task(cfg)
    model = task.build_model(3).train()
    images = torch.randn(2, 3, 32, 32)
    loss, parts = task.loss(model, (images, torch.tensor([0, 2])), torch.device('cpu'))
    loss.backward()
    assert torch.isfinite(loss) and model.get_classifier().weight.grad is not None
    assert not all(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------ bad input, one line before training

@pytest.mark.parametrize('break_it, extra, message', [
    (lambda r: shutil.rmtree(r / 'val' / 'circle'), [], "different classes (only in train: ['circle']"),
    (lambda r: None, ['model.num_classes=2'], 'model.num_classes=2 is smaller than the 3 classes'),
    (lambda r: None, ['data.format=coco'], "data.format: 'coco' is not a classification format"),
    (lambda r: None, ['data.mixup=0.2', 'train.batch_size=3'], 'Mixup / CutMix pair the images of a batch'),
    (lambda r: None, ['model.name=torchvision:resnet50'], "use timm's name"),
    (lambda r: (r / 'train' / 'circle' / 'x.jpg').write_bytes(b'\xff\xd8 truncated'), [], 'x.jpg: cannot read'),
])
def test_bad_classification_input_is_one_line(crops, tmp_path, caplog, break_it, extra, message):
    break_it(crops)
    assert train_cli.main(_args(crops, tmp_path / 'run', *extra)) == 2
    assert message in caplog.text and 'Traceback' not in caplog.text
    assert not (tmp_path / 'run').exists()


def test_shipped_classification_configs_load():
    for path in sorted((ROOT / 'configs' / 'classification').glob('*.yaml')):
        cfg = load_config(path)
        create_task(cfg).check_config()
        assert cfg.task == 'classification'


def test_a_published_checkpoint_evaluates_on_a_class_folder_without_a_run(shape_crops, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / 'hardnet39ds-published.pth'
    torch.save(RefHarDNet('hardnet39ds').eval().state_dict(), weights)
    config = ROOT / 'configs' / 'classification' / 'imagenet_val_hardnet68.yaml'
    output = tmp_path / 'eval.json'
    assert evaluate_cli.main([str(config), '--checkpoint', str(weights), '--set', 'model.name=hardnet39ds',
                              '--set', f'data.root={shape_crops}', '--set', 'data.num_workers=0',
                              '--output', str(output)]) == 0
    metrics = json.loads(output.read_text())['metrics']
    model = timm.create_model('hardnet39ds', pretrained=True, pretrained_cfg_overlay=dict(file=str(weights))).eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    files = sorted((shape_crops / 'val').rglob('*.png'))
    with torch.no_grad():
        logits = model(torch.stack([transform(Image.open(f).convert('RGB')) for f in files]))
    labels = torch.tensor([CLASSES.index(f.parent.name) for f in files])
    assert metrics['top1'] == pytest.approx(100.0 * float((logits.argmax(1) == labels).float().mean()))
    assert np.isfinite(metrics['val_loss'])
