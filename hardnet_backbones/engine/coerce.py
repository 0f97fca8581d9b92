"""Nested dicts (parsed YAML) into typed dataclasses: every value checked against its annotation.

Unknown keys, wrong types, non-finite numbers (nan, inf) and values outside ``choices`` raise ``ConfigError``
naming the dotted key and what is valid.
"""
import dataclasses
import math
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigError

__all__ = ['build_dataclass', 'coerce_value']


def coerce_value(value: Any, annotation: Any, key: str) -> Any:
    """``value`` as the type ``annotation`` describes (int -> float allowed, bool never a number), or
    ``ConfigError`` naming ``key``."""
    return _coerce(value, annotation, key)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Union:  # Optional[X], or one of several types
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:
            try:
                return _coerce(value, alternative, key)
            except ConfigError:
                pass
        try:
            return _coerce(value, inner[-1], key)
        except ConfigError:
            if len(inner) == 1:
                raise
            names = ' or '.join(_type_name(a) for a in inner)
            raise ConfigError(f'{key}: expected {names}, got {value!r}') from None
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f'{key}: expected a list of {len(args)} values, got {value!r}')
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key}: expected a list, got {value!r}')
        return [_coerce(v, args[0], key) for v in value] if args else list(value)
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f'{key}: expected a mapping, got {value!r}')
        if not args:
            return dict(value)
        return {_coerce(k, args[0], f'{key} (key)'): _coerce(v, args[1], f'{key}.{k}') for k, v in value.items()}
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f'{key}: expected a finite number, got {value!r}')
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    raise ConfigError(f'{key}: expected {_type_name(annotation)}, got {value!r}')


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (list, List):
        return f'a list of {_type_name(typing.get_args(annotation)[0])}'
    return getattr(annotation, '__name__', str(annotation))


def build_dataclass(cls: type, values: Dict[str, Any], prefix: str = '',
                    choices: Optional[Dict[str, Sequence[Any]]] = None) -> Any:
    """An instance of the dataclass ``cls`` from ``values``; nested dataclasses from nested dicts.

    Args:
        prefix: the dotted key of ``values`` (for messages).
        choices: dotted key -> the values it may take.
    """
    if not isinstance(values, dict):
        raise ConfigError(f'{prefix or "config"}: expected a mapping, got {values!r}')
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = f' in "{prefix}"' if prefix else ''
        raise ConfigError(f'unknown config key(s){where}: {", ".join(unknown)}; valid keys: {", ".join(names)}')
    kwargs = {}
    for name, value in values.items():
        key = f'{prefix}.{name}' if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, value or {}, key, choices)
        else:
            kwargs[name] = _coerce(value, hint, key)
            allowed = (choices or {}).get(key)
            if allowed is not None and kwargs[name] not in allowed:
                raise ConfigError(f'{key}: {kwargs[name]!r} is not one of {", ".join(allowed)}')
    return cls(**kwargs)
