"""Argument and error helpers shared by the tools."""
import argparse
import logging
import os
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from ..engine.config import Config, list_keys
from ..errors import ConfigError, HardnetError, user_message


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``config`` positional plus repeated ``--set key=value`` overrides."""
    parser.add_argument('config', nargs=None if required else '?',
                        help='YAML run config (see configs/); its keys are the dotted names listed under --set')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override one config value, e.g. --set train.epochs=5 --set data.root=/data/coco. '
                             'Keys: ' + ', '.join(list_keys(Config())))


# failures a user can fix: printed as one line, exit code 2 (anything else is a bug and keeps its traceback)
USER_ERRORS = (HardnetError, FileNotFoundError, NotADirectoryError, PermissionError)


def report_user_error(logger: logging.Logger, error: BaseException) -> int:
    """Log ``error`` as one line (without a DataLoader worker's traceback); returns the exit code 2."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format='%(levelname)s %(name)s: %(message)s')
    logger.error('%s', user_message(error))
    return 2


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path('.')


def _check_writable(path: Path) -> None:
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f'{existing} is a file, so {path} cannot be created under it')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f'{existing} is not writable (read-only or not yours); choose another place')


def output_file(text: str) -> Path:
    """argparse type: a file the tool may write (not a folder, in a writable place), checked before any work."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a folder; give a file name, e.g. {path / "out.json"}')
    if path.exists() and not path.is_file():  # a device (/dev/full), pipe or socket: the atomic rename would replace it
        raise argparse.ArgumentTypeError(f'{text} is not a regular file (a device, pipe or socket); give a file name')
    _check_writable(path.parent if path.parent != Path('') else Path('.'))
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f'{text} is not writable; choose another file')
    return path


def output_dir(text: str) -> Path:
    """argparse type: a folder the tool may write into (not a file, in a writable place), checked before any work."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a file; give a folder')
    _check_writable(path)
    return path


def torch_device(text: str) -> str:
    """argparse type: ``cpu`` or ``cuda[:N]`` that exists on this machine, checked before any work."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f'{text!r} is not a device; use cpu or cuda (cuda:N for GPU N)') from None
    if device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(f'{text!r}: the tools run on cpu or cuda[:N]')
    if device.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f'{text}: no CUDA device is available here; use --device cpu')
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f'{text}: this machine has {count} CUDA device(s), cuda:0 to '
                                             f'cuda:{count - 1}')
    return text


def default_device() -> str:
    """The tools' default ``--device``: the first GPU where there is one, else the CPU."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def probability(text: str) -> float:
    """argparse type: a number in [0, 1] (nan refused)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    value = float(text)
    if not (0 < value < float('inf')):
        raise argparse.ArgumentTypeError(f'must be a finite number above 0, got {text}')
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f'a port is 1 to 65535, got {value}')
    return value


def add_prediction_args(parser: argparse.ArgumentParser, default_out_dir: str) -> None:
    """The inputs, checkpoint, output folder and device of the tools that run a trained model."""
    parser.add_argument('images', nargs='+',
                        help='image files, folders (their images) or glob patterns such as "photos/**/*.jpg"')
    parser.add_argument('--checkpoint', required=True, help='training checkpoint (best.pth / last.pth)')
    parser.add_argument('--onnx', default=None, metavar='FILE',
                        help='run this ONNX file exported from CHECKPOINT (hardnet-export, e.g. its --int8 file) in '
                             'onnxruntime on the CPU instead of the PyTorch model; the checkpoint gives the classes')
    parser.add_argument('--out-dir', type=output_dir, default=default_out_dir,
                        help='output folder (default: %(default)s)')
    parser.add_argument('--device', type=torch_device, default=default_device(),
                        help='torch device: cpu or cuda[:N] (default: %(default)s)')
    add_precision_arg(parser)


INFERENCE_PRECISIONS = ('float32', 'bfloat16', 'float16', 'auto')


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--precision', choices=INFERENCE_PRECISIONS, default='float32',
                        help='run the model as optimize_for_inference makes it: float32 (BatchNorm folded, exact), '
                             'bfloat16 (CPUs with AVX512_BF16 or AMX, or CUDA), float16 (CUDA), or auto (the '
                             'fastest this machine has, logged); for int8 export with hardnet-export --int8 and pass '
                             '--onnx (default: %(default)s)')


def precision_optimizer(args: argparse.Namespace) -> Optional[Callable[[torch.nn.Module, str], torch.nn.Module]]:
    """What ``--precision`` does to the trained model before it runs: ``optimize(model, task)``, or None for
    float32 (the model as trained). Refuses ``--precision`` with ``--onnx``, whose file has its own."""
    return _optimizer(args.precision, args.onnx)


def _optimizer(precision: str, onnx: Optional[str]) -> Optional[Callable[[torch.nn.Module, str], torch.nn.Module]]:
    if precision == 'float32':
        return None
    if onnx:
        raise ConfigError(f'--precision {precision} is for the PyTorch model; an --onnx file has its own')
    from ..deploy import optimize_for_inference

    def optimize(model: torch.nn.Module, task: str) -> torch.nn.Module:
        try:
            return optimize_for_inference(model, task, precision=precision)
        except ValueError as e:  # a precision this machine does not run natively
            raise ConfigError(f'--{e}' if str(e).startswith('precision ') else f'--precision {precision}: {e}') \
                from None
    return optimize


def load_for_prediction(checkpoint: Union[str, Path], task: str, device: str = 'cpu', precision: str = 'float32',
                        onnx: Optional[Union[str, Path]] = None):
    """The :class:`~hardnet_backbones.inference.TrainedModel` of a run's checkpoint, run the way the prediction
    tools run it: as trained (float32), in ``precision`` as :func:`optimize_for_inference` makes it, or as the
    ONNX file ``onnx`` exported from it (e.g. its int8 file) in onnxruntime on the CPU."""
    from ..inference.trained import load_trained_model

    optimize = _optimizer(precision, onnx)
    trained = load_trained_model(checkpoint, 'cpu' if onnx else device, task=task)
    if onnx:
        from ..deploy import OnnxRuntimeModel
        trained.model = OnnxRuntimeModel(onnx, task)
        trained.model.check_classes(trained.class_names, str(checkpoint))
    elif optimize is not None:
        trained.model = optimize(trained.model, task)
    return trained


def prepare_prediction(args: argparse.Namespace, task: str):
    """``(image paths, TrainedModel, output folder)`` from the arguments of :func:`add_prediction_args`."""
    from ..inference.batching import expand_image_paths

    paths = expand_image_paths(args.images)
    trained = load_for_prediction(args.checkpoint, task, args.device, args.precision, args.onnx)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return paths, trained, out_dir
