"""Deployment: batch-norm folding, the inference fast path, export, gradient checkpointing.

Everything here returns new modules and never changes the model it is given. Only the
light parts load with ``import resnetlib``; ``torch.onnx``, ``onnx``, ``onnxruntime`` and
``torch.export`` load when a function that needs them is called.
"""

from __future__ import annotations

from .fast import optimize_for_inference
from .fuse import FuseReport, fuse_bn, is_fused

__all__ = ["FuseReport", "fuse_bn", "is_fused", "optimize_for_inference"]
