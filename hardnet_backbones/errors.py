"""Errors that a user can fix: bad configs, data, checkpoints and full disks.

The command-line tools print these as one line (exit code 2); every other exception is a bug
and keeps its traceback.
"""

__all__ = ['HardnetError', 'ConfigError', 'RunInUseError',
           'DataError', 'CheckpointError', 'DownloadError', 'DiskFullError',
           'MissingExtraError', 'user_message']


class HardnetError(Exception):
    """Base class of the expected, user-fixable failures."""


class ConfigError(HardnetError, ValueError):
    """A configuration key, value or file is invalid."""


class RunInUseError(ConfigError):
    """The output folder belongs to a training that is running (its log is not touched)."""


class DataError(HardnetError, ValueError):
    """A data file (image, mask, annotation) is missing, unreadable or inconsistent."""


class CheckpointError(HardnetError, RuntimeError):
    """A checkpoint file is unreadable or does not fit the model or run."""


class DownloadError(HardnetError, RuntimeError):
    """Published weights could not be downloaded or do not match their SHA-256.

    ``problem`` says what went wrong without the advice of the message (callers add their own).
    """

    def __init__(self, message: str, problem: str = ''):
        super().__init__(message)
        self.problem = problem or message


class DiskFullError(HardnetError, OSError):
    """A file could not be written because its disk is full."""


class MissingExtraError(HardnetError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def user_message(error: BaseException) -> str:
    """The message of ``error`` without the worker traceback a DataLoader adds when it re-raises it."""
    text = str(error)
    if 'Original Traceback' in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        name, sep, rest = last.partition(': ')
        text = rest if sep and name.split('.')[-1] == type(error).__name__ else last
    return text
