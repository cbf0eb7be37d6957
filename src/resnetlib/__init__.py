"""resnetlib: ResNets from He et al. (2015), faithful, typed and extensible.

The top level holds what a user types first (factories, specs, base classes, ``load``,
``save``); the rest lives in its subpackage. A name that moved off the top level raises
``AttributeError`` naming its new home.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import analysis as analysis
from . import core as core
from . import interop as interop
from . import models as models
from . import nn as nn
from .analysis import count_flops, count_parameters
from .core.build import build
from .core.model import ResNet
from .core.overrides import ModelOverrides
from .core.spec import ResNetSpec, StageSpec, StemSpec
from .interop.checkpoint import CheckpointError, load, save
from .models.share import save_pretrained
from .models.weights import list_pretrained
from .models.zoo import (
    cifar_resnet,
    cifar_spec,
    create_model,
    imagenet_spec,
    list_models,
    model_spec,
    plain18,
    plain20,
    plain32,
    plain34,
    plain44,
    plain56,
    plain110,
    plain1202,
    preact_cifar_resnet,
    preact_resnet18,
    preact_resnet34,
    preact_resnet50,
    preact_resnet101,
    preact_resnet110,
    preact_resnet152,
    preact_resnet164,
    preact_resnet1001,
    register_model,
    resnet,
    resnet18,
    resnet18d,
    resnet20,
    resnet32,
    resnet34,
    resnet34d,
    resnet44,
    resnet50,
    resnet50d,
    resnet56,
    resnet101,
    resnet101d,
    resnet110,
    resnet152,
    resnet152d,
    resnet1202,
    resnext50_32x4d,
    resnext101_32x8d,
    wide_resnet50_2,
    wide_resnet101_2,
)
from .nn.blocks import BasicBlock, Bottleneck, ResidualBlock, register_block
from .nn.shortcuts import ShortcutStrategy, register_shortcut
from .nn.stems import Stem, register_stem

if TYPE_CHECKING:
    from . import deploy as deploy
    from . import testing as testing

_LAZY = {"testing", "deploy"}

# Names that left the top level, by the module that exports each now.
_MOVED = {
    name: home
    for home, names in {
        "resnetlib.nn": """ACTIVATIONS ActLayer BLOCKS CifarPreActStem CifarStem conv1x1 conv3x3
            DeepStem drop_path_rates DropPath FrozenBatchNorm2d group_norm ImageNetPreActStem
            ImageNetStem NormAct NormLayer NORMS NoShortcut OptionA OptionABoth OptionB OptionC
            OptionD PreActBasicBlock PreActBottleneck PreActOptionB register_act register_norm
            SHORTCUTS STEMS zero_norm_weight ZeroPadShortcut""",
        "resnetlib.interop": """adapt_input_channels Checkpoint convert_state_dict freeze
            load_weights LoadReport param_groups read_checkpoint ShapeMismatch to_torchvision
            unfreeze WeightsMismatchError""",
        "resnetlib.core": """apply_overrides feature_take_indices FeatureInfo FeatureInfoList
            features paper_depth ResNetFeatures""",
        "resnetlib.deploy": "fuse_bn FuseReport is_fused optimize_for_inference",
        "resnetlib.models": "ModelFactory MODELS PretrainedError PretrainedWeights",
        "resnetlib.analysis": "ModelSummary summary SummaryRow",
        "resnetlib.registry": "Registry UnknownNameError",
    }.items()
    for name in names.split()
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in _MOVED:
        raise AttributeError(
            f"resnetlib.{name} moved to {_MOVED[name]}.{name}: "
            f"use `from {_MOVED[name]} import {name}`"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


__version__ = "0.1.0"
"""The installed version of resnetlib."""

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CheckpointError",
    "ModelOverrides",
    "ResNet",
    "ResNetSpec",
    "ResidualBlock",
    "ShortcutStrategy",
    "StageSpec",
    "Stem",
    "StemSpec",
    "__version__",
    "build",
    "cifar_resnet",
    "cifar_spec",
    "count_flops",
    "count_parameters",
    "create_model",
    "imagenet_spec",
    "list_models",
    "list_pretrained",
    "load",
    "model_spec",
    "plain18",
    "plain20",
    "plain32",
    "plain34",
    "plain44",
    "plain56",
    "plain110",
    "plain1202",
    "preact_cifar_resnet",
    "preact_resnet18",
    "preact_resnet34",
    "preact_resnet50",
    "preact_resnet101",
    "preact_resnet110",
    "preact_resnet152",
    "preact_resnet164",
    "preact_resnet1001",
    "register_block",
    "register_model",
    "register_shortcut",
    "register_stem",
    "resnet",
    "resnet18",
    "resnet18d",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet34d",
    "resnet44",
    "resnet50",
    "resnet50d",
    "resnet56",
    "resnet101",
    "resnet101d",
    "resnet110",
    "resnet152",
    "resnet152d",
    "resnet1202",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "save",
    "save_pretrained",
    "wide_resnet50_2",
    "wide_resnet101_2",
]
