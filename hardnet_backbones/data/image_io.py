"""Image and mask decoding: the one place where files become pixels.

Every path of the package (training, evaluation, ``detect``, ``classify``, pictures) reads images
through :func:`read_image`, so a file is decoded the same way everywhere:

- the EXIF orientation tag is applied (a phone photo stored sideways loads upright);
- 16-bit images (``I;16`` PNG/TIFF, or ``I``) are scaled from 0..65535 to 0..255, float images (``F``)
  from 0..1; grayscale, palette, CMYK and images with alpha become RGB (alpha is dropped);
- a truncated or unreadable file raises a :class:`~hardnet_backbones.errors.DataError` naming it, and so does an
  image over PIL's decompression-bomb limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``, 178,956,970 pixels by default;
  raise ``PIL.Image.MAX_IMAGE_PIXELS`` for files you trust), before its pixels are decoded.

Masks (:func:`read_mask`) are class indices: never rescaled, never rotated.
"""
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

__all__ = ['read_image', 'read_image_array', 'read_mask', 'image_size', 'IMAGE_SUFFIXES']

PathLike = Union[str, Path]
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = (5, 6, 7, 8)  # orientations that rotate by 90 or 270 degrees
_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # what PIL raises for broken files


def _require_file(path: PathLike) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f'image file not found: {path}')


def _open(path: PathLike) -> Image.Image:
    """Open and fully decode ``path`` (a truncated file fails here, not later)."""
    _require_file(path)
    try:
        image = Image.open(path)
        image.load()
        return image
    except Image.DecompressionBombError as e:
        raise DataError(_too_large(path, e)) from None
    except _UNREADABLE as e:
        raise DataError(f'{path}: cannot decode the image, the file is truncated, corrupt or not an image ({e})') from e


def _too_large(path: PathLike, error: Exception) -> str:
    return (f'{path}: {error} The limit guards against decompression bombs; if you trust the file, raise '
            f'PIL.Image.MAX_IMAGE_PIXELS, or downscale the image')


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: the pixels are still fine
        return 1


def _to_rgb(image: Image.Image, path: PathLike) -> Image.Image:
    if image.mode == 'RGB':
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f'{path}: {image.mode} image with values {values.min()}..{values.max()} outside the '
                            f'16-bit range 0..65535; convert it to 8-bit RGB')
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
    if image.mode == 'F':
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 1):
            raise DataError(f'{path}: float image with values {values.min():g}..{values.max():g}; only 0..1 '
                            f'is understood, convert it to 8-bit RGB')
        gray = np.round(values * 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
    if image.mode in ('P', 'PA'):
        image = image.convert('RGBA')  # keeps palette transparency out of the way of the colours
    return image.convert('RGB')


def read_image(path: PathLike, exif_orientation: bool = True,
               expected_size: Optional[Tuple[int, int]] = None) -> Image.Image:
    """Decode an image file to an upright 8-bit RGB PIL image.

    Args:
        path: image file.
        exif_orientation: apply the EXIF orientation tag (``data.exif_orientation`` in configs).
        expected_size: ``(width, height)`` the annotation gives; a different decoded size raises.

    Raises:
        FileNotFoundError: no such file.
        DataError: the file cannot be decoded, has an unsupported value range, or its size is not
            ``expected_size``.
    """
    with _open(path) as raw:
        orientation = _orientation(raw) if exif_orientation else 1
        upright = ImageOps.exif_transpose(raw) if orientation != 1 else raw
        image = _to_rgb(upright, path)
        if image is raw:
            image = raw.copy()
    if expected_size is not None and tuple(image.size) != tuple(expected_size):
        raise DataError(_size_mismatch(path, image.size, expected_size, orientation))
    return image


def _size_mismatch(path: PathLike, size: Tuple[int, int], expected: Tuple[int, int], orientation: int) -> str:
    message = (f'{path}: the image is {size[0]}x{size[1]} pixels but its annotation says '
               f'{expected[0]}x{expected[1]} (width x height)')
    if orientation in _SWAPS_SIDES and tuple(size[::-1]) == tuple(expected):
        message += (f'; the file carries EXIF orientation {orientation} (stored sideways) and the annotation '
                    f'fits the stored pixels: set data.exif_orientation=false if it was made on them')
    else:
        message += '; fix the annotation or the file'
    return message


def read_image_array(path: PathLike, exif_orientation: bool = True,
                     expected_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """:func:`read_image` as an ``(H, W, 3)`` uint8 array."""
    return np.asarray(read_image(path, exif_orientation, expected_size))


def image_size(path: PathLike, exif_orientation: bool = True) -> Tuple[int, int]:
    """``(width, height)`` of the upright image, read from the header only."""
    _require_file(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if exif_orientation and _orientation(image) in _SWAPS_SIDES:
                width, height = height, width
    except Image.DecompressionBombError as e:
        raise DataError(_too_large(path, e)) from None
    except _UNREADABLE as e:
        raise DataError(f'{path}: cannot read the image header, the file is corrupt or not an image ({e})') from e
    return width, height


def read_mask(path: PathLike) -> np.ndarray:
    """Decode a class-index mask (8- or 16-bit gray, palette or 1-bit) to an ``(H, W)`` int64 array.

    Raises:
        DataError: the file is unreadable or not single-channel (e.g. a colour-coded RGB mask).
    """
    with _open(path) as mask:
        if mask.mode not in ('L', 'P', '1', 'I', 'I;16', 'I;16L', 'I;16B', 'I;16N'):
            raise DataError(f'{path}: a mask must hold one class index per pixel (8/16-bit gray or palette '
                            f'PNG), got a {mask.mode} image; convert colour-coded masks to class indices')
        return np.asarray(mask).astype(np.int64)
