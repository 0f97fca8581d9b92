"""albumentations pipelines for detection (boxes) and segmentation (masks).

Detection pipelines end with uint8 images resized to the model size; the detector itself
normalises with the backbone's mean/std (torchvision's detection contract: images in [0, 1]).
Segmentation pipelines end normalised (the model takes normalised tensors).
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.transforms_interface import BaseTransformInitSchema

from ..models.layers import MIN_INPUT_SIZE

__all__ = ['ZoomOut', 'SSDRandomCrop', 'detection_train_transform', 'segmentation_train_transform',
           'segmentation_eval_transform']

IMAGENET_MEAN_UINT8 = (124, 116, 104)


class ZoomOut(A.Pad):
    """SSD's "expand": place the image at a random spot of a canvas up to ``max_scale`` times larger."""

    class InitSchema(BaseTransformInitSchema):
        max_scale: float
        fill: Any
        fill_mask: Any

    def __init__(self, max_scale: float = 4.0, fill: Any = IMAGENET_MEAN_UINT8, fill_mask: Any = 255,
                 p: float = 0.5):
        super().__init__(padding=0, fill=fill, fill_mask=fill_mask, border_mode=cv2.BORDER_CONSTANT, p=p)
        if max_scale < 1:
            raise ValueError(f'max_scale must be >= 1, got {max_scale}')
        self.max_scale = max_scale

    def get_params_dependent_on_data(self, params: Dict[str, Any], data: Dict[str, Any]) -> Dict[str, int]:
        height, width = params['shape'][:2]
        ratio = self.py_random.uniform(1.0, self.max_scale)
        pad_h, pad_w = int(height * ratio) - height, int(width * ratio) - width
        top, left = self.py_random.randint(0, pad_h), self.py_random.randint(0, pad_w)
        return dict(pad_top=top, pad_bottom=pad_h - top, pad_left=left, pad_right=pad_w - left)

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ('max_scale', 'fill', 'fill_mask')


class SSDRandomCrop(BaseCrop):
    """SSD's IoU-constrained random crop.

    Picks a minimum IoU from ``min_ious`` (``None`` keeps the whole image), then samples crops of
    ``scale`` x the image side with aspect ratio in ``aspect_ratio`` until one overlaps some box by
    at least that IoU. Boxes whose centre falls outside the crop are dropped, the rest are clipped.
    """

    class InitSchema(BaseTransformInitSchema):
        min_ious: Sequence[Optional[float]]
        scale: Tuple[float, float]
        aspect_ratio: Tuple[float, float]
        trials: int

    def __init__(
            self,
            min_ious: Sequence[Optional[float]] = (None, 0.1, 0.3, 0.5, 0.7, 0.9),
            scale: Tuple[float, float] = (0.3, 1.0),
            aspect_ratio: Tuple[float, float] = (0.5, 2.0),
            trials: int = 50,
            p: float = 1.0,
    ):
        super().__init__(p=p)
        self.min_ious = tuple(min_ious)
        self.scale = scale
        self.aspect_ratio = aspect_ratio
        self.trials = trials

    def get_params_dependent_on_data(self, params: Dict[str, Any], data: Dict[str, Any]) -> Dict[str, Any]:
        height, width = params['shape'][:2]
        whole = (0, 0, width, height)
        boxes = _to_pixels(np.asarray(data.get('bboxes', np.zeros((0, 4)))), width, height)
        min_iou = self.py_random.choice(self.min_ious)
        if min_iou is None or len(boxes) == 0:
            return dict(crop_coords=whole)
        for _ in range(self.trials):
            w = int(width * self.py_random.uniform(*self.scale))
            h = int(height * self.py_random.uniform(*self.scale))
            if w < 1 or h < 1 or not self.aspect_ratio[0] <= h / w <= self.aspect_ratio[1]:
                continue
            left = self.py_random.randint(0, width - w)
            top = self.py_random.randint(0, height - h)
            crop = np.array([left, top, left + w, top + h], dtype=np.float64)
            if not _centres_inside(boxes, crop).any():
                continue
            if _iou_with(boxes, crop).max() >= min_iou:
                return dict(crop_coords=tuple(int(v) for v in crop))
        return dict(crop_coords=whole)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: Tuple[int, int, int, int], **params: Any) -> np.ndarray:
        height, width = params['shape'][:2]
        pixel = _to_pixels(bboxes, width, height)
        keep = _centres_inside(pixel, np.asarray(crop_coords, dtype=np.float64))
        return super().apply_to_bboxes(bboxes[keep], crop_coords, **params)

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ('min_ious', 'scale', 'aspect_ratio', 'trials')


