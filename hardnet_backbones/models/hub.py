"""Verified, cached downloads of published weights, and safe checkpoint loading.

Published HarDNet files follow torch.hub's naming convention ``name-<sha256 prefix>.pth``;
every download (and every cached copy before use) is checked against that SHA-256 prefix.
Files land where timm's own loader looks (``$TORCH_HOME/hub/checkpoints`` or ``cache_dir``),
so timm then loads them from its cache.
"""
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional, Union
from urllib.error import URLError
from urllib.parse import urlparse

import torch

from ..errors import CheckpointError, DownloadError
from ..utils.files import write_text_atomic

__all__ = ['cached_download', 'pinned_download', 'ensure_pretrained_cached', 'sha256_of', 'load_checkpoint_file',
           'load_weights_file', 'PINS_FILE']

_logger = logging.getLogger(__name__)
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{6,64})\.')


def sha256_of(path: Union[str, Path], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_hash(url: str, sha256: Optional[str]) -> str:
    if sha256:
        return sha256.lower()
    match = _HASH_IN_NAME.search(os.path.basename(urlparse(url).path))
    if match is None:
        raise ValueError(f'No SHA-256 given and none in the file name of {url} (expected name-<sha256>.ext)')
    return match.group(1)


def _verify(path: Path, expected: str, url: str) -> None:
    actual = sha256_of(path)
    if not actual.startswith(expected):
        raise DownloadError(
            f'SHA-256 mismatch for {path} (from {url}): expected {expected}..., got {actual}. '
            f'The file is corrupt or not the published one; delete it and download again.')


def _download_failed(url: str, error: Exception, local_option: str) -> DownloadError:
    """The one-line error of a download that failed, with the offline fix (``local_option`` names where a local
    file goes)."""
    problem = f'could not download {url} ({error})'
    return DownloadError(f'{problem[0].upper()}{problem[1:]}. Without network access, fetch the file elsewhere and '
                         f'pass it as a local file ({local_option}).', problem)


def cached_download(
        url: str,
        sha256: Optional[str] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        progress: bool = True,
) -> Path:
    """Download ``url`` once into the cache and return the local path, verified by SHA-256.

    Args:
        url: http(s) or file URL.
        sha256: full or prefix hex digest; defaults to the prefix in the file name (``name-<hash>.pth``).
        cache_dir: target folder; default ``torch.hub.get_dir()/checkpoints`` (timm's cache).
        progress: show a download progress bar.

    Raises:
        DownloadError: the download failed or the file does not match its hash (a ``RuntimeError``).
    """
    expected = _expected_hash(url, sha256)
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / 'checkpoints'
    path = folder / os.path.basename(urlparse(url).path)
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _logger.info('Downloading %s to %s', url, path)
        try:
            # verifies the hash while streaming into a temporary file, renamed only once complete and right
            torch.hub.download_url_to_file(url, str(path), hash_prefix=expected, progress=progress)
            return path
        except RuntimeError as e:
            if 'invalid hash value' not in str(e):
                raise
            raise DownloadError(f'SHA-256 mismatch for {url}: {e}. The download is corrupt or not the published '
                                f'file; nothing was kept.', f'SHA-256 mismatch for {url}') from e
        except (URLError, OSError) as e:
            raise _download_failed(url, e, 'pretrained_cfg_overlay=dict(file=PATH) or --checkpoint PATH') from e
    try:
        _verify(path, expected, url)
    except DownloadError:
        path.unlink(missing_ok=True)
        raise
    return path


PINS_FILE = 'hardnet_backbones_pins.json'


def _read_pins(folder: Path) -> Dict[str, str]:
    path = folder / PINS_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as e:
        raise DownloadError(f'Cannot read the weights pins {path} ({e}); delete it to pin the cached files anew') from e


def _write_pins(folder: Path, pins: Dict[str, str]) -> None:
    write_text_atomic(folder / PINS_FILE, json.dumps(pins, indent=2, sort_keys=True))


def pinned_download(
        url: str,
        cache_dir: Optional[Union[str, Path]] = None,
        progress: bool = True,
) -> Path:
    """Download ``url`` once into the cache, for files published without a hash: the SHA-256 of the first file
    used is recorded (``hardnet_backbones_pins.json`` beside it), and a different file at that name later is refused.

    Raises:
        DownloadError: the download failed, or the cached file is not the one pinned (saying how to accept it).
        CheckpointError: the downloaded file is not a PyTorch checkpoint (a web page, a truncated file).
    """
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / 'checkpoints'
    name = os.path.basename(urlparse(url).path)
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _logger.info('Downloading %s to %s', url, path)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=progress)
        except (URLError, OSError) as e:
            raise _download_failed(url, e, 'weights=PATH') from e
        try:
            load_checkpoint_file(path)
        except CheckpointError:
            path.unlink(missing_ok=True)
            raise
    digest = sha256_of(path)
    pins = _read_pins(folder)
    if name not in pins:
        pins[name] = digest
        _write_pins(folder, pins)
        _logger.info('Pinned %s: SHA-256 %s (a different file under this name will be refused)', path, digest)
    elif pins[name] != digest:
        raise DownloadError(
            f'{path} is not the file first used under this name (SHA-256 {digest[:16]}..., pinned '
            f'{pins[name][:16]}...): the server or the cache holds another model now. To accept it, delete the '
            f'"{name}" entry of {folder / PINS_FILE}', f'{name} differs from its pinned SHA-256')
    return path


