"""Keyword overrides -> spec: :class:`ModelOverrides`, the keywords every factory takes, and
:func:`apply_overrides`, which turns them into a changed :class:`~resnetlib.ResNetSpec`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import accumulate
from operator import mul
from typing import Any

from typing_extensions import TypedDict

from ..common import warn_caller
from ..nn.activations import ACTIVATIONS, as_registered_act
from ..nn.blocks import BLOCKS
from ..nn.norms import NORMS
from ..nn.stems import STEMS
from ..registry import Registry
from ..validate import check_int, check_keys
from .build import takes_keyword
from .spec import JSONScalar, ResNetSpec, StageSpec

__all__ = ["ModelOverrides", "apply_overrides", "overridden_spec"]


class ModelOverrides(TypedDict, total=False):
    """Keyword overrides every factory accepts; timm's names mean what they mean there.

    ``base_channels`` sets the stem's and first stage's width, each later stage doubling
    it; ``widths`` sets every stage's (the stem takes the first); give one or neither.
    ``width_multiplier`` multiplies every stage's width, not the stem's (Wide ResNets).
    ``base_width`` and ``cardinality`` set a bottleneck's ``width_per_group`` and
    ``groups``; ``stride_in_1x1`` moves its stride to the first 1x1. ``block_options`` are
    merged into the spec's, which stay when ``block`` is overridden (an option the block
    does not take raises ``ValueError``). ``norm`` and ``act`` take a registry name or a
    registered callable; ``output_stride`` (8 or 16 on the ImageNet layout) trades the last
    strides for dilation.
    """

    num_classes: int
    in_channels: int
    shortcut: str
    block: str
    stem: str
    base_channels: int
    widths: Sequence[int]
    width_multiplier: int
    base_width: int
    cardinality: int
    zero_init_residual: bool
    stride_in_1x1: bool
    block_options: Mapping[str, JSONScalar]
    norm: str | Callable[[int], Any]
    act: str | Callable[[], Any]
    drop_path_rate: float
    output_stride: int


OVERRIDE_KEYS = frozenset(ModelOverrides.__annotations__)
_COPIED = (
    "num_classes",
    "in_channels",
    "shortcut",
    "block",
    "zero_init_residual",
    "drop_path_rate",
)
# timm's keyword -> the block option it sets
_TIMM_BLOCK_OPTIONS = {"base_width": "width_per_group", "cardinality": "groups"}


def apply_overrides(spec: ResNetSpec, overrides: Mapping[str, Any], factory: str) -> ResNetSpec:
    """``spec`` with :class:`ModelOverrides` applied, as every factory does before
    [`build`][resnetlib.build] (which checks the block options); ``factory`` names the caller.

    Raises:
        TypeError: a keyword that is not an override (the message names ``factory``).
        ValueError: an override out of range, naming the field and what is allowed.
    """
    return overridden_spec(spec, overrides, factory)[0]


def overridden_spec(
    spec: ResNetSpec, overrides: Mapping[str, Any], factory: str
) -> tuple[ResNetSpec, Callable[[str], str | None]]:
    """:func:`apply_overrides`, and who set each block option (for ``build``'s messages)."""
    overrides = check_keys(
        f"{factory}()", overrides, OVERRIDE_KEYS, what="keyword arguments", error=TypeError
    )
    if "base_width" in overrides:
        _base_width_as_base_channels(overrides, overrides.get("block", spec.block), factory)
    changes: dict[str, Any] = {key: overrides[key] for key in _COPIED if key in overrides}
    if "norm" in overrides:
        changes["norm"] = _registered_name(NORMS, "norm", overrides["norm"], "register_norm")
    if "act" in overrides:
        act = as_registered_act(overrides["act"])
        changes["act"] = _registered_name(ACTIVATIONS, "act", act, "register_act")
    stem = spec.stem
    if "stem" in overrides:
        stem = replace(stem, type=overrides["stem"])
    stages = spec.stages
    if "base_channels" in overrides or "widths" in overrides:
        widths = _stage_widths(overrides, len(stages))
        stages = tuple(
            replace(stage, width=width) for stage, width in zip(stages, widths, strict=True)
        )
        stem = replace(stem, out_channels=widths[0])
    if "width_multiplier" in overrides:
        factor = check_int("width_multiplier", overrides["width_multiplier"])
        stages = tuple(replace(stage, width=stage.width * factor) for stage in stages)
    if "output_stride" in overrides:
        stages = _dilate(stages, STEMS.get(stem.type).reduction, overrides["output_stride"])
    options, origins = _block_options(spec, overrides, factory)
    return replace(spec, **changes, stages=stages, stem=stem, block_options=options), origins.get


def _base_width_as_base_channels(overrides: dict[str, Any], block: str, factory: str) -> None:
    """``base_width`` on a block without a width per group: its old meaning, deprecated."""
    if block not in BLOCKS or takes_keyword(BLOCKS.get(block), "width_per_group"):
        return
    warn_caller(
        f"{factory}(base_width={overrides['base_width']!r}) with block {block!r}: base_width "
        "is timm's and torchvision's width per group of a bottleneck; as the stem's and "
        "first stage's width it is deprecated and will be refused: use base_channels"
    )
    if "base_channels" in overrides:
        raise ValueError("give base_channels, not base_width as well")
    overrides["base_channels"] = overrides.pop("base_width")


def _stage_widths(overrides: Mapping[str, Any], count: int) -> tuple[int, ...]:
    if "base_channels" in overrides and "widths" in overrides:
        raise ValueError("give base_channels or widths, not both")
    if "base_channels" in overrides:
        base = check_int("base_channels", overrides["base_channels"])
        return tuple(base * 2**i for i in range(count))
    values = overrides["widths"]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"widths must be a non-empty sequence of ints >= 1; got {values!r}")
    widths = tuple(check_int(f"widths[{i}]", v) for i, v in enumerate(values))
    if len(widths) != count:
        raise ValueError(f"widths needs one entry per stage ({count}); got {len(widths)}")
    return widths


