"""CenterNet-HarDNet85 in int8 with and without its pointwise output convolutions in float, interleaved.

Random weights, batch 1, the four generated 480 x 640 images (``tools/make_shapes_dataset.py --out
data/photos_480x640 --train 0 --val 4 --size 480 640 --max-shapes 6 --seed 11``), also the calibration images;
onnxruntime on the CPU, 2 threads, ROUNDS interleaved rounds. Writes ``int8_output_convolutions.md`` next to this
file. Run: python benchmarks/cpu/int8_output_convolutions.py
"""
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

import hardnet_backbones.deploy.quantize as quantize
from hardnet_backbones.deploy import calibration_images, export_onnx, quantize_to_onnx
from hardnet_backbones.inference.batching import expand_image_paths
from hardnet_backbones.models import create_model
from hardnet_backbones.utils.cpu import describe_cpu
from hardnet_backbones.utils.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / 'data' / 'photos_480x640' / 'images' / 'val'
ROUNDS, SIZE = 5, (480, 640)


def files(model, images, folder: Path) -> dict:
    paths = {'float32': export_onnx(model, folder / 'float32.onnx', 'detection', SIZE),
             'int8 (output 1x1 convolutions float)': quantize_to_onnx(model, folder / 'new.onnx', 'detection',
                                                                      images, SIZE)}
    kept_float = quantize._output_convolutions
    quantize._output_convolutions = lambda graph: set()
    try:
        paths['int8, all convolutions'] = quantize_to_onnx(model, folder / 'old.onnx', 'detection', images, SIZE)
    finally:
        quantize._output_convolutions = kept_float
    return paths


def main() -> None:
    torch.manual_seed(0)
    model = create_model('centernet_hardnet85', num_classes=81).eval()
    images = calibration_images(expand_image_paths([str(IMAGES)]), 'detection', count=4)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {form: ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
                    for form, path in files(model, images, Path(tmp)).items()}
    feeds = [image.numpy() for image in images]
    rates = {form: [] for form in sessions}
    for session in sessions.values():
        session.run(None, {session.get_inputs()[0].name: feeds[0]})
    for _ in range(ROUNDS):
        for form, session in sessions.items():
            for x in feeds:
                start = time.perf_counter()
                session.run(None, {session.get_inputs()[0].name: x})
                rates[form].append(1 / (time.perf_counter() - start))
    lines = [f'*{describe_cpu()}; centernet_hardnet85 at 512, batch 1, {SIZE[0]}x{SIZE[1]} images, onnxruntime, '
             f'{ROUNDS} interleaved rounds*', '', '| form | img/s (median) | img/s (min-max) |', '|---|---:|---:|']
    for form, values in rates.items():
        lines.append(f'| {form} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |')
    write_text_atomic(Path(__file__).with_name('int8_output_convolutions.md'), '\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
