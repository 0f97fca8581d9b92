"""Argument and error helpers shared by the tools."""
import argparse
import logging

from ..engine.config import Config, list_keys
from ..errors import HardnetError, user_message


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


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value
