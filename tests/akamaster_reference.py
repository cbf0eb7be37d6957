"""A re-implementation of akamaster/pytorch_resnet_cifar10's ``resnet.py`` for tests.

Same module names (``conv1``, ``bn1``, ``layer1``..``layer3`` of ``BasicBlock`` with
``conv1``, ``bn1``, ``conv2``, ``bn2``, ``shortcut``; ``linear``), the same forward pass and
the same option-A shortcut: subsample by 2 and pad ``planes // 4`` zero channels before
*and* after (their ``LambdaLayer``, which holds no parameters). Option B is their
``shortcut = Sequential(conv1x1, BatchNorm2d)``. Their released checkpoints are
``{"state_dict": ...}`` saved from ``DataParallel``, so every key starts with ``module.``:
:func:`released_checkpoint` makes one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class PadBothSides(nn.Module):
    """Their ``LambdaLayer`` for option A: ``F.pad(x[:, :, ::2, ::2], (0,0,0,0,p,p))``."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.planes // 4
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = PadBothSides(planes)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class AkamasterResNet(nn.Module):
    """Their ``ResNet(BasicBlock, [n, n, n])``: depth ``6n + 2``."""

    def __init__(self, num_blocks: int, num_classes: int = 10, option: str = "A") -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks, 1, option)
        self.layer2 = self._make_layer(32, num_blocks, 2, option)
        self.layer3 = self._make_layer(64, num_blocks, 2, option)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int, option: str) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, block_stride, option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def released_checkpoint(model: nn.Module) -> dict[str, Any]:
    """``model``'s weights as their trainer saves them (from a ``DataParallel`` model)."""
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    return {"epoch": 200, "best_prec1": 91.7, "state_dict": state}
