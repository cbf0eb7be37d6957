"""Shortcut strategies: how a block's input reaches the addition (paper section 3.3), a
module for each block that maps the input to the output's shape (``None``: the identity)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry, subclass_of
from .blocks import NormLayer, conv1x1

__all__ = [
    "SHORTCUTS",
    "NoShortcut",
    "OptionA",
    "OptionABoth",
    "OptionB",
    "OptionC",
    "OptionD",
    "ShortcutStrategy",
    "ZeroPadShortcut",
    "projection",
    "register_shortcut",
]


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and append zero channels; no parameters.
    ``placement="both"`` splits the zero channels before and after the input's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        placement: Literal["end", "both"] = "end",
    ) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"zero-padding shortcut (option A) cannot reduce channels: got "
                f"in_channels={in_channels}, out_channels={out_channels}; "
                "use a projection shortcut ('B' or 'C') instead"
            )
        if stride < 1:
            raise ValueError(f"stride must be >= 1; got {stride}")
        if placement not in ("end", "both"):
            raise ValueError(f"placement must be 'end' or 'both'; got {placement!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.placement = stride, placement
        self.pad_before = (out_channels - in_channels) // 2 if placement == "both" else 0
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_before > 0 or self.pad_after > 0:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, stride={self.stride}, "
            f"placement={self.placement!r}"
        )


def projection(
    in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
) -> nn.Sequential:
    """1x1 convolution then norm: torchvision's ``downsample.0`` / ``downsample.1``."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), norm_layer(out_channels))


class ShortcutStrategy(ABC):
    """Decides each block's shortcut module; ``adds_shortcut = False``: blocks add nothing."""

    adds_shortcut: ClassVar[bool] = True

    @abstractmethod
    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module | None:
        """The module from the block input to its output shape; ``None`` for identity."""


class WhereShapeChanges(ShortcutStrategy):
    """Identity where the block keeps its shape; elsewhere what ``_module`` builds."""

    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module | None:
        if stride == 1 and in_channels == out_channels:
            return None
        return self._module(in_channels, out_channels, stride, norm_layer)

    @abstractmethod
    def _module(
        self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module: ...


class OptionA(WhereShapeChanges):
    """Identity, zero-padded and subsampled where the shape changes."""

    placement: ClassVar[Literal["end", "both"]] = "end"

    def _module(
        self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module:
        return ZeroPadShortcut(in_channels, out_channels, stride, self.placement)


class OptionABoth(OptionA):
    """Option A with the zero channels split before and after (``placement="both"``)."""

    placement: ClassVar[Literal["end", "both"]] = "both"


class OptionB(WhereShapeChanges):
    """Identity, projected where the shape changes."""

    _module = staticmethod(projection)


class OptionC(ShortcutStrategy):
    """A projection on every block."""

    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module | None:
        return projection(in_channels, out_channels, stride, norm_layer)


class OptionD(WhereShapeChanges):
    """Identity; where the shape changes, a 2x2 average pool with the stride, then a stride-1
    projection (timm's ``avg_down``; option B's parameters). At stride 1 the pool is
    ``nn.Identity``, dilated stages included (as GluonCV, unlike timm)."""

    def _module(
        self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module:
        pool: nn.Module = nn.Identity()
        if stride > 1:
            pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, conv1x1(in_channels, out_channels), norm_layer(out_channels))


class NoShortcut(ShortcutStrategy):
    """Plain network: no shortcut, no addition."""

    adds_shortcut = False

    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> nn.Module | None:
        return None


SHORTCUTS: Registry[type[ShortcutStrategy]] = Registry(
    "shortcut", subclass_of(ShortcutStrategy, "shortcut")
)
"""Shortcut strategies by name (``ResNetSpec.shortcut``): ``"A"``, ``"B"``, ``"C"``, ..."""
register_shortcut = SHORTCUTS.register
"""Register a :class:`ShortcutStrategy` subclass: ``@register_shortcut("D")``."""

register_shortcut("A", OptionA)
register_shortcut("A_both", OptionABoth)
register_shortcut("B", OptionB)
register_shortcut("C", OptionC)
register_shortcut("D", OptionD)
register_shortcut("none", NoShortcut)
