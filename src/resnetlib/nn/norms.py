"""Normalization layers by name (``ResNetSpec.norm``): ``build`` hands every stem, block
and shortcut the registered :data:`~resnetlib.nn.NormLayer` (channels -> module)."""

# No ``from __future__ import annotations`` here: TorchScript reads FrozenBatchNorm2d's
# class-level buffer annotations and cannot resolve them as strings.
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..common import first_line
from ..registry import Registry
from ..validate import one_line
from .activations import check_factory
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
    """Refuse (``TypeError``) a module instance or a non-callable, and (``ValueError``) a
    callable that, called with 32 and with 64 channels on the CPU, makes no module keeping the
    shape of a ``(2, channels, 2, 2)`` input (a count it refuses to be built for, as
    ``GroupNorm(64, c)`` refuses 32, is not probed; the random state is kept; the built-in
    norms skip the run)."""
    who = f"norm {name!r}"
    check_factory(who, item, "a callable from a channel count to a module (nn.BatchNorm2d)")
    if item in (nn.BatchNorm2d, group_norm, FrozenBatchNorm2d):
        return  # resnetlib's own: a first forward pass would slow every import by ~40 ms
    for channels in (32, 64):  # two counts: a norm that hard-codes one fails the other
        x = torch.zeros(2, channels, 2, 2)
        with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
            try:
                norm = item(channels)
            except Exception:  # a count it is not built for: the build names the layer
                continue
            try:
                out = norm.eval()(x) if isinstance(norm, nn.Module) else None
            except Exception as error:
                raise ValueError(
                    f"{who} failed for {channels} channels while its registration checked it "
                    f"on a {tuple(x.shape)} input: {type(error).__name__}: {first_line(error, 200)}"
                ) from error
        shape = getattr(out, "shape", None)
        if not isinstance(norm, nn.Module) or shape != x.shape:
            made = one_line(norm) if not isinstance(norm, nn.Module) else type(norm).__name__
            if isinstance(norm, nn.Module):
                shape_text = str(tuple(shape)) if shape is not None else one_line(out, 100)
                made += f", which maps a {tuple(x.shape)} input to {shape_text}"
            raise ValueError(
                f"{who} must make, for C channels, a module that keeps the shape of an "
                f"(N, C, H, W) input; for {channels} channels it made {made}"
            )


NORMS: Registry[NormLayer] = Registry("norm", _validate_norm)
"""Norms by name (``ResNetSpec.norm``): ``"batchnorm"``, ``"groupnorm"``, ``"frozen_batchnorm"``."""
register_norm = NORMS.register
"""Register a norm: a callable from a channel count to a module, under a spec-usable name;
registration runs it once at 32 and 64 channels and refuses a module that changes the shape."""

register_norm("batchnorm", nn.BatchNorm2d)
register_norm("groupnorm", group_norm)
register_norm("frozen_batchnorm", FrozenBatchNorm2d)
