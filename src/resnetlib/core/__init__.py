"""Data to modules: the spec (plain data), its builder, the network it builds and its
feature view (the spec classes, ``build``, ``ModelOverrides`` and ``ResNet`` are also at the
top level)."""

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
