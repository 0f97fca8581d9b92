"""Config YAML read strictly: UTF-8 text only, no key twice in one mapping, bounded nesting; every problem one line.

PyYAML alone keeps the last of two equal keys without a word, recurses without bound on deeply nested input and
reports an undecodable byte as a ``UnicodeDecodeError``; a config is a contract, so each of these is refused here
naming the file, the place and the fix.
"""
from pathlib import Path
from typing import Any, Dict

import yaml

from ..errors import ConfigError

__all__ = ['MAX_NESTING', 'parse_yaml', 'read_yaml_file']

MAX_NESTING = 32  # levels of mappings and lists; the deepest shipped config has 4


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping and nesting deeper than ``MAX_NESTING``."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f'nested more than {MAX_NESTING} levels deep', self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: Dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == 'tag:yaml.org,2002:merge':
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first_line.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if seen is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f'key {key!r} appears twice in one mapping (first on line {seen}); keep one',
                        key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _one_line(error: yaml.YAMLError) -> str:
    """``line L, column C: problem`` (PyYAML's own message spans several lines and quotes the text)."""
    mark = getattr(error, 'problem_mark', None)
    problem = getattr(error, 'problem', None)
    if mark is None or problem is None:
        return ' '.join(str(error).split())
    context = getattr(error, 'context', None)
    return f'line {mark.line + 1}, column {mark.column + 1}: {problem}' + (f' ({context})' if context else '')


def parse_yaml(text: str, where: str) -> Any:
    """The value of YAML ``text`` (strictly, see the module docstring); ``where`` names it in the error.

    Raises:
        ConfigError: one line with the problem and its line and column.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f'{where}: invalid YAML ({_one_line(e)})') from None
    except RecursionError:
        raise ConfigError(f'{where}: invalid YAML (nested too deeply to read)') from None


def read_yaml_file(path: Path) -> Any:
    """The value of the YAML file ``path``, which must be UTF-8 text (a byte-order mark is allowed).

    Raises:
        ConfigError: a binary or non-UTF-8 file (naming the first bad byte and its line), or invalid YAML.
    """
    data = path.read_bytes()
    if b'\x00' in data:
        raise ConfigError(f'{path}: not a text file (it holds NUL bytes); a config is a UTF-8 YAML file')
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b'\n') + 1
        raise ConfigError(f'{path}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); save the file as '
                          f'UTF-8') from None
    return parse_yaml(text, str(path))
