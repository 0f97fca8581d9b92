"""Accuracy of trained models per precision: float32 as trained, the float32 deployed form, bfloat16, and int8
(onnxruntime, calibrated on 32 training images).

bfloat16 is applied with ``with_autocast`` directly, so it also runs (emulated, slowly) on CPUs without
AVX512_BF16 / AMX, where ``optimize_for_inference`` refuses it: the numbers are the same, the speed is not.
Writes ``precision_accuracy.json`` next to this file (or ``--output``), keeping the runs it already holds from the
same machine.

Usage: python benchmarks/cpu/precision_accuracy.py RUN_FOLDER [RUN_FOLDER ...] [--output FILE]
"""
import argparse
import json
from pathlib import Path

from hardnet_backbones.deploy import calibration_images, optimize_for_inference
from hardnet_backbones.deploy.fuse import fuse_for_inference
from hardnet_backbones.deploy.precision import with_autocast
from hardnet_backbones.engine.config import config_from_dict
from hardnet_backbones.engine.evaluate import evaluate
from hardnet_backbones.inference.batching import expand_image_paths
from hardnet_backbones.models.hub import load_checkpoint_file
from hardnet_backbones.utils.cpu import describe_cpu
from hardnet_backbones.utils.files import write_text_atomic

# form -> optimize(model, task), as evaluate() takes it
FORMS = {
    'float32 (as trained)': None,
    'float32 (optimize_for_inference)': lambda model, task: fuse_for_inference(model, channels_last=True),
    'bfloat16 (autocast, float32 outputs)': lambda model, task: with_autocast(
        fuse_for_inference(model, channels_last=True), task, 'bfloat16'),
}


def _int8(run: Path):
    """The int8 form, calibrated on 32 images of the run's training split."""
    cfg = config_from_dict(load_checkpoint_file(run / 'best.pth')['config'])
    images = expand_image_paths([str(Path(cfg.data.root) / 'images' / cfg.data.train_split)])
    return lambda model, task: optimize_for_inference(model, task, precision='int8',
                                                      calibration=calibration_images(images, task, model))


def _previous_report(path: Path) -> dict:
    """The runs measured before on this machine (a report from another machine is started afresh)."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    return previous if previous.get('machine') == describe_cpu() else dict(machine=describe_cpu(), runs={})


def main(runs, output: Path):
    report = _previous_report(output)
    for run in map(Path, runs):
        results = {}
        for form, optimize in {**FORMS, 'int8 (onnxruntime)': _int8(run)}.items():
            metrics = evaluate(None, run / 'best.pth', optimize=optimize)
            keep = ('mAP', 'AP50', 'voc_AP50', 'segm_mAP', 'mIoU', 'pixel_accuracy')
            results[form] = {k: metrics[k] for k in keep if k in metrics}
            print(run, form, results[form], flush=True)
        report['runs'][str(run)] = results
    write_text_atomic(output, json.dumps(report, indent=2))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', help='run folders (their best.pth)')
    parser.add_argument('--output', type=Path, default=Path(__file__).with_name('precision_accuracy.json'),
                        help='the report (default: precision_accuracy.json next to this script)')
    args = parser.parse_args()
    main(args.runs, args.output)
