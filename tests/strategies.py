"""Hypothesis strategies for small, valid ResNet specs (and inputs that fit them)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

import resnetlib as rl
from resnetlib.spec import JSONScalar

# The built-in registry names the strategies draw from, in one place: a new built-in block,
# stem or shortcut joins every property test by being added here.
BLOCKS = ("basic", "bottleneck", "preact_basic", "preact_bottleneck")
STEMS = ("cifar", "imagenet", "deep", "cifar_preact", "imagenet_preact")
RESIDUAL_SHORTCUTS = ("A", "A_both", "B", "C", "D", "preact_B")
SHORTCUTS = (*RESIDUAL_SHORTCUTS, "none")
NORMS = ("batchnorm", "groupnorm", "frozen_batchnorm")
ACTS = ("relu", "silu", "gelu", "mish", "elu", "leaky_relu", "hardswish", "identity")


@dataclass(frozen=True)
class Case:
    """A spec with an input size and batch size that fit it."""

    spec: rl.ResNetSpec
    image_size: int
    batch_size: int


@st.composite
def block_options(draw: st.DrawFn, block: str, widths: list[int]) -> dict[str, JSONScalar]:
    """Options of the built-in blocks that take them (Bottleneck: stride, groups, widths)."""
    if block not in ("bottleneck", "preact_bottleneck"):
        return {}
    options: dict[str, JSONScalar] = {"stride_in_1x1": draw(st.booleans())}
    if draw(st.booleans()):
        # int(width * width_per_group / 64) must stay >= 1 for the narrowest stage.
        per_group = draw(st.sampled_from([w for w in (16, 32, 64, 128) if widths[0] * w >= 64]))
        options.update(groups=draw(st.integers(1, 3)), width_per_group=per_group)
    return options


@st.composite
def specs(draw: st.DrawFn, shortcuts: tuple[str, ...] = SHORTCUTS) -> rl.ResNetSpec:
    """Small specs over every built-in block, stem, shortcut, norm and activation, with
    drop path and dilation; widths never shrink, so option A fits."""
    block = draw(st.sampled_from(BLOCKS))
    shortcut = draw(st.sampled_from(shortcuts))
    residual = rl.SHORTCUTS.get(shortcut).adds_shortcut
    expansion = rl.BLOCKS.get(block).expansion
    num_stages = draw(st.integers(1, 3))
    widths = sorted(draw(st.lists(st.integers(1, 6), min_size=num_stages, max_size=num_stages)))
    stages = tuple(
        rl.StageSpec(
            num_blocks=draw(st.integers(1, 2)),
            width=width,
            stride=draw(st.integers(1, 2)),
            dilation=draw(st.sampled_from((1, 1, 2))),
        )
        for width in widths
    )
    # Option A cannot shrink channels: the stem may be at most as wide as the first output.
    limit = widths[0] * expansion
    stem = draw(st.sampled_from(STEMS))
    if stem == "deep" and limit < 2:
        stem = "imagenet"
    stem_channels = draw(st.integers(1, limit))
    if stem == "deep":  # its first two convolutions are half as wide: an even width
        stem_channels = max(2, stem_channels - stem_channels % 2)
    # Drop path needs a shortcut to fall back on; build() refuses it for plain networks.
    drop_path_rate = draw(st.sampled_from((0.0, 0.0, 0.2, 0.5))) if residual else 0.0
    return rl.ResNetSpec(
        stages=stages,
        block=block,
        shortcut=shortcut,
        stem=rl.StemSpec(type=stem, out_channels=stem_channels),
        in_channels=draw(st.integers(1, 4)),
        num_classes=draw(st.integers(1, 5)),
        zero_init_residual=residual and draw(st.booleans()),
        block_options=draw(block_options(block, widths)),
        norm=draw(st.sampled_from(NORMS)),
        act=draw(st.sampled_from(ACTS)),
        drop_path_rate=drop_path_rate,
    )


@st.composite
def cases(draw: st.DrawFn, shortcuts: tuple[str, ...] = SHORTCUTS) -> Case:
    spec = draw(specs(shortcuts))
    smallest = 1
    if spec.norm == "groupnorm":
        # A group of one channel needs more than one pixel: keep every map at least 2x2.
        smallest = 2 * rl.STEMS.get(spec.stem.type).reduction
        for stage in spec.stages:
            smallest *= stage.stride
    return Case(
        spec=spec,
        image_size=draw(st.integers(smallest, max(20, smallest))),
        batch_size=draw(st.integers(2, 4)),
    )
