"""``hardnet-app``: the web app, served on this machine (127.0.0.1) unless told otherwise."""
import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import List, Optional

from ..cli.common import (
    USER_ERRORS, default_device, port_number, positive_float, positive_int, report_user_error, torch_device)
from ..errors import ConfigError, MissingExtraError
from .catalog import build_catalog
from .loading import ModelLoader
from .pages import Pages
from .uploads import DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_SIDE

__all__ = ['main', 'get_args_parser', 'create_app']

_logger = logging.getLogger('hardnet.app')
LOOPBACK = ('127.0.0.1', 'localhost', '::1')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='A web app to try the models in a browser: classify (top five), detect (boxes, a score '
                    'threshold, the detections as a table and JSON) and segment (classes over the image, their '
                    'share of the pixels). It offers the runs of tools/train.py under --runs, the published '
                    'weights already in the download cache ($TORCH_HOME/hub/checkpoints) and files given with '
                    '--weights; nothing is downloaded. Needs the [app] extra: pip install "hardnet-backbones[app]".')
    parser.add_argument('--runs', type=Path, default=Path('runs'),
                        help='folder searched (recursively) for runs: folders with config.yaml and best.pth or '
                             'last.pth; an int8 ONNX file exported into a run folder (hardnet-export --int8 '
                             '--output RUN/export) makes int8 a choice for it (default: %(default)s)')
    parser.add_argument('--weights', action='append', default=[], metavar='MODEL=FILE',
                        help='also offer a weights file for a model name: a classifier (hardnet68=hardnet68.pth, '
                             'published or ours) or a published detector (centernet_hardnet85=FILE, '
                             'ssd512_hardnet68=FILE); repeat for several')
    parser.add_argument('--no-published', action='store_true',
                        help='do not offer the published weights found in the download cache')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on; the default serves this machine only, 0.0.0.0 every network '
                             'this machine is on (anyone there can use it; there is no login) (default: %(default)s)')
    parser.add_argument('--port', type=port_number, default=7860, help='port to serve on (default: %(default)s)')
    parser.add_argument('--device', type=torch_device, default=default_device(),
                        help='torch device: cpu or cuda[:N] (default: %(default)s)')
    parser.add_argument('--max-file-size', default='25mb',
                        help='largest upload accepted, e.g. 10mb, 1gb (default: %(default)s)')
    parser.add_argument('--max-side', type=positive_int, default=DEFAULT_MAX_SIDE,
                        help='images whose longer side exceeds this many pixels are shrunk to it first, and the page '
                             'says so (default: %(default)s)')
    parser.add_argument('--max-megapixels', type=positive_float, default=DEFAULT_MAX_MEGAPIXELS,
                        help='images of more pixels are refused from their header, before decoding (decompression '
                             'bombs) (default: %(default)s)')
    parser.add_argument('--queue-size', type=positive_int, default=16,
                        help='requests that may wait; the models run one request at a time, so that two people do '
                             'not share the cores between two models (default: %(default)s)')
    parser.add_argument('--models-kept', type=positive_int, default=2,
                        help='models kept loaded (by model and precision) between requests (default: %(default)s)')
    return parser


def _require_gradio() -> None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise MissingExtraError('the web app needs Gradio: pip install "hardnet-backbones[app]"') from None


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(f'cannot serve on {host}:{port} ({e.strerror}): another program uses the port or the '
                              f'address is not this machine\'s; choose another --port or --host') from None


def create_app(args: argparse.Namespace):
    """``(Gradio Blocks, Pages)`` for the parsed arguments (models are loaded on first use)."""
    _require_gradio()
    from .ui import build_app

    catalog = build_catalog(args.runs, args.weights, published=not args.no_published)
    pages = Pages(catalog, ModelLoader(args.device, args.models_kept), args.max_side, args.max_megapixels)
    return build_app(pages, args.device), pages


def launch(app, args: argparse.Namespace, block: bool = True):
    """Serve ``app`` as the arguments say: queued, one model run at a time, uploads bounded, never shared
    through Gradio's tunnels."""
    from .ui import CSS, THEME

    app.queue(default_concurrency_limit=1, max_size=args.queue_size)
    return app.launch(server_name=args.host, server_port=args.port, share=False, max_file_size=args.max_file_size,
                      show_error=True, ssr_mode=False, quiet=True, prevent_thread_lock=not block, theme=THEME,
                      css=CSS, footer_links=['api', 'settings'])


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    try:
        _check_port(args.host, args.port)
        app, pages = create_app(args)
    except USER_ERRORS as e:
        return report_user_error(_logger, e)
    counts = ', '.join(f'{len(v)} {task}' for task, v in pages.catalog.items())
    if args.host not in LOOPBACK:
        _logger.warning('serving on %s: anyone who can reach this machine on port %d can use the app', args.host,
                        args.port)
    _logger.info('models: %s; open http://%s:%d in a browser (Ctrl+C stops)', counts,
                 'localhost' if args.host in LOOPBACK else args.host, args.port)
    launch(app, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
