"""Hypothesis strategies for small ResNet specs that build (:func:`specs`) and inputs that fit
them (:func:`cases`); needs hypothesis (``pip install 'resnetlib[testing]'``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

try:
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - exercised in a subprocess
    raise ModuleNotFoundError(
        "resnetlib.testing.strategies (and resnetlib.testing.fuzz_block) needs hypothesis: "
        "pip install 'resnetlib[testing]'",
        name="hypothesis",
    ) from error

from ..core.build import takes_keyword
from ..core.spec import JSONScalar, ResNetSpec, StageSpec, StemSpec
from ..nn.blocks import BLOCKS
from ..nn.shortcuts import SHORTCUTS
from ..nn.stems import STEMS

__all__ = [
    "BUILTIN_ACTS",
    "BUILTIN_BLOCKS",
    "BUILTIN_NORMS",
    "BUILTIN_SHORTCUTS",
    "BUILTIN_STEMS",
    "Case",
    "block_options",
    "cases",
    "specs",
]

BUILTIN_BLOCKS: tuple[str, ...] = ("basic", "bottleneck", "preact_basic", "preact_bottleneck")
"""Built-in block names the strategies draw from by default."""
BUILTIN_STEMS: tuple[str, ...] = ("cifar", "imagenet", "deep", "cifar_preact", "imagenet_preact")
"""Built-in stem names the strategies draw from by default."""
BUILTIN_SHORTCUTS: tuple[str, ...] = ("A", "A_both", "B", "C", "D", "preact_B", "none")
"""Built-in shortcut names the strategies draw from by default."""
BUILTIN_NORMS: tuple[str, ...] = ("batchnorm", "groupnorm", "frozen_batchnorm")
"""Built-in norm names the strategies draw from by default."""
BUILTIN_ACTS: tuple[str, ...] = (
    "relu",
    "silu",
    "gelu",
    "mish",
    "elu",
    "leaky_relu",
    "hardswish",
    "identity",
)
"""Built-in activation names the strategies draw from by default."""

_BOTTLENECKS = ("bottleneck", "preact_bottleneck")
_DEEP_STEM = "deep"  # its first two convolutions are half as wide: an even width


@dataclass(frozen=True)
class Case:
    """A spec with an input size and batch size that fit it."""

    spec: ResNetSpec
    image_size: int
    batch_size: int


def _names(field: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not names:
        raise ValueError(f"{field} must be a non-empty sequence of registry names; got {names!r}")
    return tuple(names)


@st.composite
def block_options(draw: st.DrawFn, block: str, widths: Sequence[int]) -> dict[str, JSONScalar]:
    """Options of the built-in bottlenecks (stride, groups, widths), ``{}`` for other blocks;
    ``widths`` are the spec's stage widths, narrowest first."""
    if block not in _BOTTLENECKS:
        return {}
    options: dict[str, JSONScalar] = {"stride_in_1x1": draw(st.booleans())}
    if draw(st.booleans()):
        # int(width * width_per_group / 64) must stay >= 1 for the narrowest stage.
        per_group = draw(st.sampled_from([w for w in (16, 32, 64, 128) if widths[0] * w >= 64]))
        options.update(groups=draw(st.integers(1, 3)), width_per_group=per_group)
    return options


_draw_block_options = block_options  # `specs` has a parameter of the same name


