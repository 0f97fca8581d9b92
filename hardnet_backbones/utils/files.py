"""Crash-safe files: every file the project writes goes through :func:`write_atomic`.

A file is written to ``<name>.tmp`` in the same folder, flushed to disk, then renamed over the old
file, so a kill at any moment leaves either the old or the new file, never a torn one. A kill can
leave a ``.tmp`` behind; :func:`remove_partial_files` clears them. A failed write (a full disk, say)
removes its ``.tmp`` at once and leaves the old file intact.
"""
import errno
import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Union

import torch

from ..errors import DiskFullError

__all__ = ['save_atomic', 'write_atomic', 'write_text_atomic', 'remove_partial_files', 'TMP_SUFFIX']

TMP_SUFFIX = '.tmp'
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _open_for_writing(path: Path) -> BinaryIO:
    return open(path, 'wb')


def _commit(tmp: Path, path: Path) -> None:
    """Make the finished ``tmp`` file the new ``path`` (atomic on POSIX and Windows)."""
    os.replace(tmp, path)


def _is_disk_full(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
    return False


def write_atomic(path: Union[str, Path], write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it into place.

    Raises:
        DiskFullError: the disk is full (the partial file is removed, the previous ``path`` is intact).
    """
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with _open_for_writing(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    except Exception as e:  # an interrupt leaves the .tmp to remove_partial_files, like a kill would
        tmp.unlink(missing_ok=True)
        if _is_disk_full(e):
            free = shutil.disk_usage(path.parent).free / 2 ** 20
            raise DiskFullError(f'cannot write {path}: the disk is full ({free:.0f} MB free in {path.parent}); '
                                f'the previous file is intact. Free some space, then run again') from e
        raise


def save_atomic(obj: Dict[str, Any], path: Union[str, Path]) -> None:
    """``torch.save`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(path: Union[str, Path], text: str) -> None:
    """A text file through :func:`write_atomic`."""
    write_atomic(path, lambda f: f.write(text.encode('utf-8')))


def remove_partial_files(folder: Union[str, Path]) -> List[Path]:
    """Delete the ``*.tmp`` files a killed run left in ``folder``; returns them."""
    folder = Path(folder)
    partial = sorted(folder.glob(f'*{TMP_SUFFIX}')) if folder.is_dir() else []
    for path in partial:
        path.unlink(missing_ok=True)
    return partial
