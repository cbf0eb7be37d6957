"""Deployment: batch-norm folding, the inference fast path, export.

Everything here returns new modules and never changes the model it is given. Only the
light parts load with ``import resnetlib``; the exporters (:mod:`resnetlib.deploy.export`:
``export_program``, ``export_pt2``, ``export_onnx``) load on first use, and ONNX's
packages only when an ONNX export runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from .fast import optimize_for_inference
from .fuse import FuseReport, fuse_bn, is_fused

__all__ = [
    "FuseReport",
    "export_onnx",
    "export_program",
    "export_pt2",
    "fuse_bn",
    "is_fused",
    "optimize_for_inference",
]

_LAZY = {"export_onnx", "export_program", "export_pt2"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".export", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
