"""CenterNet-HarDNet's training augmentation: a random scale, aspect and shift into the square canvas the network
sees, a horizontal flip, and CornerNet's colour jitter and PCA lighting.

Geometry. The image is scaled so that its short side is ``s`` pixels, ``s`` drawn from ``size * {3, 4, ..., 14} / 8``
(192, 256, ..., 896 for the published 512), its width scaled again by ``a ~ U(0.4, 1.6)`` (the aspect jitter), then
shifted by a uniform offset on each axis: anywhere inside the canvas when the image is smaller, anywhere that keeps
the canvas covered when it is larger. Image and boxes go through the same matrix (``cv2.warpAffine``, bilinear,
zeros outside the image), as the published pipeline does. Boxes are returned unclipped, so that CenterNet's target
rule (keep an object when enough of it is visible, judged against its whole box) sees the whole box; boxes with
nothing inside the canvas are dropped.

Colour. On the image scaled to [0, 1], in random order, brightness, contrast (towards the mean grey) and saturation
(towards the pixel's grey), each by ``1 + U(-0.4, 0.4)``, the greys taken once from the image before them; then
AlexNet's PCA lighting: the ImageNet eigenvectors times the eigenvalues times ``N(0, 0.1)`` weights, added to every
pixel. Values are not clipped, as published; the image is returned as float32 RGB in that scale.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import cv2
import numpy as np

__all__ = ['CenterNetTrainTransform', 'CenterNetAugmentParams', 'IMAGENET_EIGVAL', 'IMAGENET_EIGVEC_RGB']

SHORT_SIDE_EIGHTHS = tuple(range(3, 15))  # short side = size * k / 8: 192 .. 896 in steps of 64 at 512
ASPECT_RANGE = (0.4, 1.6)
COLOR_VARIANCE = 0.4
LIGHTING_STD = 0.1
# PCA of ImageNet's RGB pixels (values in [0, 1]): eigenvalues and, in columns, eigenvectors; rows in R, G, B order
IMAGENET_EIGVAL = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
IMAGENET_EIGVEC_RGB = np.array([[-0.56089297, 0.71832671, 0.41158938],
                                [-0.5832747, 0.00994535, -0.81221408],
                                [-0.58752847, -0.69563484, 0.41340352]], dtype=np.float32)
COLOR_STEPS = ('brightness', 'contrast', 'saturation')


@dataclass
class CenterNetAugmentParams:
    """One draw of the augmentation: canvas pixel = image pixel * scale + shift, per axis; then the flip, then the
    colour steps in ``color_order`` (None: no colour augmentation) and the lighting weights."""
    scale_x: float
    scale_y: float
    shift_x: float
    shift_y: float
    flip: bool
    color_order: Optional[List[str]]
    color_factors: Dict[str, float]
    lighting: np.ndarray  # (3,) weights of the eigenvectors, before the eigenvalues


class CenterNetTrainTransform:
    """The published CenterNet-HarDNet training augmentation into a ``size`` x ``size`` canvas.

    Call as ``t(image=HWC uint8 RGB, bboxes=(N, 4) xyxy pixels, labels=(N,))``: returns ``image`` (float32 RGB,
    ``size`` x ``size``, [0, 1] before the colour jitter), ``bboxes`` (canvas pixels, unclipped) and ``labels``.
    Seeded per sample by the datasets through :meth:`set_random_seed`.

    Args:
        size: the canvas side (the model's ``size``).
        hflip_p: probability of the horizontal flip.
        color_p: probability of the colour jitter and lighting (1 in the published recipe).
        scale_shift: the random scale, aspect and shift; off, the image is stretched to the canvas (as at test time).
    """

    def __init__(self, size: int, hflip_p: float = 0.5, color_p: float = 1.0, scale_shift: bool = True):
        if size < 1:
            raise ValueError(f'size must be at least 1, got {size}')
        self.size = size
        self.hflip_p = hflip_p
        self.color_p = color_p
        self.scale_shift = scale_shift
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def draw(self, height: int, width: int) -> CenterNetAugmentParams:
        """Random parameters for an image of ``height`` x ``width`` pixels."""
        rng, size = self.rng, self.size
        if self.scale_shift:
            scale = size * float(rng.choice(SHORT_SIDE_EIGHTHS)) / 8 / min(height, width)
            scale_x, scale_y = scale * float(rng.uniform(*ASPECT_RANGE)), scale
            shift_x, shift_y = (float(rng.uniform(min(0.0, size - extent), max(0.0, size - extent)))
                                for extent in (width * scale_x, height * scale_y))
        else:
            scale_x, scale_y, shift_x, shift_y = size / width, size / height, 0.0, 0.0
        flip = bool(rng.random() < self.hflip_p)
        color_order, factors, lighting = None, {}, np.zeros(3, dtype=np.float32)
        if rng.random() < self.color_p:
            color_order = [COLOR_STEPS[i] for i in rng.permutation(len(COLOR_STEPS))]
            factors = {name: float(1 + rng.uniform(-COLOR_VARIANCE, COLOR_VARIANCE)) for name in COLOR_STEPS}
            lighting = rng.normal(scale=LIGHTING_STD, size=3).astype(np.float32)
        return CenterNetAugmentParams(scale_x, scale_y, shift_x, shift_y, flip, color_order, factors, lighting)

    def apply(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
              params: CenterNetAugmentParams) -> Dict[str, Any]:
        """The augmentation with the given parameters (see the module's docstring)."""
        size = self.size
        matrix = _affine_matrix(params)
        canvas = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(0, 0, 0))
        boxes = _warp_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), matrix)
        if params.flip:  # the canvas mirrored: pixel column j -> size - 1 - j, box edge x -> size - x
            canvas = canvas[:, ::-1]
            boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
        canvas = canvas.astype(np.float32) / 255
        if params.color_order is not None:
            canvas = _color_jitter(canvas, params)
        visible = (np.minimum(boxes[:, 2:], size) - np.maximum(boxes[:, :2], 0) > 0).all(1)
        return dict(image=canvas, bboxes=boxes[visible].astype(np.float32), labels=np.asarray(labels)[visible])

    def __call__(self, *, image: np.ndarray, bboxes: Any, labels: Any, **extra: Any) -> Dict[str, Any]:
        if extra.get('masks') is not None:
            raise ValueError('the CenterNet augmentation moves boxes only; for instance masks use '
                             'data.augmentation=ssd')
        return self.apply(image, bboxes, labels, self.draw(*image.shape[:2]))


