"""CenterNet's image and box coding, as the published CenterNet-HarDNet pipeline does it.

- :func:`resize_matrix` / :func:`stretch_image`: the whole image stretched to a square, sampled like OpenCV's
  fixed-point ``warpAffine`` (bilinear, 1/32-pixel source coordinates, a zero border, 8-bit levels), as the
  published weights saw their inputs; one matrix product per axis, so it exports to ONNX with dynamic sizes.
- :func:`gaussian_radius`, :func:`encode_targets`: training targets on the output grid (a gaussian peak per object
  centre; dense gaussian-weighted size and offset targets around it).
- :func:`centernet_losses`: CornerNet's focal loss on the heatmap, masked L1 on sizes and offsets.
- :func:`decode_detections`: heatmap peaks -> the top-K boxes, scores and classes.
"""
import math
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ['resize_matrix', 'stretch_image', 'gaussian_radius', 'encode_targets', 'focal_loss', 'masked_l1',
           'centernet_losses', 'decode_detections', 'flip_merge', 'LOSS_WEIGHTS', 'MAX_OBJECTS']

LOSS_WEIGHTS = {'loss_heatmap': 1.0, 'loss_size': 0.05, 'loss_offset': 0.5}
MAX_OBJECTS = 128  # objects per image the published training draws; more are dropped (with a log line)


def _positions(axis: torch.Tensor) -> torch.Tensor:
    """``0, 1, ..., n - 1`` (float64) for a length-``n`` vector, computed from it so that an exported graph keeps
    ``n`` dynamic (``torch.arange`` of a traced size would freeze it)."""
    return torch.cumsum(torch.ones_like(axis, dtype=torch.float64), 0) - 1


def resize_matrix(source_axis: torch.Tensor, dst: int) -> torch.Tensor:
    """``(dst, src)`` bilinear interpolation weights for destination pixel ``i`` sampling source ``i * src / dst``
    (corner-aligned, as the published affine warp maps pixels), the coordinate rounded to 1/32 pixel as OpenCV's
    fixed-point warp does (OpenCV 4 and earlier); a neighbour past the last source pixel is the zero border.
    ``source_axis`` is any length-``src`` vector of the image (its row or column)."""
    columns = _positions(source_axis)
    src = columns[-1:] + 1
    position = torch.arange(dst, dtype=torch.float64, device=source_axis.device) * (src / dst)
    position = torch.floor(position * 32.0 + 0.5) / 32.0
    left = torch.floor(position)
    fraction = (position - left).to(source_axis.dtype)
    left = left[:, None]
    return ((columns[None] == left).to(source_axis.dtype) * (1 - fraction)[:, None]
            + (columns[None] == left + 1).to(source_axis.dtype) * fraction[:, None])


def stretch_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A ``(3, H, W)`` image in [0, 1] stretched to ``(3, height, width)`` as the published pipeline resizes
    (:func:`resize_matrix` on both axes), rounded to 8-bit levels as its uint8 warp is."""
    rows = resize_matrix(image[0, :, 0], height)
    cols = resize_matrix(image[0, 0, :], width)
    stretched = rows @ image @ cols.T
    return torch.floor(stretched * 255 + 0.5).clamp_(0, 255) / 255


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet's radius: the smallest of its three cases' roots, each taken as ``(b + sqrt(b^2 - 4ac)) / 2``
    as the published code does (not divided by ``2a``)."""
    cases = (
        (1.0, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)),
        (4.0, 2 * (height + width), (1 - min_overlap) * width * height),
        (4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height),
    )
    return min((b + math.sqrt(b * b - 4 * a * c)) / 2 for a, b, c in cases)


def _gaussian(radius: int, sigma: float) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(offsets[None] ** 2 + offsets[:, None] ** 2) / (2 * sigma * sigma))
    g[g < torch.finfo(torch.float64).eps * g.max()] = 0
    return g


def _window(centre: Tuple[int, int], radius: int, height: int, width: int):
    """Slices of the map and of a (2r+1)^2 patch centred at ``centre`` (x, y), clipped to the map."""
    x, y = centre
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    return ((slice(y - top, y + bottom), slice(x - left, x + right)),
            (slice(radius - top, radius + bottom), slice(radius - left, radius + right)))


