"""Data to modules: the spec (plain data), its builder and the network it builds.

The spec sits below the parts (they read its size limits); the builder, the model and its
feature view sit above them.

The spec classes, ``build``, ``ModelOverrides`` and ``ResNet`` are also at the top level;
the feature view and the depth helpers live here.
"""

from __future__ import annotations

from .build import build
from .features import ResNetFeatures, features
from .model import FeatureInfo, FeatureInfoList, ResNet, feature_take_indices, paper_depth
from .overrides import ModelOverrides, apply_overrides
from .spec import ResNetSpec, StageSpec, StemSpec

__all__ = [
    "FeatureInfo",
    "FeatureInfoList",
    "ModelOverrides",
    "ResNet",
    "ResNetFeatures",
    "ResNetSpec",
    "StageSpec",
    "StemSpec",
    "apply_overrides",
    "build",
    "feature_take_indices",
    "features",
    "paper_depth",
]
