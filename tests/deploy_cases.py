"""Models for the deployment tests: every registered model on a shrunk spec, plus variants.

Compiling, exporting and folding depend on which module types and options a net holds,
not on how many blocks of each it repeats or how wide they are. Each registered model is
therefore checked on its own spec with every stage cut to at most two blocks (a stage's
first block, which may project, and an identity one) and ImageNet widths divided by 4,
same block, stem, shortcut, norm and options; specs
that become identical (resnet20 ... resnet1202) are checked once. The variants add what no
registered model holds, several per variant: drop path, dilation (output_stride), shortcuts
A_both and C, the group and frozen batch norms, another activation, the stride on the first
1x1 (option D and the deep stem are resnet*d's, "none" the plain nets', "preact_B" the
pre-activation nets').
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

import torch
from torch import nn

import resnetlib as rl

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "basic_options": (
        "resnet18",
        {"drop_path_rate": 0.2, "shortcut": "C", "act": "silu", "norm": "groupnorm"},
    ),
    "bottleneck_options": (
        "resnet50",
        {
            "drop_path_rate": 0.2,
            "output_stride": 8,
            "norm": "frozen_batchnorm",
            "stride_in_1x1": True,
        },
    ),
    "cifar_options": ("resnet20", {"drop_path_rate": 0.2, "shortcut": "A_both"}),
    "preact_options": ("preact_resnet50", {"drop_path_rate": 0.2, "output_stride": 16}),
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
    """``spec`` with every stage cut to at most ``blocks`` blocks and, for the ImageNet
    widths (stem of 64 channels or more), every width divided by 4 (the stages still
    double their width, so the same blocks project).
    """
    narrow = 4 if spec.stem.out_channels >= 64 else 1
    stages = tuple(
        replace(s, num_blocks=min(s.num_blocks, blocks), width=s.width // narrow)
        for s in spec.stages
    )
    stem = replace(spec.stem, out_channels=spec.stem.out_channels // narrow)
    return replace(spec, stages=stages, stem=stem)


def registered_spec(name: str, **overrides: Any) -> rl.ResNetSpec:
    """The spec ``create_model(name, **overrides)`` builds, without building it
    (``model_spec``: building resnet1202 or resnet152, even on the meta device, takes
    seconds, and test collection stays fast)."""
    return rl.model_spec(name, **overrides)


@cache
def _spec_json(name: str, overrides: tuple[tuple[str, Any], ...] = ()) -> str:
    return shrink(registered_spec(name, **dict(overrides))).to_json()


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
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, rl.nn.FrozenBatchNorm2d)) and (
                isinstance(tensor, torch.Tensor)
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)
        for name in ("running_var", "weight"):
            tensor = getattr(module, name, None)
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, rl.nn.FrozenBatchNorm2d)) and (
                isinstance(tensor, torch.Tensor)
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)


def distinct_cases(blocks: int = 2) -> list[tuple[str, tuple[str, ...]]]:
    """Cases whose shrunk specs differ, each as (first name, every name sharing its spec)."""
    groups: dict[str, list[str]] = {}
    for name in all_cases():
        groups.setdefault(shrink(case_spec(name), blocks).to_json(), []).append(name)
    return [(names[0], tuple(names)) for names in groups.values()]