def encode_targets(boxes: torch.Tensor, labels: torch.Tensor, num_heatmaps: int, height: int,
                   width: int) -> Dict[str, torch.Tensor]:
    """Training targets of one image on its ``height`` x ``width`` output grid.

    Args:
        boxes: ``(N, 4)`` xyxy boxes on the output grid, unclipped (an object is drawn when its box clipped to the
            grid keeps more than 2 cells or half its extent on each axis; the first ``MAX_OBJECTS`` count).
        labels: ``(N,)`` heatmap channels (0-based).
        num_heatmaps: classes of the heatmap.
        height, width: the output grid.

    Returns:
        ``heatmap (C, h, w)``, ``size (2, h, w)`` (box width, height), ``offset (2, h, w)`` (centre - pixel) and
        ``weight (h, w)`` (each object's gaussian weight, normalised to sum 1; the larger wins where they overlap).
    """
    heatmap = torch.zeros(num_heatmaps, height, width, dtype=torch.float64)
    size = torch.zeros(2, height, width, dtype=torch.float64)
    offset = torch.zeros(2, height, width, dtype=torch.float64)
    weight = torch.zeros(height, width, dtype=torch.float64)
    ys = torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    xs = torch.arange(width, dtype=torch.float64)[None].expand(height, width)
    for box, label in zip(boxes.double()[:MAX_OBJECTS].tolist(), labels[:MAX_OBJECTS].tolist()):
        x0, y0, x1, y1 = box
        # clipped to the grid's edges (CenterNet-HarDNet clips at the map size, not at its last cell)
        cx0, cx1 = min(max(x0, 0), width), min(max(x1, 0), width)
        cy0, cy1 = min(max(y0, 0), height), min(max(y1, 0), height)
        h, w = cy1 - cy0, cx1 - cx0
        h_orig, w_orig = y1 - y0, x1 - x0
        if h <= 0 or w <= 0 or not ((h > 2 or h / (h_orig + 0.01) > 0.5) and (w > 2 or w / (w_orig + 0.01) > 0.5)):
            continue
        radius = max(0, int(gaussian_radius(math.ceil(h), math.ceil(w))))
        cx, cy = (cx0 + cx1) / 2, (cy0 + cy1) / 2
        centre = (int(cx), int(cy))
        (map_rows, map_cols), (patch_rows, patch_cols) = _window(centre, radius, height, width)
        peak = _gaussian(radius, (2 * radius + 1) / 6)[patch_rows, patch_cols]
        drawn = heatmap[label, map_rows, map_cols]
        drawn.copy_(torch.maximum(drawn, peak))
        dense = _gaussian(radius, (2 * radius + 1) / 24)
        dense = (dense / dense.sum())[patch_rows, patch_cols]
        region = weight[map_rows, map_cols]
        wins = dense > region
        region[wins] = dense[wins]
        size[0, map_rows, map_cols][wins] = w
        size[1, map_rows, map_cols][wins] = h
        offset[0, map_rows, map_cols][wins] = (cx - xs[map_rows, map_cols])[wins]
        offset[1, map_rows, map_cols][wins] = (cy - ys[map_rows, map_cols])[wins]
    return dict(heatmap=heatmap.float(), size=size.float(), offset=offset.float(), weight=weight.float())


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CornerNet's focal loss (alpha 2, beta 4) on ``sigmoid(logits)`` clamped to [1e-4, 1 - 1e-4], summed and
    divided by the number of peaks (``target == 1``) in the batch; the negative term alone where there is none."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    positive_loss = (torch.log(p) * (1 - p) ** 2 * positive).sum()
    negative_loss = (torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - positive)).sum()
    peaks = positive.sum()
    if peaks == 0:
        return -negative_loss
    return -(positive_loss + negative_loss) / peaks


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(M |pred - target|) / (sum(M) + 1e-4)`` with the ``(B, h, w)`` weight ``M`` on both channels."""
    mask = weight[:, None].expand_as(prediction)
    return (mask * (prediction.float() - target).abs()).sum() / (mask.sum() + 1e-4)


def centernet_losses(heatmap_logits: torch.Tensor, box_maps: torch.Tensor,
                     targets: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The published training loss, its three weighted parts (their sum is the loss): heatmap focal loss (x1),
    size L1 (x0.05) and offset L1 (x0.5)."""
    stack = {key: torch.stack([t[key] for t in targets]).to(heatmap_logits.device)
             for key in ('heatmap', 'size', 'offset', 'weight')}
    parts = {
        'loss_heatmap': focal_loss(heatmap_logits, stack['heatmap']),
        'loss_size': masked_l1(box_maps[:, :2], stack['size'], stack['weight']),
        'loss_offset': masked_l1(box_maps[:, 2:], stack['offset'], stack['weight']),
    }
    return {key: LOSS_WEIGHTS[key] * value for key, value in parts.items()}


def decode_detections(heatmap: torch.Tensor, box_maps: torch.Tensor, top_k: int
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-``top_k`` peaks of a batch of heatmap probabilities ``(B, C, h, w)``: values equal to their 3x3
    neighbourhood's maximum, the best ``top_k`` of each class, then the best ``top_k`` of those.

    Returns:
        boxes ``(B, K, 4)`` xyxy on the output grid (sizes below 0 clamped to 0), scores ``(B, K)``, classes
        ``(B, K)`` (0-based).
    """
    batch, classes, height, width = heatmap.shape
    peaks = heatmap * (F.max_pool2d(heatmap, 3, stride=1, padding=1) == heatmap).to(heatmap.dtype)
    per_class = min(top_k, height * width)
    class_scores, class_index = peaks.reshape(batch, classes, -1).topk(per_class)
    scores, order = class_scores.reshape(batch, -1).topk(min(top_k, classes * per_class))
    labels = torch.div(order, per_class, rounding_mode='floor')
    index = class_index.reshape(batch, -1).gather(1, order)
    ys = torch.div(index, width, rounding_mode='floor').to(box_maps.dtype)
    xs = (index % width).to(box_maps.dtype)
    values = box_maps.reshape(batch, 4, -1).gather(2, index[:, None].expand(batch, 4, index.shape[1]))
    # a negative size (which the published decoder turns into an inverted box) becomes an empty box: xyxy stays
    # ordered, and either matches no object
    w, h = values[:, 0].clamp(min=0), values[:, 1].clamp(min=0)
    cx, cy = xs + values[:, 2], ys + values[:, 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return boxes, scores, labels


def flip_merge(heatmap: torch.Tensor, box_maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Merge a batch whose second half is the first half mirrored: heatmaps and sizes averaged (the mirror's
    flipped back), offset x as ``(o + 1 - o_mirror) / 2``, offset y as the mean."""
    half = heatmap.shape[0] // 2
    mirrored_heat = heatmap[half:].flip(-1)
    mirrored_box = box_maps[half:].flip(-1)
    merged_heat = (heatmap[:half] + mirrored_heat) / 2
    size = (box_maps[:half, :2] + mirrored_box[:, :2]) / 2
    dx = (box_maps[:half, 2:3] + 1 - mirrored_box[:, 2:3]) / 2
    dy = (box_maps[:half, 3:4] + mirrored_box[:, 3:4]) / 2
    return merged_heat, torch.cat([size, dx, dy], 1)