def ensure_pretrained_cached(
        variant: str,
        pretrained_cfg: Optional[Any] = None,
        pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
        cache_dir: Optional[Union[str, Path]] = None,
) -> Optional[Path]:
    """Fetch and verify the weights timm is about to load for ``variant`` from a URL.

    Returns the cached path, or None when the weights come from a local file or state dict.
    """
    from timm.models import resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(
        variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay).to_dict()
    if cfg.get('file') or cfg.get('state_dict') or not cfg.get('url'):
        return None
    return cached_download(cfg['url'], cache_dir=cache_dir)


def load_weights_file(path: Union[str, Path], use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """Model weights from a ``.pth`` / ``.safetensors`` file, as timm reads them.

    A bare state dict, or one wrapped under 'state_dict_ema' / 'model_ema' (preferred with ``use_ema``) /
    'state_dict' / 'model'; DistributedDataParallel and torch.compile prefixes are removed
    (``timm.models.clean_state_dict``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, or not a state dict (the error says what the file holds).
    """
    from .state_dict import unwrap_state_dict

    path = Path(path)
    if path.suffix != '.safetensors':
        checkpoint = load_checkpoint_file(path)
    elif not path.is_file():
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    else:
        try:
            from safetensors.torch import load_file
            checkpoint = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for broken files
            raise CheckpointError(f'Cannot read checkpoint {path}: not a valid safetensors file ({e})') from e
    state_dict = unwrap_state_dict(checkpoint, use_ema)
    not_tensors = sorted(str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not state_dict or not_tensors:
        held = f'entries {not_tensors[:6]} that are not tensors' if not_tensors else 'an empty dict'
        raise CheckpointError(f'Checkpoint {path} is not a model state dict: it holds {held}')
    return state_dict


def load_checkpoint_file(path: Union[str, Path]) -> Dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` and errors that name the file.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a readable PyTorch checkpoint (a ``RuntimeError``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    with open(path, 'rb') as f:
        start = f.read(512).lstrip().lower()
    if start.startswith((b'<!doctype', b'<html', b'<?xml', b'<head')):
        raise CheckpointError(f'Cannot read checkpoint {path}: it is a web page, not a PyTorch file (the server '
                              f'answered with HTML); delete it and fetch the file again')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f'Cannot read checkpoint {path}: it is truncated, corrupt or not a PyTorch file '
                              f'({first_line})') from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'Checkpoint {path} holds a {type(checkpoint).__name__}, expected a dict of tensors')
    return checkpoint
