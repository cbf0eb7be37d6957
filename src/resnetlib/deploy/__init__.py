"""Deployment: batch-norm folding, the inference fast path, int8 quantization, export. Each
returns new modules, never changing the model it is given; ONNX's packages and torchao load
only when an export or quantization runs."""

from __future__ import annotations

from .export import export_onnx, export_program, export_pt2
from .fast import optimize_for_inference
from .fuse import FuseReport, fuse_bn, is_fused

# The function shadows its module's name: resnetlib.deploy.quantize(...) is the function.
from .quantize import Int8Model, QuantizeReport, calibration_batches, quantize

__all__ = [
    "FuseReport",
    "Int8Model",
    "QuantizeReport",
    "calibration_batches",
    "export_onnx",
    "export_program",
    "export_pt2",
    "fuse_bn",
    "is_fused",
    "optimize_for_inference",
    "quantize",
]
