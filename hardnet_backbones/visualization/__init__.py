"""Pictures people would rather look at: detections, segmentation overlays, training curves."""
from ..data.palettes import CITYSCAPES_PALETTE, IGNORE_COLOR, color_palette, voc_palette
from .draw import draw_detections, mask_to_png, overlay_segmentation
from .plots import plot_history

__all__ = ['draw_detections', 'mask_to_png', 'overlay_segmentation', 'plot_history', 'color_palette', 'voc_palette',
           'CITYSCAPES_PALETTE', 'IGNORE_COLOR']
