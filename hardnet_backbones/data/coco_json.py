"""COCO json files read and checked: the three lists, the fields' types, unique ids.

Every problem is a ``DataError`` naming the file and the entry: a wrong type would otherwise end in a
traceback deep in pycocotools, and a repeated id would silently merge two entries (an image dropped, its
boxes scored against another image).
"""
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List

from ..errors import DataError

__all__ = ['read_coco_json']


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_area(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _is_flag(value: Any) -> bool:
    return value in (0, 1)


_FIELD_NEEDS = {_is_id: 'an integer or string id', _is_text: 'a non-empty string', _is_size: 'a positive integer',
                _is_area: 'a number >= 0', _is_flag: '0 or 1'}


def _check_fields(path: Path, where: str, item: Dict[str, Any], checks: Dict[str, Callable[[Any], bool]]) -> None:
    """Each present field of a COCO entry has the type COCO gives it, or one line naming the field."""
    for name, check in checks.items():
        if name in item and not check(item[name]):
            raise DataError(f'{path}: {where} has {name}={item[name]!r}; it must be {_FIELD_NEEDS[check]}')


def _check_unique(path: Path, what: str, ids: List[Any]) -> None:
    """Repeated ids would silently merge entries (an image's boxes scored against another image)."""
    seen, repeated = set(), []
    for item_id in ids:
        if item_id in seen and item_id not in repeated:
            repeated.append(item_id)
        seen.add(item_id)
    if repeated:
        more = f' ... ({len(repeated)} in all)' if len(repeated) > 5 else ''
        shown = ', '.join(repr(i) for i in repeated[:5]) + more
        raise DataError(f'{path}: {what} ids repeat ({shown}); every {what} needs its own id')


def read_coco_json(path: Path) -> Dict[str, Any]:
    """The parsed COCO json at ``path``, checked (see the module docstring).

    Raises:
        FileNotFoundError: no such file. DataError: not JSON, or not a valid COCO file.
    """
    if not path.is_file():
        raise FileNotFoundError(f'COCO annotation file not found: {path}')
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f'{path} is not valid JSON: {e}') from e
    if not isinstance(data, dict):
        raise DataError(f'{path}: expected a JSON object with images/annotations/categories')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            raise DataError(f'{path}: missing or malformed "{key}" list (COCO format)')
    for i, img in enumerate(data['images']):
        if not isinstance(img, dict) or not {'id', 'file_name', 'width', 'height'} <= set(img):
            raise DataError(f'{path}: images[{i}] = {str(img)[:80]} needs id, file_name, width and height')
        _check_fields(path, f'images[{i}]', img, dict(id=_is_id, file_name=_is_text, width=_is_size,
                                                      height=_is_size))
    for i, cat in enumerate(data['categories']):
        if not isinstance(cat, dict) or not {'id', 'name'} <= set(cat):
            raise DataError(f'{path}: categories[{i}] = {str(cat)[:80]} needs an id and a name')
        _check_fields(path, f'categories[{i}]', cat, dict(id=_is_id, name=_is_text))
    for i, ann in enumerate(data['annotations']):
        if not isinstance(ann, dict) or 'id' not in ann:
            raise DataError(f'{path}: annotations[{i}] has no "id" (COCO evaluation needs one per annotation)')
        _check_fields(path, f'annotation {ann["id"]!r}', ann, dict(
            id=_is_id, image_id=_is_id, category_id=_is_id, area=_is_area, iscrowd=_is_flag))
    for what, items in (('category', data['categories']), ('image', data['images']),
                        ('annotation', data['annotations'])):
        _check_unique(path, what, [item['id'] for item in items])
    return data