def _to_pixels(normalized_boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    return normalized_boxes[:, :4].astype(np.float64) * np.array([width, height, width, height], dtype=np.float64)


def _centres_inside(boxes: np.ndarray, crop: np.ndarray) -> np.ndarray:
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > crop[0]) & (cx < crop[2]) & (cy > crop[1]) & (cy < crop[3])


def _iou_with(boxes: np.ndarray, crop: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, :2], crop[:2])
    rb = np.minimum(boxes[:, 2:], crop[2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    crop_area = (crop[2:] - crop[:2]).prod()
    return inter / (area + crop_area - inter)


def detection_train_transform(
        size: Optional[int],
        photometric_p: float = 0.5,
        zoom_out_max: float = 4.0,
        zoom_out_p: float = 0.5,
        iou_crop: bool = True,
        hflip_p: float = 0.5,
        min_box_size: float = 1.0,
) -> A.Compose:
    """SSD training augmentation: photometric distortion, zoom-out, IoU crop, flip, resize to ``size`` x ``size``
    (None: no resize, for detectors that resize their images themselves, as the FPN detectors do).

    Call as ``t(image=HWC uint8, bboxes=(N, 4) xyxy pixels, labels=(N,))``, plus ``masks=(N, H, W)`` instance
    masks for instance segmentation (moved with the image, zero where the canvas is padded); boxes smaller than
    ``min_box_size`` pixels after the transform are dropped together with their labels (not their masks: the
    caller picks those by the kept labels, see ``hardnet_backbones.data.detection``).
    """
    steps = [
        A.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05, p=photometric_p),
        ZoomOut(max_scale=zoom_out_max, fill_mask=0, p=zoom_out_p) if zoom_out_max > 1 else None,
        SSDRandomCrop() if iou_crop else None,
        A.HorizontalFlip(p=hflip_p),
        A.Resize(size, size, interpolation=cv2.INTER_LINEAR) if size is not None else None,
    ]
    return A.Compose(
        [s for s in steps if s is not None],
        bbox_params=A.BboxParams(format='pascal_voc', label_fields=['labels'], min_width=min_box_size,
                                 min_height=min_box_size, clip=True),
    )


def segmentation_train_transform(
        crop_size: Tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        scale: Tuple[float, float] = (0.5, 2.0),
        ignore_index: int = 255,
        hflip_p: float = 0.5,
        color_jitter_p: float = 0.5,
) -> A.Compose:
    """Random scale, pad (image with the mean, mask with ``ignore_index``), random crop, flip, colour jitter, normalise.

    Call as ``t(image=HWC uint8, mask=HW int)``.
    """
    height, width = crop_size
    fill = tuple(int(round(m * 255)) for m in mean)
    return A.Compose([
        A.RandomScale(scale_limit=(scale[0] - 1, scale[1] - 1), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(height, width, border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=ignore_index),
        A.RandomCrop(height, width),
        A.HorizontalFlip(p=hflip_p),
        A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=color_jitter_p),
        A.Normalize(mean=mean, std=std),
    ])


def segmentation_eval_transform(mean: Sequence[float], std: Sequence[float], ignore_index: int = 255,
                                min_size: int = MIN_INPUT_SIZE) -> A.Compose:
    """Normalisation only: evaluation runs at the full image size. Images under ``min_size`` pixels a side (the
    least the segmenters take) are padded at the bottom and right, the mask with ``ignore_index``, so the
    metrics count their own pixels only."""
    fill = tuple(int(round(m * 255)) for m in mean)
    return A.Compose([
        A.PadIfNeeded(min_size, min_size, position='top_left', border_mode=cv2.BORDER_CONSTANT, fill=fill,
                      fill_mask=ignore_index),
        A.Normalize(mean=mean, std=std),
    ])
