"""resnetlib: ResNets from He et al. (2015), faithful, typed and extensible.

``import resnetlib`` loads what building models needs; the conformance suite
(:mod:`resnetlib.testing`) and the deployment code (:mod:`resnetlib.deploy`) load on first
use of their names here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .analysis import ModelSummary, SummaryRow, count_flops, count_parameters, summary
from .core.build import build
from .core.features import ResNetFeatures, features
from .core.model import FeatureInfo, FeatureInfoList, ResNet, feature_take_indices, paper_depth
from .core.overrides import ModelOverrides, apply_overrides
from .core.spec import ResNetSpec, StageSpec, StemSpec
from .interop.checkpoint import Checkpoint, CheckpointError, load, read_checkpoint, save
from .interop.convert import (
    LoadReport,
    ShapeMismatch,
    WeightsMismatchError,
    adapt_input_channels,
    convert_state_dict,
    load_weights,
    to_torchvision,
)
from .interop.finetune import freeze, param_groups, unfreeze
from .models.pretrained import PretrainedError
from .models.share import save_pretrained
from .models.weights import PretrainedWeights, list_pretrained
from .models.zoo import (
    MODELS,
    ModelFactory,
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
from .nn.activations import ACTIVATIONS, ActLayer, register_act
from .nn.blocks import BLOCKS, BasicBlock, Bottleneck, ResidualBlock, register_block
from .nn.drop_path import DropPath, drop_path_rates
from .nn.layers import NormLayer, conv1x1, conv3x3, zero_norm_weight
from .nn.norms import NORMS, FrozenBatchNorm2d, group_norm, register_norm
from .nn.preact import (
    CifarPreActStem,
    ImageNetPreActStem,
    NormAct,
    PreActBasicBlock,
    PreActBottleneck,
    PreActOptionB,
)
from .nn.shortcuts import (
    SHORTCUTS,
    NoShortcut,
    OptionA,
    OptionABoth,
    OptionB,
    OptionC,
    OptionD,
    ShortcutStrategy,
    ZeroPadShortcut,
    register_shortcut,
)
from .nn.stems import STEMS, CifarStem, DeepStem, ImageNetStem, Stem, register_stem
from .registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from . import deploy, testing
    from .deploy import FuseReport, fuse_bn, is_fused, optimize_for_inference

# Names loaded on first use: name -> (module, attribute; "" for the module itself).
_LAZY = {
    "testing": (".testing", ""),
    "deploy": (".deploy", ""),
    "FuseReport": (".deploy", "FuseReport"),
    "fuse_bn": (".deploy", "fuse_bn"),
    "is_fused": (".deploy", "is_fused"),
    "optimize_for_inference": (".deploy", "optimize_for_inference"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"
"""The installed version of resnetlib."""

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "MODELS",
    "NORMS",
    "SHORTCUTS",
    "STEMS",
    "ActLayer",
    "BasicBlock",
    "Bottleneck",
    "Checkpoint",
    "CheckpointError",
    "CifarPreActStem",
    "CifarStem",
    "DeepStem",
    "DropPath",
    "FeatureInfo",
    "FeatureInfoList",
    "FrozenBatchNorm2d",
    "FuseReport",
    "ImageNetPreActStem",
    "ImageNetStem",
    "LoadReport",
    "ModelFactory",
    "ModelOverrides",
    "ModelSummary",
    "NoShortcut",
    "NormAct",
    "NormLayer",
    "OptionA",
    "OptionABoth",
    "OptionB",
    "OptionC",
    "OptionD",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActOptionB",
    "PretrainedError",
    "PretrainedWeights",
    "Registry",
    "ResNet",
    "ResNetFeatures",
    "ResNetSpec",
    "ResidualBlock",
    "ShapeMismatch",
    "ShortcutStrategy",
    "StageSpec",
    "Stem",
    "StemSpec",
    "SummaryRow",
    "UnknownNameError",
    "WeightsMismatchError",
    "ZeroPadShortcut",
    "__version__",
    "adapt_input_channels",
    "apply_overrides",
    "build",
    "cifar_resnet",
    "cifar_spec",
    "conv1x1",
    "conv3x3",
    "convert_state_dict",
    "count_flops",
    "count_parameters",
    "create_model",
    "deploy",
    "drop_path_rates",
    "feature_take_indices",
    "features",
    "freeze",
    "fuse_bn",
    "group_norm",
    "imagenet_spec",
    "is_fused",
    "list_models",
    "list_pretrained",
    "load",
    "load_weights",
    "model_spec",
    "optimize_for_inference",
    "paper_depth",
    "param_groups",
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
    "read_checkpoint",
    "register_act",
    "register_block",
    "register_model",
    "register_norm",
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
    "summary",
    "testing",
    "to_torchvision",
    "unfreeze",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "zero_norm_weight",
]
