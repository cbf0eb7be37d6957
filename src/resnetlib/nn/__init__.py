"""The parts a network is built from (norms, activations, drop path, shortcuts, stems, blocks),
each registered by name; nothing here knows the builder, the model or the zoo."""

from __future__ import annotations

from .activations import ACTIVATIONS, ActLayer, register_act
from .blocks import (
    BLOCKS,
    BasicBlock,
    Bottleneck,
    NormLayer,
    ResidualBlock,
    conv1x1,
    conv3x3,
    register_block,
    zero_norm_weight,
)
from .drop_path import DropPath, drop_path_rates
from .norms import NORMS, FrozenBatchNorm2d, group_norm, register_norm
from .preact import (
    CifarPreActStem,
    ImageNetPreActStem,
    NormAct,
    PreActBasicBlock,
    PreActBottleneck,
    PreActOptionB,
)
from .shortcuts import (
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
from .stems import STEMS, CifarStem, DeepStem, ImageNetStem, Stem, register_stem

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "NORMS",
    "SHORTCUTS",
    "STEMS",
    "ActLayer",
    "BasicBlock",
    "Bottleneck",
    "CifarPreActStem",
    "CifarStem",
    "DeepStem",
    "DropPath",
    "FrozenBatchNorm2d",
    "ImageNetPreActStem",
    "ImageNetStem",
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
    "ResidualBlock",
    "ShortcutStrategy",
    "Stem",
    "ZeroPadShortcut",
    "conv1x1",
    "conv3x3",
    "drop_path_rates",
    "group_norm",
    "register_act",
    "register_block",
    "register_norm",
    "register_shortcut",
    "register_stem",
    "zero_norm_weight",
]
