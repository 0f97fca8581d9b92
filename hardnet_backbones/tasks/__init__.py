"""The built-in tasks, ``detection``, ``segmentation`` and ``classification``; importing the package registers them
with the engine."""
from .builtin import BuiltInTask, build_model_from_config, check_model_config, data_roots, detection_input_size
from .classification import ClassificationTask
from .detection import DetectionTask
from .segmentation import SegmentationTask

__all__ = ['BuiltInTask', 'ClassificationTask', 'DetectionTask', 'SegmentationTask', 'build_model_from_config',
           'check_model_config', 'data_roots', 'detection_input_size']
