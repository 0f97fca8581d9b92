"""Pictures of predictions: detections drawn on images, segmentation masks and overlays."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from ..data.palettes import IGNORE_COLOR, color_palette

__all__ = ['draw_detections', 'overlay_segmentation', 'mask_to_png', 'draw_classification']

MAX_PICTURE_SIDE = 4096


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def draw_detections(
        image: torch.Tensor,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        scores: Optional[torch.Tensor],
        class_names: Sequence[str],
        score_threshold: float = 0.3,
        min_side: int = 384,
        masks: Optional[torch.Tensor] = None,
) -> Image.Image:
    """Boxes with "name score" captions on a ``(3, H, W)`` image in [0, 1] (or uint8), and the objects' masks
    (``(N, 1, H, W)`` probabilities as Mask R-CNN gives them, or ``(N, H, W)``; shown where above 0.5) tinted in
    their class colour.

    ``labels`` are 1-based (0 is the background), as torchvision detectors return them. Images
    whose short side is below ``min_side`` pixels are enlarged first so captions stay legible. When no detection
    reaches ``score_threshold`` the picture says so (with the best score), so that it is never taken for a drawing
    failure.
    """
    keep = scores >= score_threshold if scores is not None else torch.ones(len(boxes), dtype=torch.bool)
    best = float(scores.max()) if scores is not None and len(scores) else None
    boxes, labels = boxes[keep].cpu().float(), labels[keep].cpu()
    if masks is not None:
        masks = masks[keep].cpu().float().reshape(-1, *image.shape[-2:])
    # enlarge small images so captions stay legible, but never past MAX_PICTURE_SIDE (a 20000x40 panorama)
    scale = min(max(1.0, min_side / min(image.shape[-2:])), max(1.0, MAX_PICTURE_SIDE / max(image.shape[-2:])))
    if scale > 1:
        size = [round(image.shape[-2] * scale), round(image.shape[-1] * scale)]
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode='bilinear')[0]
        image = image / 255 if image.max() > 1.5 else image
        boxes = boxes * scale
        if masks is not None and len(masks):
            masks = torch.nn.functional.interpolate(masks[None], size=size, mode='bilinear')[0]
    captions = [class_names[int(label) - 1] for label in labels]
    if scores is not None:
        captions = [f'{c} {s:.2f}' for c, s in zip(captions, scores[keep].tolist())]
    palette = color_palette(['background', *class_names])
    colors = [palette[int(label)] for label in labels]
    drawn = _to_uint8(image.cpu())
    if masks is not None and len(masks):
        drawn = draw_segmentation_masks(drawn, masks > 0.5, alpha=0.45, colors=colors)
    if len(boxes):
        drawn = draw_bounding_boxes(drawn, boxes, colors=colors, width=2)
    picture = Image.fromarray(drawn.permute(1, 2, 0).numpy())
    _draw_captions(picture, boxes.tolist(), captions, colors)
    if not len(boxes):
        _draw_notice(picture, f'no detection scores {score_threshold:.2f} or more'
                     + (f' (best: {best:.2f})' if best is not None else ' (none at all)'))
    return picture


def draw_classification(image: Image.Image, true_name: str, predicted: Sequence[Tuple[str, float]],
                        min_side: int = 256) -> Image.Image:
    """The image (enlarged to ``min_side`` if smaller) above a caption band: the true class, then the predicted
    classes with their probabilities, the first green when right and red when wrong."""
    scale = max(1.0, min_side / min(image.size))
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    font = ImageFont.load_default()
    lines = [f'true: {true_name}'] + [f'{name} {probability:.2f}' for name, probability in predicted]
    band = 14 * len(lines) + 6
    picture = Image.new('RGB', (image.width, image.height + band), (255, 255, 255))
    picture.paste(image.convert('RGB'), (0, 0))
    draw = ImageDraw.Draw(picture)
    for i, line in enumerate(lines):
        color = (0, 0, 0)
        if i == 1:
            color = (0, 140, 0) if predicted[0][0] == true_name else (200, 0, 0)
        draw.text((4, image.height + 3 + 14 * i), line, fill=color, font=font)
    return picture


def _draw_notice(picture: Image.Image, text: str) -> None:
    """``text`` in white on a black band across the top-left corner."""
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.rectangle((0, 0, right - left + 8, bottom - top + 8), fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255), font=font)


Rect = Tuple[float, float, float, float]


def place_captions(boxes: Sequence[Sequence[float]], sizes: Sequence[Tuple[int, int]], width: int,
                   height: int) -> List[Rect]:
    """Where each caption goes (``(x1, y1, x2, y2)``, ``sizes`` are ``(w, h)``): above its box's top-left
    corner, inside the picture, moved down a line at a time (up when the picture ends) past captions already
    placed, so that no two overlap (boxes sharing a top edge are common: a row of cars, of people)."""
    placed: List[Rect] = []
    for (x1, y1, _, _), (w, h) in zip(boxes, sizes):
        x = min(max(0.0, x1), max(0.0, width - w))
        y = min(max(0.0, y1 - h), max(0.0, height - h))
        step = h + 1
        for _ in range(4 * len(placed) + 1):
            rect = (x, y, x + w, y + h)
            if not any(_overlap(rect, other) for other in placed):
                break
            y = y + step if y + step + h <= height else y - step
        placed.append((x, y, x + w, y + h))
    return placed


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_captions(picture: Image.Image, boxes: Sequence[Sequence[float]], captions: Sequence[str],
                   colors: Sequence[Tuple[int, int, int]]) -> None:
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    sizes = []
    for caption in captions:
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        sizes.append((right - left + 4, bottom - top + 4))
    for rect, caption, color in zip(place_captions(boxes, sizes, *picture.size), captions, colors):
        draw.rectangle(rect, fill=tuple(color))
        text = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        draw.text((rect[0] + 2, rect[1] + 1), caption, fill=text, font=font)


def mask_to_png(mask: Union[np.ndarray, torch.Tensor], palette: Sequence[tuple]) -> Image.Image:
    """A class-index mask as a palette PNG image: pixel values are the classes, the colours ``palette``'s
    (:data:`IGNORE_COLOR` at 255), so viewers show colours and ``np.asarray(Image.open(f))`` gives the classes."""
    mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if mask.min() < 0 or mask.max() > 255:
        raise ValueError(f'a palette PNG holds classes 0..255, got {mask.min()}..{mask.max()}')
    image = Image.fromarray(mask.astype(np.uint8), mode='P')
    colors = list(palette)[:255] + [(0, 0, 0)] * (255 - min(len(palette), 255)) + [IGNORE_COLOR]
    image.putpalette([c for color in colors for c in color])
    return image


def overlay_segmentation(
        image: Union[np.ndarray, torch.Tensor],
        mask: Union[np.ndarray, torch.Tensor],
        class_names: Union[int, Sequence[str]],
        alpha: float = 0.5,
        ignore_index: int = 255,
) -> Image.Image:
    """Blend a class-index mask (``(H, W)``) in palette colours over an RGB image (HWC uint8 or CHW [0, 1]).

    Every class is coloured (class 0 too) except one named 'background'; ``ignore_index`` pixels get
    :data:`IGNORE_COLOR`. ``class_names`` may be a class count.
    """
    if isinstance(image, torch.Tensor):
        image = _to_uint8(image.cpu()).permute(1, 2, 0).numpy()
    mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    palette = color_palette(class_names)
    names = [f'class_{i}' for i in range(class_names)] if isinstance(class_names, int) else list(class_names)
    colors = np.array(palette + [IGNORE_COLOR], dtype=np.float32)
    ignored = mask == ignore_index
    index = np.where(ignored, len(palette), np.clip(mask, 0, len(palette) - 1))
    painted = ignored | ~np.isin(mask, [i for i, n in enumerate(names) if n == 'background'])
    blend = np.where(painted[..., None], (1 - alpha) * image + alpha * colors[index], image)
    return Image.fromarray(blend.astype(np.uint8))