@st.composite
def specs(
    draw: st.DrawFn,
    *,
    blocks: Sequence[str] = BUILTIN_BLOCKS,
    stems: Sequence[str] = BUILTIN_STEMS,
    shortcuts: Sequence[str] = BUILTIN_SHORTCUTS,
    norms: Sequence[str] = BUILTIN_NORMS,
    acts: Sequence[str] = BUILTIN_ACTS,
    block_options: Mapping[str, JSONScalar] | None = None,
) -> ResNetSpec:
    """Small valid specs (1 to 3 stages of 1 or 2 blocks, widths 1 to 6 that never shrink, so
    option A fits) over the given registered names, with drop path and dilation.
    ``block_options=None`` draws them with :func:`block_options`; ``"relu"`` is used where no
    drawn activation fits the block and stem."""
    blocks, stems = _names("blocks", blocks), _names("stems", stems)
    shortcuts, norms = _names("shortcuts", shortcuts), _names("norms", norms)
    acts = _names("acts", acts)
    block = draw(st.sampled_from(blocks))
    block_cls = BLOCKS.get(block)
    shortcut = draw(st.sampled_from(shortcuts))
    residual = SHORTCUTS.get(shortcut).adds_shortcut
    num_stages = draw(st.integers(1, 3))
    # Only deep stems to draw from: the first stage must leave room for an even stem width.
    narrowest = 2 if all(stem == _DEEP_STEM for stem in stems) else 1
    widths = sorted(
        draw(st.lists(st.integers(narrowest, 6), min_size=num_stages, max_size=num_stages))
    )
    dilations = st.sampled_from((1, 1, 2) if takes_keyword(block_cls, "dilation") else (1,))
    stages = tuple(
        StageSpec(draw(st.integers(1, 2)), width, draw(st.integers(1, 2)), draw(dilations))
        for width in widths
    )
    # Option A cannot shrink channels: the stem may be at most as wide as the first output.
    limit = widths[0] * block_cls.expansion
    stem = draw(st.sampled_from(stems))
    if stem == _DEEP_STEM and limit < 2:
        others = [s for s in stems if s != _DEEP_STEM]
        stem = "imagenet" if "imagenet" in others else others[0]
    stem_channels = draw(st.integers(1, limit))
    if stem == _DEEP_STEM:
        stem_channels = max(2, stem_channels - stem_channels % 2)
    # Drop path needs a shortcut to fall back on; build() refuses it for plain networks.
    drop_path_rate = 0.0
    if residual and takes_keyword(block_cls, "drop_path"):
        drop_path_rate = draw(st.sampled_from((0.0, 0.0, 0.2, 0.5)))
    in_channels = draw(st.integers(1, 4))
    num_classes = draw(st.integers(1, 5))
    zero_init_residual = residual and draw(st.booleans())
    options = (
        draw(_draw_block_options(block, widths)) if block_options is None else dict(block_options)
    )
    takes_act = all(takes_keyword(cls, "act_layer") for cls in (block_cls, STEMS.get(stem)))
    usable_acts = [a for a in acts if takes_act or a == "relu"] or ["relu"]
    return ResNetSpec(
        stages=stages,
        block=block,
        shortcut=shortcut,
        stem=StemSpec(stem, stem_channels),
        in_channels=in_channels,
        num_classes=num_classes,
        zero_init_residual=zero_init_residual,
        block_options=options,
        norm=draw(st.sampled_from(norms)),
        act=draw(st.sampled_from(usable_acts)),
        drop_path_rate=drop_path_rate,
    )


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    blocks: Sequence[str] = BUILTIN_BLOCKS,
    stems: Sequence[str] = BUILTIN_STEMS,
    shortcuts: Sequence[str] = BUILTIN_SHORTCUTS,
    norms: Sequence[str] = BUILTIN_NORMS,
    acts: Sequence[str] = BUILTIN_ACTS,
    block_options: Mapping[str, JSONScalar] | None = None,
) -> Case:
    """A spec from :func:`specs` (same arguments), an image size from the smallest that fits
    (with group norm every feature map stays at least 2x2) up to 20, and a batch of 2 to 4."""
    spec = draw(
        specs(
            blocks=blocks,
            stems=stems,
            shortcuts=shortcuts,
            norms=norms,
            acts=acts,
            block_options=block_options,
        )
    )
    smallest = 1
    if spec.norm == "groupnorm":
        strides = (stage.stride for stage in spec.stages)
        smallest = 2 * STEMS.get(spec.stem.type).reduction * math.prod(strides)
    return Case(spec, draw(st.integers(smallest, max(20, smallest))), draw(st.integers(2, 4)))