def _block_options(
    spec: ResNetSpec, overrides: Mapping[str, Any], factory: str
) -> tuple[dict[str, JSONScalar], dict[str, str]]:
    """The spec's block options with the overrides' merged in, and where each came from."""
    options = dict(spec.block_options)
    origins = {
        option: f"{factory}'s spec sets it (block_options={dict(spec.block_options)}): pick a "
        "block that takes it, or build from a spec without it"
        for option in options
    }
    extra = overrides.get("block_options", {})
    if not isinstance(extra, Mapping):
        raise ValueError(f"block_options must be a dict; got {type(extra).__name__}")
    options.update(extra)
    origins.update(dict.fromkeys(extra, f"{factory}(block_options={dict(extra)}) passed it"))
    if "stride_in_1x1" in overrides:
        value = overrides["stride_in_1x1"]
        if not isinstance(value, bool):
            raise ValueError(f"stride_in_1x1 must be a bool; got {value!r}")
        options["stride_in_1x1"] = value
        origins["stride_in_1x1"] = (
            f"{factory}(stride_in_1x1={value}) passed it; it moves a bottleneck's stride, so "
            "use it with block='bottleneck' or another block that takes it"
        )
    for keyword, option in _TIMM_BLOCK_OPTIONS.items():
        if keyword not in overrides:
            continue
        value = check_int(keyword, overrides[keyword])
        if options.get(option, value) != value and option in extra:
            raise ValueError(
                f"{keyword}={value} and block_options[{option!r}]={options[option]!r} "
                f"disagree; give one ({keyword} is timm's name for {option})"
            )
        options[option] = value
        origins[option] = (
            f"{factory}({keyword}={value}) passed it, timm's name for the option {option!r} "
            "of bottleneck blocks"
        )
    return options, origins


def _registered_name(registry: Registry[Any], key: str, value: object, register: str) -> str:
    """A spec stores names: map a registered callable back to its name."""
    if isinstance(value, str):
        return value
    name = registry.name_of(value)
    if name is None:
        raise ValueError(
            f"{key}={value!r} is not registered, so a spec could not name it; register it "
            f"first with resnetlib.nn.{register}('my_{key}', ...) and pass the name. "
            f"Registered: {', '.join(registry)}"
        )
    return name


def _dilate(
    stages: tuple[StageSpec, ...], stem_reduction: int, output_stride: object
) -> tuple[StageSpec, ...]:
    """Replace the strides that would exceed ``output_stride`` with dilation (DeepLab)."""
    target = check_int("output_stride", output_stride)
    reachable = list(accumulate((stage.stride for stage in stages), mul, initial=stem_reduction))
    if target not in reachable:
        raise ValueError(
            f"output_stride must be one of {sorted(set(reachable))} for this layout; got {target}"
        )
    net, dilation, result = stem_reduction, 1, []
    for stage in stages:
        if net * stage.stride > target:
            dilation *= stage.stride
            result.append(replace(stage, stride=1, dilation=dilation))
        else:
            net *= stage.stride
            result.append(replace(stage, dilation=dilation))
    return tuple(result)
