"""Pictures people would rather look at: training curves, detections on images, segmentation overlays."""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

__all__ = ['plot_history', 'draw_detections', 'overlay_segmentation', 'color_palette']


def plot_history(history: List[Dict[str, float]], path: Union[str, Path], main_metric: str) -> None:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def color_palette(num_classes: int) -> List[tuple]:
    """Distinct RGB colours; class 0 (background) is black."""
    rng = np.random.default_rng(3)
    colors = [(0, 0, 0)] + [tuple(int(c) for c in rng.integers(40, 256, 3)) for _ in range(num_classes - 1)]
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
    palette = color_palette(len(class_names) + 1)
    drawn = draw_bounding_boxes(
        _to_uint8(image.cpu()), boxes, labels=captions, colors=[palette[int(label)] for label in labels], width=2)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


def overlay_segmentation(
        image: Union[np.ndarray, torch.Tensor],
        mask: Union[np.ndarray, torch.Tensor],
        num_classes: int,
        alpha: float = 0.5,
        ignore_index: int = 255,
) -> Image.Image:
    """Blend a class-index mask (``(H, W)``) in palette colours over an RGB image (HWC uint8 or CHW [0, 1])."""
    if isinstance(image, torch.Tensor):
        image = _to_uint8(image.cpu()).permute(1, 2, 0).numpy()
    mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    palette = np.array(color_palette(num_classes) + [(255, 255, 255)], dtype=np.float32)
    index = np.where(mask == ignore_index, num_classes, np.clip(mask, 0, num_classes - 1))
    colored = palette[index]
    blend = np.where((mask > 0)[..., None], (1 - alpha) * image + alpha * colored, image)
    return Image.fromarray(blend.astype(np.uint8))
