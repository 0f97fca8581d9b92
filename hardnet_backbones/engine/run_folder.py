"""The output folder of a run: which files it holds, when a new run may start there, and its log file.

Per run, under ``cfg.output_dir`` (written by the main process only): ``config.yaml`` (resolved),
``train.log``, ``metrics.jsonl`` (one line per epoch), ``history.png`` (loss and metric curves),
``last.pth`` / ``best.pth`` (resumable), ``results.json`` (final metrics) and ``visuals/``; while a run is going,
``.lock`` holds its host and process id, so that a second run into the same folder is refused.
"""
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..errors import ConfigError, user_message
from .checkpoint import load_training_checkpoint
from .config import Config

__all__ = ['RUN_FILES', 'LOG_FORMAT', 'LOCK_FILE', 'RUN_LOGGERS', 'RunLock', 'setup_logging', 'close_logging',
           'has_run', 'clear_run', 'resume_checkpoint', 'log_failure']

# what a run writes into output_dir (--overwrite removes exactly these)
RUN_FILES = ('config.yaml', 'train.log', 'metrics.jsonl', 'history.png', 'last.pth', 'best.pth', 'results.json',
             'visuals')

_logger = logging.getLogger('hardnet.train')


LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'

LOCK_FILE = '.lock'


def _process_alive(pid: Any) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:  # unreadable: os.kill(-1 / 0) means others
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class RunLock:
    """One run per output folder: ``acquire`` creates ``<out_dir>/.lock`` (host, pid) atomically, or names the run
    holding it; a lock whose process is gone on this host (a killed run) is stale and taken over."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> Optional[str]:
        """Take the lock; returns None, or why not (one line naming the running process and the fix)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = dict(host=socket.gethostname(), pid=os.getpid())
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner.get('host') == me['host'] and not _process_alive(owner.get('pid')):
                    _logger.info('%s: the run that held it (pid %s) is gone; taking it over', self.path, owner['pid'])
                    self.path.unlink(missing_ok=True)
                    continue
                return (f'output_dir {self.path.parent} is in use by a running training (process {owner.get("pid")} '
                        f'on {owner.get("host")}); wait for it to end or choose another output_dir (if that process '
                        f'is gone, delete {self.path})')
            with os.fdopen(fd, 'w') as f:
                json.dump(me, f)
            self.held = True
            return None
        return f'cannot take {self.path}; delete it if no training runs there'

    def _owner(self) -> Dict[str, Any]:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# our loggers: the tools' ('hardnet.train', ...) and the library's (its warnings: "the model finds nothing yet")
RUN_LOGGERS = ('hardnet', 'hardnet_backbones')


def setup_logging(out_dir: Optional[Path]) -> Optional[logging.Handler]:
    """Console logging, plus ``train.log`` in ``out_dir`` with every line of :data:`RUN_LOGGERS`; returns the file
    handler, for :func:`close_logging` after the run."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for name in RUN_LOGGERS:  # train.log is complete whatever the root level is
        logging.getLogger(name).setLevel(logging.INFO)
    if out_dir is None:
        return None
    handler = logging.FileHandler(out_dir / 'train.log')
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for name in RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def close_logging(handler: Optional[logging.Handler]) -> None:
    """Detach and close the ``train.log`` handler of :func:`setup_logging` (None: nothing to do)."""
    if handler is None:
        return
    for name in RUN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def has_run(out_dir: Path) -> bool:
    return any((out_dir / name).exists() for name in ('last.pth', 'best.pth', 'metrics.jsonl', 'results.json'))


def clear_run(out_dir: Path) -> None:
    """Remove the run files of :data:`RUN_FILES` (partial ``.tmp`` files go with every start)."""
    for name in RUN_FILES:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def resume_checkpoint(
        cfg: Config, resume: Union[None, bool, str, Path], overwrite: bool,
) -> Tuple[Optional[Path], Optional[Dict[str, Any]]]:
    """The checkpoint to continue from (None: a fresh run), after checking the output folder."""
    out_dir = Path(cfg.output_dir)
    if resume not in (None, False) and overwrite:
        raise ConfigError('--resume and --overwrite contradict each other; choose one')
    if resume in (None, False):
        if has_run(out_dir) and not overwrite:
            raise ConfigError(f'output_dir {out_dir} already holds a run; continue it with --resume, replace it with '
                              f'--overwrite, or choose another output_dir')
        return None, None
    path = out_dir / 'last.pth' if resume is True else Path(resume)
    if not path.is_file():
        if resume is True:
            _logger.info('No checkpoint at %s: starting from scratch', path)
            return None, None
        raise FileNotFoundError(f'--resume: checkpoint not found: {path}')
    return path, load_training_checkpoint(path)


def log_failure(handler: Optional[logging.Handler], out_dir: Path, error: BaseException) -> None:
    """Append a failure to the run's ``train.log`` (that of an existing run too) without echoing it to the console:
    the tools print it themselves."""
    own = handler is None and out_dir.is_dir()
    if own:
        handler = logging.FileHandler(out_dir / 'train.log')
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if handler is not None:
        handler.handle(_logger.makeRecord(_logger.name, logging.ERROR, __file__, 0, '%s', (user_message(error),), None))
    if own:
        handler.close()
