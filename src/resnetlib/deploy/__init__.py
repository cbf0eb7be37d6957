"""Deployment: batch-norm folding, the inference fast path, int8 quantization, export.

Everything here returns new modules and never changes the model it is given. Only the
light parts load with ``import resnetlib``; the exporters (:mod:`resnetlib.deploy.export`:
``export_program``, ``export_pt2``, ``export_onnx``) load on first
use, and ONNX's packages and torchao (int8 quantization) only when an ONNX export or a
quantization runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from .fast import optimize_for_inference
from .fuse import FuseReport, fuse_bn, is_fused

# The function shadows its module's name here, so that resnetlib.deploy.quantize(...) is
# the function; the module (torch only, torchao on the first call) loads light.
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

_LAZY = {"export_onnx", "export_program", "export_pt2"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".export", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
