"""Bad input on the newest surfaces (detector settings, config files, instances_to_coco, devices and precision): each
class refused in one line naming the problem and the fix, before expensive work; tools exit 2. See docs/bad_input.md.
"""
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hardnet_backbones.cli import benchmark as benchmark_cli
from hardnet_backbones.cli import instances_to_coco as instances_cli
from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.models import create_model
from tests.helpers import DETECTION, detection_overrides
from tests.test_bad_inputs import assert_refused, run_tool

# one cheap detector of each family that takes these settings: ours (R-CNN, SSD) and torchvision's by name
DETECTORS = ['fasterrcnn_hardnet39ds_320_fpn', 'torchvision:fasterrcnn_mobilenet_v3_large_320_fpn']


# ------------------------------------------------------------------ detector settings, checked where builders take them

@pytest.mark.parametrize('name', DETECTORS)
@pytest.mark.parametrize('kwargs, message', [
    (dict(min_size=10), 'min_size must be a number of pixels in [32, 8192]'),
    (dict(min_size='big'), 'min_size must be a number of pixels'),
    (dict(max_size=10 ** 6), 'max_size must be a number of pixels in [32, 8192]'),
    (dict(min_size=800, max_size=600), 'max_size=600 is smaller than min_size=800'),
    (dict(min_size=[400, 900], max_size=800), 'max_size=800 is smaller than min_size=[400, 900]'),
    (dict(box_score_thresh=math.nan), 'box_score_thresh must be a number in [0, 1], got nan'),
    (dict(box_nms_thresh=1.5), 'box_nms_thresh must be a number in [0, 1]'),
    (dict(rpn_post_nms_top_n_test=0), 'rpn_post_nms_top_n_test must be an integer >= 1'),
    (dict(image_mean=[0.5, 0.5]), 'image_mean must be 3 finite numbers'),
    (dict(image_mean='abc'), 'image_mean must be 3 finite numbers'),
    (dict(image_std=[0.2, 0.0, 0.2]), 'image_std must be positive'),
    (dict(num_classes=5_000_000), 'must be an integer in [2, 100,000], got 5000000'),
    (dict(trainable_backbone_layers=2.5), 'trainable_backbone_layers must be an integer'),
])
def test_detector_settings_are_refused_by_the_builders(name, kwargs, message):
    with pytest.raises(ValueError) as raised:
        create_model(name, **{'num_classes': 3, **kwargs})
    assert message in str(raised.value)


def test_ssd_normalisation_settings_are_refused_too():
    with pytest.raises(ValueError, match=r'image_std must be positive'):
        create_model('ssdlite320_hardnet39ds', num_classes=3, image_std=[0, 1, 1])


def test_segmenters_refuse_absurd_class_counts():
    with pytest.raises(ValueError, match=r'must be an integer in \[1, 100,000\]'):
        create_model('lraspp_hardnet39ds', num_classes=10 ** 7)


def test_masks_of_the_wrong_size_in_a_training_target_are_refused():
    model = create_model('maskrcnn_hardnet68_fpn', num_classes=3, min_size=64, max_size=96).train()
    images = [torch.rand(3, 64, 80)]
    target = dict(boxes=torch.tensor([[1., 1., 20., 20.]]), labels=torch.tensor([1]))
    with pytest.raises(ValueError, match=r'target 0 has masks of shape \[1, 32, 32\], but its image is 64x80'):
        model(images, [dict(target, masks=torch.zeros(1, 32, 32, dtype=torch.uint8))])
    with pytest.raises(ValueError, match=r'target 0 has masks of shape \[2, 64, 80\], but .* with 1 boxes'):
        model(images, [dict(target, masks=torch.zeros(2, 64, 80, dtype=torch.uint8))])
    empty = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                 masks=torch.zeros(0, 64, 80, dtype=torch.uint8))
    assert 'loss_mask' in model(images, [empty])  # an image without objects is a valid target


