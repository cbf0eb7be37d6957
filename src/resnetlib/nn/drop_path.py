"""Stochastic depth (Huang et al. 2016), per sample, so every parameter stays in the graph."""

from __future__ import annotations

import torch
from torch import nn

from ..validate import is_real

__all__ = ["DropPath", "drop_path_rates"]


class DropPath(nn.Module):
    """Zero a residual branch for a random subset of the samples in training (scaling the kept
    ones by ``1 / (1 - p)``); the branch is always computed, so every parameter gets a gradient
    (DDP with ``find_unused_parameters=False``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not is_real(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"drop path rate must be a number in [0, 1]; got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """The linear decay rule: block ``l`` of ``L`` (from 1) drops with ``rate * l / L``.

    Examples:
        >>> import resnetlib as rl
        >>> [round(rate, 3) for rate in rl.nn.drop_path_rates(0.2, 4)]
        [0.05, 0.1, 0.15, 0.2]
    """
    return [rate * (index + 1) / num_blocks for index in range(num_blocks)]
