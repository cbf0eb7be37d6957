"""Small layer constructors shared by blocks, shortcuts and stems."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NormLayer = Callable[[int], nn.Module]
"""Builds a normalization layer for a number of channels (``nn.BatchNorm2d`` by default)."""

__all__ = ["NormLayer", "conv1x1", "conv3x3", "zero_norm_weight"]


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, *, dilation: int = 1, groups: int = 1
) -> nn.Conv2d:
    """3x3 convolution without bias, padded so that only ``stride`` changes the size."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        groups=groups,
        bias=False,
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def zero_norm_weight(norm: nn.Module) -> None:
    """Zero a norm layer's scale, so that its output starts at its (zero) bias.

    Raises:
        TypeError: the norm has no affine weight (``affine=False``).
    """
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(
            f"cannot zero-init {type(norm).__name__}: it has no affine weight "
            "(build norms with affine=True to use zero_init_residual)"
        )
    with torch.no_grad():
        weight.zero_()