@pytest.mark.subprocess
def test_detector_settings_in_a_config_are_refused_in_one_line(shapes_root, tmp_path):
    overrides = [f'--set={o}' for o in detection_overrides(shapes_root, tmp_path / 'run', epochs=1, workers=0)]
    config = Path(DETECTION).parent / 'shapes_fasterrcnn_hardnet39ds_320_fpn.yaml'
    proc = run_tool('train', config, *overrides, '--set=model.kwargs={min_size: 640, max_size: 320}', cwd=tmp_path)
    assert_refused(proc, 'max_size=320 is smaller than min_size=640')
    assert not (tmp_path / 'run').exists()


def test_num_classes_below_the_datas_classes_is_refused_naming_both(shapes_root, tmp_path, caplog):
    overrides = detection_overrides(shapes_root, tmp_path / 'run', epochs=1, workers=0)
    args = [str(DETECTION), *(f'--set={o}' for o in overrides), '--set=model.num_classes=2']
    assert train_cli.main(args) == 2
    assert 'model.num_classes=2 is smaller than the 4 classes of the training data' in caplog.text
    assert 'Traceback' not in caplog.text


# ------------------------------------------------------------------ config files: UTF-8 YAML, one key once, bounded

def _config_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize('content, message', [
    (b'task: detection\n\x00\x01\x02', 'not a text file (it holds NUL bytes)'),
    (b'task: detection\noutput_dir: caf\xe9\n', 'not UTF-8 text (byte 0xe9 on line 2); save the file as UTF-8'),
    (b'a: ' + b'[' * 3000 + b']' * 3000 + b'\n', 'nested more than 32 levels deep'),
    (b'train:\n  lr: 0.1\n  lr: 0.2\n', "line 3, column 3: key 'lr' appears twice in one mapping (first on line 2)"),
])
def test_config_files_that_are_not_strict_utf8_yaml_are_one_line(tmp_path, caplog, content, message):
    assert train_cli.main([str(_config_file(tmp_path, 'c.yaml', content))]) == 2
    assert message in caplog.text and 'Traceback' not in caplog.text


def test_a_base_that_is_binary_or_a_chain_too_deep_is_refused(tmp_path, caplog):
    _config_file(tmp_path, 'binary.yaml', b'\x89PNG\r\n\x1a\n\x00\x00')
    assert train_cli.main([str(_config_file(tmp_path, 'c.yaml', b'base: binary.yaml\n'))]) == 2
    assert 'binary.yaml: not a text file' in caplog.text
    for i in range(40):
        _config_file(tmp_path, f'chain{i}.yaml', f'base: chain{i + 1}.yaml\n'.encode())
    _config_file(tmp_path, 'chain40.yaml', b'task: detection\n')
    assert train_cli.main([str(tmp_path / 'chain0.yaml')]) == 2
    assert 'base configs are chained more than 16 deep (from ' in caplog.text


def test_a_repeated_key_in_an_override_is_refused(tmp_path, caplog):
    assert train_cli.main([str(DETECTION), '--set=model.kwargs={size: 64, size: 96}']) == 2
    assert "key 'size' appears twice in one mapping" in caplog.text


def test_the_shipped_configs_still_read():
    from hardnet_backbones.engine.config import load_config

    for path in sorted((Path(DETECTION).parents[1]).rglob('*.yaml')):
        if '_base_' not in path.parts:
            load_config(path)


# ------------------------------------------------------------------ instances_to_coco: no false success

def _instance_set(tmp_path: Path, ids_per_image):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'masks').mkdir()
    for n, value in enumerate(ids_per_image):
        ids = np.zeros((40, 48), np.uint8)
        ids[5:20, 5:30] = value
        Image.fromarray(np.full((40, 48, 3), 80, np.uint8)).save(tmp_path / 'images' / f'p{n}.png')
        Image.fromarray(ids).save(tmp_path / 'masks' / f'p{n}.png')
    return ['--images', str(tmp_path / 'images'), '--masks', str(tmp_path / 'masks')]


