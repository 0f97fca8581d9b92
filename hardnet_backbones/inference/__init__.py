"""Running trained models: checkpoints back to models, image inputs in batches, sliding windows, classification."""
from .batching import batched, expand_image_paths
from .classify import Prediction, classify_images, create_classifier_model, top_classes
from .results import Detections, SegmentationResult, detections_of, segmentation_of
from .trained import TrainedModel, load_trained_model
from .windows import SEGMENT_MODES, segment_logits

__all__ = ['TrainedModel', 'load_trained_model', 'expand_image_paths', 'batched', 'segment_logits', 'SEGMENT_MODES',
           'classify_images', 'create_classifier_model', 'Prediction', 'top_classes', 'Detections', 'detections_of',
           'SegmentationResult', 'segmentation_of']
