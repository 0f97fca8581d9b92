"""Pictures people would rather look at: training curves, detections on images, segmentation overlays."""
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

__all__ = ['plot_history', 'draw_detections', 'overlay_segmentation', 'color_palette', 'voc_palette',
           'CITYSCAPES_PALETTE', 'IGNORE_COLOR', 'mask_to_png']


def plot_history(history: List[Dict[str, Any]], path: Union[str, Path, BinaryIO], main_metric: str) -> None:
    """Loss curves (left) and the validation metric (right) per epoch, saved as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h['epoch'] for h in history]
    loss_keys = sorted({k for h in history for k in h if k.startswith('loss')})
    for key in loss_keys:
        ax_loss.plot(epochs, [h.get(key, np.nan) for h in history], marker='o', ms=3, label=key)
    ax_loss.set(xlabel='epoch', ylabel='training loss', title='Training loss')
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    evaluated = [h for h in history if h.get(main_metric) is not None]
    ax_metric.plot([h['epoch'] for h in evaluated], [h[main_metric] for h in evaluated], marker='o', color='C3')
    ax_metric.set(xlabel='epoch', ylabel=main_metric, title=f'Validation {main_metric}')
    ax_metric.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format='png')
    plt.close(fig)


# the trainId colours of the Cityscapes benchmark (cityscapesScripts' labels.py)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))
IGNORE_COLOR = (224, 224, 192)  # Pascal VOC's colour of its 255 ("void") pixels


def voc_palette(num_colors: int = 256) -> List[tuple]:
    """The Pascal VOC colour map: the bits of the class index spread over R, G and B."""
    colors = []
    for index in range(num_colors):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


def color_palette(class_names: Union[int, Sequence[str]]) -> List[tuple]:
    """One RGB colour per class: the standard VOC or Cityscapes palette for those class lists,
    otherwise distinct generated colours. A class named 'background' is black; every other class,
    class 0 included, gets a colour. None equals :data:`IGNORE_COLOR`."""
    from .data.segmentation import CITYSCAPES_CLASSES, VOC_SEG_CLASSES

    names = [f'class_{i}' for i in range(class_names)] if isinstance(class_names, int) else list(class_names)
    if tuple(names) == VOC_SEG_CLASSES:
        return voc_palette(len(names))
    if tuple(names) == CITYSCAPES_CLASSES:
        return list(CITYSCAPES_PALETTE)
    rng = np.random.default_rng(3)
    colors = []
    for name in names:
        color = (0, 0, 0)
        while name != 'background' and (color == IGNORE_COLOR or max(color) < 60):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
        colors.append(color)
    return colors


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
) -> Image.Image:
    """Boxes with "name score" captions on a ``(3, H, W)`` image in [0, 1] (or uint8).

    ``labels`` are 1-based (0 is the background), as torchvision detectors return them. Images
    whose short side is below ``min_side`` pixels are enlarged first so captions stay legible.
    """
    keep = scores >= score_threshold if scores is not None else torch.ones(len(boxes), dtype=torch.bool)
    boxes, labels = boxes[keep].cpu().float(), labels[keep].cpu()
    scale = max(1.0, min_side / min(image.shape[-2:]))
    if scale > 1:
        size = [round(image.shape[-2] * scale), round(image.shape[-1] * scale)]
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode='bilinear')[0]
        image = image / 255 if image.max() > 1.5 else image
        boxes = boxes * scale
    captions = [class_names[int(label) - 1] for label in labels]
    if scores is not None:
        captions = [f'{c} {s:.2f}' for c, s in zip(captions, scores[keep].tolist())]
    palette = color_palette(['background', *class_names])
    drawn = draw_bounding_boxes(
        _to_uint8(image.cpu()), boxes, labels=captions, colors=[palette[int(label)] for label in labels], width=2)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


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
