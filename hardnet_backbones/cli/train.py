"""Train a detection or segmentation model from a YAML config (single process or torchrun/DDP)."""
import argparse
import logging
import sys
from typing import List, Optional

from ..engine.config import load_config
from ..engine.trainer import train
from ..errors import DiskFullError, user_message
from ..tasks.builtin import model_kwargs_lines
from .common import USER_ERRORS, add_config_args, output_dir, report_user_error

_logger = logging.getLogger('hardnet.train')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train with the shared engine; the config\'s "task" picks classification, detection or '
                    'segmentation. Multi-GPU / multi-node: torchrun --nproc_per_node=N tools/train.py CONFIG. '
                    'Writes config.yaml, train.log, metrics.jsonl, history.png, last.pth/best.pth, '
                    'results.json and visuals/ into output_dir.')
    add_config_args(parser)
    parser.add_argument('--resume', nargs='?', const=True, default=None, metavar='CHECKPOINT',
                        help='continue an interrupted run: from CHECKPOINT, or from output_dir/last.pth '
                             'when given without a value (starts fresh if there is none). The config must be the '
                             'run\'s own, except for train.epochs, train.eval_every, train.log_every, '
                             'train.log_seconds, train.save_images, train.best_weights_only, train.device and '
                             'data.num_workers')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the run already in output_dir (its checkpoints, metrics, pictures); without '
                             'it, an output_dir holding a run needs --resume')
    parser.add_argument('--output-dir', type=output_dir, default=None, help='shortcut for --set output_dir=DIR')
    parser.add_argument('--list-kwargs', action='store_true',
                        help='print the model.kwargs keys the config\'s model takes (e.g. min_size, max_size and the '
                             'score thresholds of an R-CNN) with their defaults, and exit')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    overrides = list(args.overrides) + ([f'output_dir={args.output_dir}'] if args.output_dir else [])
    try:
        cfg = load_config(args.config, overrides)
        if args.list_kwargs:
            print('\n'.join(model_kwargs_lines(cfg)))
            return 0
        train(cfg, resume=args.resume, overwrite=args.overwrite)
    except DiskFullError as e:
        _logger.error('%s; then continue the run with --resume', user_message(e))
        return 2
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    return 0


if __name__ == '__main__':
    sys.exit(main())