@pytest.mark.subprocess
def test_instances_to_coco_refuses_a_device_as_output(tmp_path):
    proc = run_tool('instances_to_coco', *_instance_set(tmp_path, [1]), '--out', '/dev/full', cwd=tmp_path)
    assert_refused(proc, '/dev/full is not a regular file (a device, pipe or socket)')
    assert Path('/dev/full').is_char_device()


def test_instances_to_coco_refuses_masks_without_objects(tmp_path, caplog):
    out = tmp_path / 'a.json'
    assert instances_cli.main([*_instance_set(tmp_path, [0, 0]), '--out', str(out)]) == 2
    assert 'no object in any of the 2 masks under' in caplog.text and not out.exists()


def test_instances_to_coco_says_how_many_images_have_no_object(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert instances_cli.main([*_instance_set(tmp_path, [0, 3]), '--out', str(tmp_path / 'a.json')]) == 0
    assert '2 images (1 without objects), 1 objects' in caplog.text


def test_instances_to_coco_never_overwrites_its_inputs(tmp_path, caplog):
    args = _instance_set(tmp_path, [1])
    mask = tmp_path / 'masks' / 'p0.png'
    before = mask.read_bytes()
    assert instances_cli.main([*args, '--out', str(mask)]) == 2
    assert 'is one of the input files' in caplog.text and mask.read_bytes() == before


@pytest.mark.parametrize('class_name', ['', '  ', 'person,car', '[person, car]', ' person'])
def test_instances_to_coco_takes_one_class_name(tmp_path, caplog, class_name):
    assert instances_cli.main([*_instance_set(tmp_path, [1]), '--out', str(tmp_path / 'a.json'),
                               '--class-name', class_name]) == 2
    assert 'give one non-empty name without commas or brackets' in caplog.text


def test_instances_to_coco_refuses_a_truncated_image(tmp_path, caplog):
    args = _instance_set(tmp_path, [1, 2])
    image = tmp_path / 'images' / 'p1.png'
    image.write_bytes(image.read_bytes()[:-40])
    assert instances_cli.main([*args, '--out', str(tmp_path / 'a.json')]) == 2
    assert f'{image}: cannot decode the image, the file is truncated' in caplog.text


# ------------------------------------------------------------------ devices and precision: one rule everywhere

@pytest.mark.subprocess
@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
@pytest.mark.parametrize('tool, args', [
    ('detect', ['x.png', '--checkpoint', 'x.pth']),
    ('classify', ['x.png']),
    ('benchmark', ['--models', 'hardnet39ds']),
])
def test_a_cuda_device_without_a_gpu_is_one_line(tmp_path, tool, args):
    proc = run_tool(tool, *args, '--device', 'cuda', cwd=tmp_path)
    assert_refused(proc, 'cuda: no CUDA device is available here; use --device cpu')


def test_benchmark_dtype_follows_the_precision_rule(cpu_flags, caplog, tmp_path):
    cpu_flags('avx2 fma')
    assert benchmark_cli.main(['--models', 'hardnet39ds', '--dtype', 'bfloat16', '--device', 'cpu',
                               '--output', str(tmp_path / 'b')]) == 2
    assert 'bfloat16 would be emulated and slower than float32' in caplog.text


def test_optimize_for_inference_refuses_non_vision_models_and_contradictory_precisions():
    from hardnet_backbones.deploy import optimize_for_inference

    for module in (torch.nn.LSTM(4, 4), torch.nn.Linear(3, 3)):
        with pytest.raises(ValueError, match='is not an image model'):
            optimize_for_inference(module)
    classifier = create_model('hardnet39ds', num_classes=3).eval()
    with pytest.raises(ValueError, match=r"int8=True contradicts precision='bfloat16'"):
        optimize_for_inference(classifier, int8=True, precision='bfloat16')
