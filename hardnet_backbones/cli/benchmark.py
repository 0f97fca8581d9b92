"""Benchmark models side by side: images/s, latency, peak memory, params, GMACs, ratios to baselines."""
import argparse
import json
import logging
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..benchmark import SUITES, VARIANTS, BenchConfig, interleaved_markdown, run_benchmark, run_interleaved, to_markdown
from ..deploy.precision import check_precision, choose_precision
from ..errors import DataError
from ..inference.batching import expand_image_paths
from ..utils.cpu import describe_cpu
from ..utils.files import write_text_atomic
from .common import default_device, output_file, positive_int, torch_device

_logger = logging.getLogger('hardnet.benchmark')

_DEFAULT_SIZES = {'classification': (224, 224), 'detection': (300, 300), 'segmentation': (512, 512),
                  'fchardnet': (512, 1024), 'inference': (224, 224), 'memory': (224, 224), 'fpn': (480, 640)}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Measure models side by side in one run, each in a fresh subprocess, and write '
                    '<output>.json and <output>.md. Example: tools/benchmark.py --suite classification '
                    '--batch-size 8 --image-size 224')
    parser.add_argument('--suite', choices=sorted(SUITES), default=None,
                        help='preset list of models and baselines: ' + '; '.join(
                            f'{k}: ' + ', '.join(f'{m} vs {b}' for m, b in v.items() if m != b)
                            for k, v in SUITES.items()))
    parser.add_argument('--models', nargs='+', default=None,
                        help='models to measure instead of a suite, by registry name: timm names (hardnet68, '
                             'resnet50), our detectors and segmenters (ssd300_hardnet68, fcn_hardnet68), '
                             'torchvision:<torchvision builder> or a training checkpoint (runs/demo/best.pth: the '
                             'trained model); '
                             'append variants with +: ' + ', '.join(f'+{k} ({v})' for k, v in VARIANTS.items()))
    parser.add_argument('--baseline', default=None,
                        help='with --models: the model every other one is compared with (default: the first)')
    parser.add_argument('--device', type=torch_device, default=default_device(),
                        help='torch device: cpu or cuda[:N] (default: %(default)s)')
    parser.add_argument('--batch-size', type=positive_int, default=8,
                        help='inference batch size (default: %(default)s)')
    parser.add_argument('--train-batch-size', type=positive_int, default=None,
                        help='training-step batch size (default: same as --batch-size)')
    parser.add_argument('--image-size', type=int, nargs='+', default=None, metavar='PX',
                        help='input H [W] in pixels (default: 224 for classification suites, 300 detection, '
                             '512 segmentation, 512 1024 fchardnet, 480 640 fpn; detectors resize internally: SSDs to '
                             'their square size, FPN detectors to min_size / max_size)')
    parser.add_argument('--dtype', choices=['float32', 'float16', 'bfloat16'], default='float32',
                        help='autocast dtype of the plain models, training included (default: %(default)s)')
    parser.add_argument('--precision', choices=['float32', 'bfloat16', 'int8', 'auto'], default=None,
                        help='measure every model deployed in this precision, as optimize_for_inference makes it: '
                             'adds the +bf16 or +int8 variant to each (auto: the fastest this machine has '
                             'natively without calibration data); inference only (default: the models as named)')
    parser.add_argument('--images', default=None, metavar='PATH',
                        help='time on these images instead of random pixels: a folder, a file or a pattern; the '
                             'first --batch-size of them (repeated if fewer), resized to --image-size. Trained '
                             'detectors need real images: their post-processing time follows what they find')
    parser.add_argument('--channels-last', action='store_true', help='NHWC memory format for model and inputs')
    parser.add_argument('--compile', action='store_true', help='torch.compile each model before timing')
    parser.add_argument('--fuse', action='store_true',
                        help='fold BatchNorm into convs for inference (fuse_for_inference)')
    parser.add_argument('--grad-checkpointing', action='store_true',
                        help='enable set_grad_checkpointing(True) for the training measurement where supported')
    parser.add_argument('--no-train', action='store_true', help='skip the training-step measurement')
    parser.add_argument('--warmup', type=int, default=3, help='untimed warm-up iterations (default: %(default)s)')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations (default: %(default)s)')
    parser.add_argument('--interleave', type=int, default=0, metavar='ROUNDS',
                        help='inference only, every model in this process, timed in turn for ROUNDS rounds: '
                             'reports the median and range of throughput and of the ratio to the baseline, and '
                             'GFLOP/s against the machine\'s ceiling in each model\'s precision (a 3x3 '
                             'convolution, channels_last, measured in the same run; fairest on a noisy machine)')
    parser.add_argument('--no-isolate', action='store_true',
                        help='measure in this process (faster; CPU memory figures then accumulate)')
    parser.add_argument('--output', type=output_file, default=None,
                        help='output path without extension (default: runs/benchmark/<suite or custom>)')
    return parser


def _with_precision(models: Dict[str, str], precision: str) -> Dict[str, str]:
    """Each model (and its baseline) with the variant of ``precision``."""
    if precision == 'auto':
        precision = choose_precision(torch.device('cpu'))[0]
    suffix = {'float32': '+fused', 'bfloat16': '+bf16', 'int8': '+int8'}[precision]
    return {name + suffix: baseline + suffix for name, baseline in models.items()}


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    if bool(args.suite) == bool(args.models):
        _logger.error('give exactly one of --suite or --models')
        return 2
    if args.dtype != 'float32':  # one rule for --dtype and --precision: no emulated (slower) precision
        try:
            check_precision(args.dtype, torch.device(args.device))
        except ValueError as e:
            _logger.error('--dtype %s', e)
            return 2
    if args.images:
        try:
            expand_image_paths([args.images])
        except (FileNotFoundError, DataError) as e:
            _logger.error('--images: %s', e)
            return 2
    if args.suite:
        models = SUITES[args.suite]
        default_size = _DEFAULT_SIZES[args.suite]
    else:
        baseline = args.baseline or args.models[0]
        models = {name: baseline for name in dict.fromkeys([baseline, *args.models])}
        default_size = (224, 224)
    if args.precision is not None:
        models = _with_precision(models, args.precision)
    size = args.image_size or default_size
    cfg = BenchConfig(
        device=args.device, batch_size=args.batch_size, image_size=(size[0], size[-1]), dtype=args.dtype,
        channels_last=args.channels_last, compile=args.compile, fuse=args.fuse, warmup=args.warmup,
        iters=args.iters, train=not args.no_train, train_batch_size=args.train_batch_size,
        grad_checkpointing=args.grad_checkpointing, images=args.images)
    try:
        if args.interleave:
            rows = run_interleaved(models, cfg, rounds=args.interleave)
        else:
            rows = run_benchmark(models, cfg, isolate=not args.no_isolate)
    except (RuntimeError, ValueError) as e:
        _logger.error('%s', e)
        return 2
    output = Path(args.output or f'runs/benchmark/{args.suite or "custom"}')
    output.parent.mkdir(parents=True, exist_ok=True)
    machine = dict(platform=platform.platform(), processor=platform.processor(), cpu=describe_cpu(),
                   torch=torch.__version__,
                   threads=torch.get_num_threads(),
                   gpu=torch.cuda.get_device_name(0) if cfg.device.startswith('cuda') else None)
    report = dict(config=asdict(cfg), machine=machine, results=rows)
    write_text_atomic(output.with_suffix('.json'), json.dumps(report, indent=2))
    table = interleaved_markdown(rows, cfg) if args.interleave else to_markdown(rows, cfg)
    write_text_atomic(output.with_suffix('.md'), table)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
