"""Deployment: fusion, export (ONNX, TorchScript), int8 quantization and the onnxruntime wrapper."""
from .export import (
    KINDS, export_onnx, export_torchscript, onnx_input_name, validate_onnx, validate_torchscript, with_score_threshold,
    write_onnx_metadata)
from .fuse import fuse_for_inference
from .optimize import optimize_for_inference
from .quantize import calibration_images, quantize_to_onnx, quantized_node_count
from .runtime import OnnxRuntimeModel

__all__ = ['optimize_for_inference', 'fuse_for_inference', 'export_onnx', 'export_torchscript', 'validate_onnx',
           'validate_torchscript', 'with_score_threshold', 'write_onnx_metadata', 'onnx_input_name', 'KINDS',
           'quantize_to_onnx', 'quantized_node_count', 'calibration_images', 'OnnxRuntimeModel']
