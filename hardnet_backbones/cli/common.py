"""Argument helpers shared by the tools."""
import argparse

from ..engine.config import Config, list_keys


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``config`` positional plus repeated ``--set key=value`` overrides."""
    parser.add_argument('config', nargs=None if required else '?',
                        help='YAML run config (see configs/); its keys are the dotted names listed under --set')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override one config value, e.g. --set train.epochs=5 --set data.root=/data/coco. '
                             'Keys: ' + ', '.join(list_keys(Config())))
