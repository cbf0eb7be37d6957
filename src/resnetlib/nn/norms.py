"""Normalization layers by name (``ResNetSpec.norm``): ``build`` hands every stem, block
and shortcut the registered :data:`~resnetlib.nn.NormLayer` (channels -> module)."""

# No ``from __future__ import annotations`` here: TorchScript reads FrozenBatchNorm2d's
# class-level buffer annotations and cannot resolve them as strings.
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from .blocks import NormLayer

__all__ = ["NORMS", "FrozenBatchNorm2d", "group_norm", "register_norm"]


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all buffers; a
    :class:`torch.nn.BatchNorm2d` state dict loads into it (``num_batches_tracked`` dropped)."""

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def group_norm(num_channels: int) -> nn.GroupNorm:
    """Group norm with ``gcd(32, num_channels)`` groups: 32 where the channels allow it."""
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


def _validate_norm(name: str, item: Callable[[int], nn.Module]) -> None:
    if not callable(item):
        raise TypeError(f"norm {name!r} must be callable (channels -> module); got {item!r}")


NORMS: Registry[NormLayer] = Registry("norm", _validate_norm)
"""Norms by name (``ResNetSpec.norm``): ``"batchnorm"``, ``"groupnorm"``, ``"frozen_batchnorm"``."""
register_norm = NORMS.register
"""Register a norm: a callable from a channel count to a module, under a spec-usable name."""

register_norm("batchnorm", nn.BatchNorm2d)
register_norm("groupnorm", group_norm)
register_norm("frozen_batchnorm", FrozenBatchNorm2d)
