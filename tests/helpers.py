"""Helpers the test modules share: the tiny models and the gradient check."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import Unpack

import resnetlib as rl


def tiny_cifar(seed: int | None = None, **overrides: Unpack[rl.ModelOverrides]) -> rl.ResNet:
    """ResNet-8 on the CIFAR layout (one basic block a stage) at widths 4/8/16.

    About 5k parameters and a checkpoint of about 30 kB; ``seed`` seeds torch's global
    generator first, so the weights are reproducible.
    """
    if seed is not None:
        torch.manual_seed(seed)
    overrides.setdefault("widths", (4, 8, 16))
    return rl.cifar_resnet(8, **overrides)


def tiny_imagenet(**overrides: Unpack[rl.ModelOverrides]) -> rl.ResNet:
    """The ImageNet layout (7x7 stem, four stages) with one block a stage at widths 8 ... 64."""
    overrides.setdefault("base_channels", 8)
    return rl.resnet(layers=(1, 1, 1, 1), **overrides)


def assert_every_parameter_has_a_gradient(model: nn.Module, *, nonzero: bool = False) -> None:
    """After a backward pass, every parameter of ``model`` holds a finite gradient.

    DDP with ``find_unused_parameters=False`` (its default) fails on a parameter without
    one. With ``nonzero``, each gradient must also have a non-zero entry.
    """
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} received no gradient (DDP would fail)"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        if nonzero:
            assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
