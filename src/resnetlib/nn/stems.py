"""Stems: the layers before the first stage, an ``nn.Sequential`` whose children
:class:`~resnetlib.ResNet` adopts under their own (torchvision's) names."""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from torch import nn

from ..registry import Registry, subclass_of
from .activations import ActLayer, relu
from .blocks import NormLayer, conv3x3

__all__ = ["STEMS", "CifarStem", "DeepStem", "ImageNetStem", "Stem", "register_stem"]


class Stem(nn.Sequential):
    """Base of every stem. Subclasses take keyword-only ``in_channels``, ``out_channels``,
    ``norm_layer`` (and ``act_layer`` for an activation other than ReLU) and pass their layers
    to ``super().__init__``. ``reduction`` is the total stride; ``default_image_size`` the
    input side summaries use when given none."""

    reduction: ClassVar[int] = 1
    default_image_size: ClassVar[int] = 224

    def __init__(
        self, layers: OrderedDict[str, nn.Module], *, in_channels: int, out_channels: int
    ) -> None:
        super().__init__(layers)
        self.in_channels, self.out_channels = in_channels, out_channels


class _OneConvStem(Stem):
    """``conv1`` (``_kernel`` wide), ``bn1`` and ``relu`` (unless ``_normalizes`` is false),
    and, where ``reduction`` is 4, a stride-2 convolution and a 3x3/2 max-pool."""

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

    default_image_size: ClassVar[int] = 32
    _kernel: ClassVar[int] = 3


class DeepStem(Stem):
    """Three 3x3 convolutions (``conv1``; the first two ``out_channels // 2`` wide, so it must
    be even; the first with stride 2), norm, ReLU, 3x3/2 max-pool: *Bag of Tricks* "ResNet-C",
    under timm's ``stem_type="deep"`` names, so its ``resnet*d`` weights load."""

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
