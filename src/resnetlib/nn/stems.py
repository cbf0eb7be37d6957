"""Stems: the layers before the first stage.

A stem is an ``nn.Sequential``; :class:`~resnetlib.ResNet` adopts its children as its own
first modules, so their names (``conv1``, ``bn1``, ``relu``, ``maxpool``) are torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from torch import nn

from ..registry import Registry, subclass_of
from .activations import ActLayer, relu
from .blocks import NormLayer, conv3x3

__all__ = ["STEMS", "CifarStem", "DeepStem", "ImageNetStem", "Stem", "register_stem"]


class Stem(nn.Sequential):
    """Base of every stem. Subclasses take keyword-only ``in_channels``, ``out_channels``
    and ``norm_layer`` (and ``act_layer``, which :func:`resnetlib.build` passes only when
    the spec's activation is not ReLU) and pass their layers, in order, to
    ``super().__init__``.

    ``reduction`` is the stem's total stride; ``default_image_size`` the input side
    length the stem was designed for (what summaries use when no size is given).
    """

    reduction: ClassVar[int] = 1
    default_image_size: ClassVar[int] = 224

    def __init__(
        self, layers: OrderedDict[str, nn.Module], *, in_channels: int, out_channels: int
    ) -> None:
        super().__init__(layers)
        self.in_channels = in_channels
        self.out_channels = out_channels


class _OneConvStem(Stem):
    """One convolution (``conv1``, ``_kernel`` wide), a norm and an activation (``bn1``,
    ``relu``; the pre-activation stems, ``_normalizes = False``, leave them to the first
    unit), and, where ``reduction`` is 4, a stride-2 convolution and a 3x3/2 max-pool."""

    _kernel: ClassVar[int]
    _normalizes: ClassVar[bool] = True

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = relu,
    ) -> None:
        kernel, pooled = self._kernel, self.reduction > 1
        stride = 2 if pooled else 1
        conv1 = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=conv1)
        if self._normalizes:
            layers.update(bn1=norm_layer(out_channels), relu=act_layer())
        if pooled:
            layers["maxpool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        super().__init__(layers, in_channels=in_channels, out_channels=out_channels)


class ImageNetStem(_OneConvStem):
    """7x7/2 convolution, norm, ReLU, 3x3/2 max-pool (paper Table 1, conv1)."""

    reduction: ClassVar[int] = 4
    _kernel: ClassVar[int] = 7


class CifarStem(_OneConvStem):
    """3x3/1 convolution, norm, ReLU, no pooling (paper section 4.2)."""

    reduction: ClassVar[int] = 1
    default_image_size: ClassVar[int] = 32
    _kernel: ClassVar[int] = 3


class DeepStem(Stem):
    """Three 3x3 convolutions, norm, ReLU, 3x3/2 max-pool: *Bag of Tricks* "ResNet-C".

    The convolutions have widths ``out_channels // 2``, ``out_channels // 2`` and
    ``out_channels`` (timm's ``stem_type="deep"`` with ``stem_width = out_channels // 2``),
    the first with stride 2, so ``out_channels`` must be even. They form an
    ``nn.Sequential`` named ``conv1`` with a norm and an activation between them, followed
    by ``bn1``, ``relu`` and ``maxpool``: the parameter names (``conv1.0``, ``conv1.1``,
    ``conv1.3``, ``conv1.4``, ``conv1.6``, ``bn1``) are timm's, so its ``resnet*d``
    weights load.
    """

    reduction: ClassVar[int] = 4

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = relu,
    ) -> None:
        if out_channels < 2 or out_channels % 2:
            raise ValueError(
                f"the deep stem needs an even out_channels >= 2 (its first two convolutions "
                f"have out_channels // 2 channels); got {out_channels}"
            )
        width = out_channels // 2
        layers = OrderedDict(
            conv1=nn.Sequential(
                conv3x3(in_channels, width, stride=2),
                norm_layer(width),
                act_layer(),
                conv3x3(width, width),
                norm_layer(width),
                act_layer(),
                conv3x3(width, out_channels),
            ),
            bn1=norm_layer(out_channels),
            relu=act_layer(),
            maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        super().__init__(layers, in_channels=in_channels, out_channels=out_channels)
        self.stem_width = width


STEMS: Registry[type[Stem]] = Registry("stem", subclass_of(Stem, "stem"))
"""Stem types by name (``StemSpec.type``): ``"imagenet"``, ``"cifar"``, ``"deep"``, ..."""
register_stem = STEMS.register
"""Register a :class:`Stem` subclass: ``@register_stem("deep")``."""

register_stem("imagenet", ImageNetStem)
register_stem("cifar", CifarStem)
register_stem("deep", DeepStem)
