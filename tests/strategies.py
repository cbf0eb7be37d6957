"""Hypothesis strategies for small, valid ResNet specs (and inputs that fit them)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

import resnetlib as rl

BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "imagenet")
RESIDUAL_SHORTCUTS = ("A", "A_both", "B", "C")
SHORTCUTS = (*RESIDUAL_SHORTCUTS, "none")


@dataclass(frozen=True)
class Case:
    """A spec with an input size and batch size that fit it."""

    spec: rl.ResNetSpec
    image_size: int
    batch_size: int


@st.composite
def specs(draw: st.DrawFn, shortcuts: tuple[str, ...] = SHORTCUTS) -> rl.ResNetSpec:
    """Small specs over every block, stem and shortcut; widths never shrink, so option A fits."""
    block = draw(st.sampled_from(BLOCKS))
    shortcut = draw(st.sampled_from(shortcuts))
    expansion = rl.BLOCKS.get(block).expansion
    num_stages = draw(st.integers(1, 3))
    widths = sorted(draw(st.lists(st.integers(1, 6), min_size=num_stages, max_size=num_stages)))
    stages = tuple(
        rl.StageSpec(
            num_blocks=draw(st.integers(1, 2)), width=width, stride=draw(st.integers(1, 2))
        )
        for width in widths
    )
    # Option A cannot shrink channels: the stem may be at most as wide as the first output.
    stem_channels = draw(st.integers(1, widths[0] * expansion))
    block_options = {}
    if block == "bottleneck":
        block_options["stride_in_1x1"] = draw(st.booleans())
    return rl.ResNetSpec(
        stages=stages,
        block=block,
        shortcut=shortcut,
        stem=rl.StemSpec(type=draw(st.sampled_from(STEMS)), out_channels=stem_channels),
        in_channels=draw(st.integers(1, 4)),
        num_classes=draw(st.integers(1, 5)),
        zero_init_residual=shortcut != "none" and draw(st.booleans()),
        block_options=block_options,
    )


@st.composite
def cases(draw: st.DrawFn, shortcuts: tuple[str, ...] = SHORTCUTS) -> Case:
    return Case(
        spec=draw(specs(shortcuts)),
        image_size=draw(st.integers(1, 20)),
        batch_size=draw(st.integers(2, 4)),
    )
