"""Progress bars on a terminal only: written to a file or a pipe, tqdm's carriage returns make one huge line of a
log. Elsewhere the tools log a line per stage (the trainer one per epoch, ``train.log_every`` per step)."""
import sys
from typing import Any, Iterable, Optional

from tqdm import tqdm

__all__ = ['progress_bar']


def progress_bar(iterable: Optional[Iterable] = None, disable: bool = False, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only when standard error is a terminal (and ``disable`` is False)."""
    return tqdm(iterable, disable=disable or not sys.stderr.isatty(), **kwargs)
