"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks"):
norm and activation *before* each convolution, nothing after the addition."""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import Unpack

from .activations import ActLayer, relu
from .blocks import (
    BlockArgs,
    NormLayer,
    ResidualBlock,
    conv1x1,
    conv3x3,
    grouped_widths,
    register_block,
)
from .shortcuts import WhereShapeChanges, register_shortcut
from .stems import CifarStem, ImageNetStem, register_stem

__all__ = [
    "CifarPreActStem",
    "ImageNetPreActStem",
    "NormAct",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActOptionB",
]


class NormAct(nn.Sequential):
    """A norm (``bn``) then an activation (``act``): the pre-activation nets' last layers, the
    model's ``norm``, so that ``forward_features`` returns activated maps, as post-activation
    nets do."""

    def __init__(
        self, channels: int, *, norm_layer: NormLayer = nn.BatchNorm2d, act_layer: ActLayer = relu
    ) -> None:
        super().__init__(OrderedDict(bn=norm_layer(channels), act=act_layer()))


class _PreActBlock(ResidualBlock):
    """``bn1`` and ``relu`` act on the block input; a ``downsample`` takes that pre-activated
    input, as in the paper's code, else the raw input is added."""

    activates_after_add: ClassVar[bool] = False
    bn1: nn.Module
    relu: nn.Module

    def forward_shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:
            return x
        projected: torch.Tensor = self.downsample(self.relu(self.bn1(x)))
        return projected

    @classmethod
    def final_layers(
        cls, channels: int, *, norm_layer: NormLayer, act_layer: ActLayer
    ) -> nn.Module | None:
        """The last unit's output is not normalized: add a :class:`NormAct` after it."""
        return NormAct(channels, norm_layer=norm_layer, act_layer=act_layer)


class PreActBasicBlock(_PreActBlock):
    """Norm-act-3x3, norm-act-3x3 (He et al. 2016, Fig. 1b); the stride is on the first."""

    # Own annotations: TorchScript would read _PreActBlock's (bn1, relu) and fail on them.
    expansion: ClassVar[int] = 1
    weighted_layers: ClassVar[int] = 2

    def __init__(self, **args: Unpack[BlockArgs]) -> None:
        super().__init__(**args)
        norm_layer, act_layer = self.layer_makers(args)
        width, dilation = self.width, self.dilation
        self.bn1 = norm_layer(self.in_channels)
        self.relu = act_layer()
        self.conv1 = conv3x3(self.in_channels, width, self.stride, dilation=dilation)
        self.bn2 = norm_layer(width)
        self.conv2 = conv3x3(width, width, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre: torch.Tensor = self.relu(self.bn1(x))
        out: torch.Tensor = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return self.add_shortcut(out, x if self.downsample is None else pre, inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)


class PreActBottleneck(_PreActBlock):
    """Norm-act-1x1, norm-act-3x3, norm-act-1x1 expanding by 4 (He et al. 2016); options
    as :class:`~resnetlib.Bottleneck`'s (the paper's code uses ``stride_in_1x1=True``)."""

    expansion: ClassVar[int] = 4
    weighted_layers: ClassVar[int] = 3

    def __init__(
        self,
        *,
        stride_in_1x1: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        **args: Unpack[BlockArgs],
    ) -> None:
        super().__init__(**args)
        norm_layer, act_layer = self.layer_makers(args)
        inner, stride_1x1, stride_3x3 = grouped_widths(self, stride_in_1x1, groups, width_per_group)
        self.stride_in_1x1, self.groups, self.inner_width = stride_in_1x1, groups, inner
        self.bn1 = norm_layer(self.in_channels)
        self.relu = act_layer()
        self.conv1 = conv1x1(self.in_channels, inner, stride_1x1)
        self.bn2 = norm_layer(inner)
        self.conv2 = conv3x3(inner, inner, stride_3x3, dilation=self.dilation, groups=groups)
        self.bn3 = norm_layer(inner)
        self.conv3 = conv1x1(inner, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre: torch.Tensor = self.relu(self.bn1(x))
        out: torch.Tensor = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.add_shortcut(out, x if self.downsample is None else pre, inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)


class PreActOptionB(WhereShapeChanges):
    """Option B for pre-activation blocks: a bare 1x1 projection (``downsample.0``) where the
    shape changes, as in He et al.'s code (which makes the published parameter counts exact)."""

    def _module(
        self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module:
        return nn.Sequential(conv1x1(in_channels, out_channels, stride))


class CifarPreActStem(CifarStem):
    """A 3x3/1 convolution (He et al. 2016, CIFAR); ``norm_layer`` and ``act_layer`` go unused."""

    _normalizes: ClassVar[bool] = False


class ImageNetPreActStem(ImageNetStem):
    """A 7x7/2 convolution, a 3x3/2 max-pool; ``norm_layer`` and ``act_layer`` go unused."""

    _normalizes: ClassVar[bool] = False


register_block("preact_basic", PreActBasicBlock)
register_block("preact_bottleneck", PreActBottleneck)
register_shortcut("preact_B", PreActOptionB)
register_stem("cifar_preact", CifarPreActStem)
register_stem("imagenet_preact", ImageNetPreActStem)
