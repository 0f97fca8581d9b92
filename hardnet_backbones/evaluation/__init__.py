"""Detection and segmentation metrics."""
