#!/usr/bin/env python
"""The README's main job: detection on the generated shapes set, end to end on a CPU.

1. writes the shapes dataset (data/shapes, 240 train / 60 val images, 128 px) unless it exists;
2. trains ``ssdlite320_hardnet39ds`` from scratch with configs/detection/shapes_ssdlite320_hardnet39ds.yaml;
3. evaluates COCO mAP on the validation split (runs/demo/eval_best.json);
4. draws the detections on validation images (runs/demo/detections/*.png).
"""
import argparse
import json
import logging
import sys
import time
from pathlib import Path

from hardnet_backbones.cli import detect, evaluate, make_shapes_dataset, train

CONFIG = Path(__file__).resolve().parents[1] / 'configs' / 'detection' / 'shapes_ssdlite320_hardnet39ds.yaml'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default='data/shapes', help='shapes dataset folder (default: %(default)s)')
    parser.add_argument('--out-dir', default='runs/demo', help='run folder (default: %(default)s)')
    parser.add_argument('--epochs', type=int, default=None, help='override train.epochs of the demo config')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    data, out = Path(args.data), Path(args.out_dir)
    start = time.time()
    if not (data / 'annotations' / 'val.json').is_file():
        make_shapes_dataset.main(['--out', str(data)])
    overrides = ['--set', f'data.root={data}', '--set', f'output_dir={out}']
    if args.epochs:
        overrides += ['--set', f'train.epochs={args.epochs}']
    if train.main([str(CONFIG), *overrides, '--overwrite']) != 0:  # a new demo replaces the last one
        return 1
    if evaluate.main([str(CONFIG), *overrides, '--checkpoint', str(out / 'best.pth'),
                      '--output', str(out / 'eval_best.json')]) != 0:
        return 1
    val_images = sorted((data / 'images' / 'val').glob('*.png'))[:6]
    detect.main([*map(str, val_images), '--checkpoint', str(out / 'best.pth'), '--out-dir', str(out / 'detections')])
    metrics = json.loads((out / 'eval_best.json').read_text())['metrics']
    minutes = (time.time() - start) / 60
    summary = dict(mAP=metrics['mAP'], AP50=metrics['AP50'], voc_AP50=metrics['voc_AP50'], minutes=round(minutes, 1))
    (out / 'demo_summary.json').write_text(json.dumps(summary, indent=2))
    print(f'\nDemo done in {minutes:.1f} min: COCO mAP {metrics["mAP"]:.3f}, AP50 {metrics["AP50"]:.3f}. '
          f'Pictures: {out / "detections"}, curves: {out / "history.png"}, metrics: {out / "metrics.jsonl"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
