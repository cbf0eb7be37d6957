"""Models for the deployment tests: every registered model on a shrunk spec, plus variants.

Compiling, exporting and folding depend on which module types and options a net holds,
not on how many blocks of each it repeats. Each registered model is therefore checked on
its own spec with every stage cut to at most two blocks (a stage's first block, which
may project, and an identity one), same block, stem, shortcut, norm and options; specs
that become identical (resnet20 ... resnet1202) are checked once. The variants add what no
registered model holds: drop path, dilation, every shortcut, stem, norm and an activation.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

import torch
from torch import nn

import resnetlib as rl

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "drop_path": ("resnet18", {"drop_path_rate": 0.2}),
    "preact_drop_path": ("preact_resnet164", {"drop_path_rate": 0.2}),
    "dilation": ("resnet50", {"output_stride": 8}),
    "shortcut_A_both": ("resnet20", {"shortcut": "A_both"}),
    "shortcut_B_cifar": ("resnet20", {"shortcut": "B"}),
    "shortcut_C": ("resnet18", {"shortcut": "C"}),
    "shortcut_D_bottleneck": ("resnet50", {"shortcut": "D"}),
    "stem_deep_basic": ("resnet18", {"stem": "deep"}),
    "stride_in_1x1": ("resnet50", {"stride_in_1x1": True}),
    "groupnorm": ("resnet18", {"norm": "groupnorm"}),
    "frozen_batchnorm": ("resnet50", {"norm": "frozen_batchnorm"}),
    "silu": ("resnet20", {"act": "silu"}),
}
"""Label: (registered model, overrides)."""

FAMILIES = {
    "basic": "resnet20",
    "bottleneck": "resnet50",
    "preact_basic": "preact_resnet110",
    "preact_bottleneck": "preact_resnet164",
}
"""One registered model per block family."""


def shrink(spec: rl.ResNetSpec, blocks: int = 2) -> rl.ResNetSpec:
    """``spec`` with every stage cut to at most ``blocks`` blocks."""
    stages = tuple(replace(s, num_blocks=min(s.num_blocks, blocks)) for s in spec.stages)
    return replace(spec, stages=stages)


@cache
def _spec_json(name: str, overrides: tuple[tuple[str, Any], ...] = ()) -> str:
    with torch.device("meta"):
        spec = rl.create_model(name, **dict(overrides)).spec
    return shrink(spec).to_json()


def case_spec(name: str) -> rl.ResNetSpec:
    """The shrunk spec of a registered model or a :data:`VARIANTS` label."""
    if name in VARIANTS:
        model, overrides = VARIANTS[name]
        return rl.ResNetSpec.from_json(_spec_json(model, tuple(sorted(overrides.items()))))
    return rl.ResNetSpec.from_json(_spec_json(name))


def all_cases() -> list[str]:
    return rl.list_models() + list(VARIANTS)


def input_for(spec: rl.ResNetSpec, batch: int = 2, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, spec.in_channels, size, size, generator=generator)


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every norm non-trivial statistics and affine parameters, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        for name in ("running_mean", "bias"):
            tensor = getattr(module, name, None)
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, rl.FrozenBatchNorm2d)) and (
                isinstance(tensor, torch.Tensor)
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)
        for name in ("running_var", "weight"):
            tensor = getattr(module, name, None)
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, rl.FrozenBatchNorm2d)) and (
                isinstance(tensor, torch.Tensor)
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