def _affine_matrix(params: CenterNetAugmentParams) -> np.ndarray:
    """The 2 x 3 matrix as the published pipeline builds it, from three float32 point pairs (so that OpenCV's
    fixed-point warp rounds the same pixels the same way)."""
    x, y, sx, sy = params.shift_x, params.shift_y, params.scale_x, params.scale_y
    src = np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)
    return cv2.getAffineTransform(src, np.array([[x, y], [x + sx, y], [x, y + sy]], dtype=np.float32))


def _warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """xyxy boxes through an axis-aligned affine ``matrix`` (scale and shift per axis; its other terms are 0)."""
    xs = boxes[:, 0::2] * matrix[0, 0] + matrix[0, 2]
    ys = boxes[:, 1::2] * matrix[1, 1] + matrix[1, 2]
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def _color_jitter(image: np.ndarray, params: CenterNetAugmentParams) -> np.ndarray:
    """CornerNet's colour steps in the drawn order, then the PCA lighting; on float RGB in [0, 1], unclipped."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    grey_mean = float(grey.mean())
    for name in params.color_order:
        factor = params.color_factors[name]
        if name == 'brightness':
            image = image * factor
        elif name == 'contrast':
            image = factor * image + (1 - factor) * grey_mean
        else:
            image = factor * image + (1 - factor) * grey
    return (image + IMAGENET_EIGVEC_RGB @ (IMAGENET_EIGVAL * params.lighting)).astype(np.float32)
