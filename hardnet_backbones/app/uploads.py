"""Uploaded images: decoded by the package's one image reader, bounded before decoding, shrunk when huge, with
errors that name the file as the person uploaded it."""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from PIL import Image

from ..data.image_io import image_size, read_image
from ..errors import DataError

__all__ = ['Upload', 'read_upload', 'DEFAULT_MAX_SIDE', 'DEFAULT_MAX_MEGAPIXELS']

DEFAULT_MAX_SIDE = 2048  # longer side the page works at; larger images are shrunk to it, and the page says so
DEFAULT_MAX_MEGAPIXELS = 64.0  # images of more pixels are refused from their header, before decoding


@dataclass
class Upload:
    """A decoded upload.

    Attributes:
        image: upright 8-bit RGB.
        name: the file's name as uploaded.
        note: what was done to it (``'resized from 8000x6000 to 2048x1536'``), or ''.
    """
    image: Image.Image
    name: str
    note: str = ''


def _named(message: str, path: Path) -> str:
    return message.replace(str(path), path.name)  # the server's temporary path means nothing to the person


def read_upload(path: Optional[Union[str, Path]], max_side: int = DEFAULT_MAX_SIDE,
                max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Upload:
    """Decode an uploaded image file (EXIF orientation applied, 16-bit and palette images made RGB).

    Raises:
        DataError: nothing uploaded; not an image, truncated or corrupt; more than ``max_megapixels`` (a
            decompression bomb or a scan too large for a page), each in one line naming the file.
    """
    if not path:
        raise DataError('no image: upload one first (JPEG, PNG, BMP, TIFF or WebP)')
    path = Path(path)
    try:
        width, height = image_size(path)
        if width * height > max_megapixels * 1e6:
            raise DataError(f'{path.name}: {width}x{height} pixels ({width * height / 1e6:.0f} MP) is over the app\'s '
                            f'limit of {max_megapixels:g} MP (a decompression bomb, or a scan too large for the page); '
                            f'downscale it, or start the app with a larger --max-megapixels')
        image = read_image(path)
    except DataError as e:
        raise DataError(_named(str(e), path)) from None
    note = ''
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        note = f'resized from {image.width}x{image.height} to {size[0]}x{size[1]} (the app works at {max_side} px)'
        image = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
    return Upload(image, path.name, note)
