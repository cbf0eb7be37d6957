"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

A pre-activation unit normalizes and activates *before* each convolution and adds nothing
after the addition, so the shortcut path is a clean identity from unit to unit:

    x_{l+1} = x_l + F(x_l),  F = conv(act(norm(conv(act(norm(x_l))))))

This module holds the family's parts, registered by name:

- blocks ``"preact_basic"`` (:class:`PreActBasicBlock`) and ``"preact_bottleneck"``
  (:class:`PreActBottleneck`);
- stems ``"cifar_preact"`` and ``"imagenet_preact"``: a convolution (and max-pool) with no
  norm or activation, since the first unit pre-activates its input;
- shortcut ``"preact_B"`` (:class:`PreActOptionB`): option B's projection without a norm,
  as the reference implementations use (the input it projects is already normalized);
- :class:`NormAct`, the norm and activation after the last unit (a model's ``norm``).
"""

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
    grouped_width,
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
    """A norm (``bn``) then an activation (``act``): the pre-activation nets' last layers.

    A model registers it as ``norm``, so its keys read ``norm.bn.weight``,
    ``norm.bn.running_mean``, ...; it is part of ``forward_features``, whose output is
    therefore activated (non-negative with ReLU), as a post-activation net's is.
    """

    def __init__(
        self, channels: int, *, norm_layer: NormLayer = nn.BatchNorm2d, act_layer: ActLayer = relu
    ) -> None:
        super().__init__(OrderedDict(bn=norm_layer(channels), act=act_layer()))


class _PreActBlock(ResidualBlock):
    """Shared behaviour of the pre-activation blocks.

    The first norm and activation (``bn1``, ``relu``) act on the block input. Where the
    block has a shortcut module (``downsample`` is not ``None``: the dimension-increasing
    units), that module takes the pre-activated input, as in the paper's code ("the shared
    BN-ReLU before both branches"); otherwise the raw input is added. Nothing follows the
    addition (``activates_after_add`` is false), so the output can be negative.
    ``zero_init_last`` zeroes the last convolution's weight (the branch ends in a
    convolution, not a norm): the branch then outputs zero and the block starts exactly
    as its shortcut.
    """

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
    """Norm-act-3x3, norm-act-3x3 (He et al. 2016, Fig. 1b); the stride is on the first.

    ``bn1`` normalizes the block input (``in_channels``), ``bn2`` the first convolution's
    output. A projection shortcut takes the pre-activated input; nothing follows the
    addition.
    """

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
        out: torch.Tensor = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.add_shortcut(out, x if self.downsample is None else pre, inplace=True)

    def zero_init_last(self) -> None:
        """Zero ``conv2``'s weight: the branch outputs zero, the block its shortcut."""
        nn.init.zeros_(self.conv2.weight)


class PreActBottleneck(_PreActBlock):
    """Norm-act-1x1, norm-act-3x3, norm-act-1x1 expanding by 4 (He et al. 2016).

    As :class:`~resnetlib.Bottleneck`: the stride sits on the 3x3 unless
    ``stride_in_1x1=True`` (the paper's code strides the first 1x1), and the inner width
    is ``int(width * width_per_group / 64) * groups``. ``bn1`` normalizes the block input;
    a projection shortcut takes the pre-activated input; nothing follows the addition.
    """

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
        in_channels, stride, dilation = self.in_channels, self.stride, self.dilation
        inner = grouped_width(
            width=self.width,
            groups=groups,
            width_per_group=width_per_group,
            owner="PreActBottleneck",
        )
        self.stride_in_1x1 = stride_in_1x1
        self.groups = groups
        self.inner_width = inner
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.bn1 = norm_layer(in_channels)
        self.relu = act_layer()
        self.conv1 = conv1x1(in_channels, inner, stride_1x1)
        self.bn2 = norm_layer(inner)
        self.conv2 = conv3x3(inner, inner, stride_3x3, dilation=dilation, groups=groups)
        self.bn3 = norm_layer(inner)
        self.conv3 = conv1x1(inner, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre: torch.Tensor = self.relu(self.bn1(x))
        out: torch.Tensor = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.add_shortcut(out, x if self.downsample is None else pre, inplace=True)

    def zero_init_last(self) -> None:
        """Zero ``conv3``'s weight: the branch outputs zero, the block its shortcut."""
        nn.init.zeros_(self.conv3.weight)


class PreActOptionB(WhereShapeChanges):
    """Identity; where the shape changes, a bare 1x1 projection (``downsample.0``).

    Option B for pre-activation blocks: the projection takes the block's normalized and
    activated input, so it has no norm of its own, as in He et al.'s code. This is what
    makes the 2016 nets' published parameter counts exact (ResNet-164: 1,703,258).
    """

    def _module(
        self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module:
        return nn.Sequential(conv1x1(in_channels, out_channels, stride))


class CifarPreActStem(CifarStem):
    """A 3x3/1 convolution only (He et al. 2016, CIFAR): the first unit pre-activates.

    Takes ``norm_layer`` and ``act_layer`` like every stem and uses neither.
    """

    _normalizes: ClassVar[bool] = False


class ImageNetPreActStem(ImageNetStem):
    """A 7x7/2 convolution then a 3x3/2 max-pool, with no norm or activation between.

    The first unit pre-activates its input. Takes ``norm_layer`` and ``act_layer`` like
    every stem and uses neither.
    """

    _normalizes: ClassVar[bool] = False


register_block("preact_basic", PreActBasicBlock)
register_block("preact_bottleneck", PreActBottleneck)
register_shortcut("preact_B", PreActOptionB)
register_stem("cifar_preact", CifarPreActStem)
register_stem("imagenet_preact", ImageNetPreActStem)
