"""Conformance checks for stems: :func:`check_stem`."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..core.model import stem_name_clashes
from ..core.spec import StemSpec
from ..nn.blocks import NormLayer
from ..nn.stems import STEMS, Stem
from .checks import (
    Check,
    ConformanceReport,
    ShapeCase,
    Subject,
    ViolationError,
    act_layer,
    batch_independence,
    check_interface,
    check_shapes,
    check_subject,
    gradients,
    norm_layer,
    serialization,
    spec,
)

__all__ = ["STEM_CHECKS", "check_stem"]


@dataclass
class _StemSubject(Subject[Stem, Stem]):
    kind = "stem"
    registry = STEMS
    optional = ("act_layer",)
    stride_name = "reduction"
    sizes = (8,)
    may_lack_activation = True  # pre-activation stems
    channels: int = 8  # the stems' out_channels; "shapes" checks a second width too

    @property
    def out_channels(self) -> int:
        return self.channels

    def construct(self, case: ShapeCase, norm_layer: NormLayer, **extra: Any) -> Stem:
        make_stem: Callable[..., Stem] = self.cls
        return make_stem(
            in_channels=case.in_channels,
            out_channels=self.out_channels,
            norm_layer=norm_layer,
            **extra,
        )

    def cases(self) -> list[ShapeCase]:
        return [ShapeCase(1, self.cls.reduction), ShapeCase(3, self.cls.reduction)]

    def sides(self, size: int) -> tuple[int, int]:
        """A non-square input the stem's reduction divides: 8 x 12 output pixels."""
        return 8 * self.cls.reduction, 12 * self.cls.reduction

    def describe(self, case: ShapeCase, size: int | None = None) -> str:
        height, width = self.sides(8)
        return f"{case.in_channels}x{height}x{width} input"

    def spec_changes(self, name: str) -> dict[str, Any]:
        return {"stem": StemSpec(name, self.out_channels)}


def _stem_interface(subject: _StemSubject) -> str:
    cls, keywords = subject.cls, ("in_channels", "out_channels", "norm_layer")
    check_interface(cls, Stem, ("reduction", "default_image_size"), keywords)
    return f"a Stem, reduction {cls.reduction}, default_image_size {cls.default_image_size}"


def _stem_shapes(subject: _StemSubject) -> str:
    widths = (subject.out_channels, 2 * subject.out_channels)  # two: none is hard-coded
    for each in (replace(subject, channels=out) for out in widths):
        for case in each.cases():
            stem = each.make(case)
            if (stem.in_channels, stem.out_channels) != (case.in_channels, each.out_channels):
                raise ViolationError(
                    f"the stem reports in_channels={stem.in_channels}, out_channels="
                    f"{stem.out_channels}; built with {case.in_channels}, {each.out_channels}"
                )
            check_shapes(each, case, stem)
    (height, width), sides = subject.sides(8), subject.expected_shape(subject.example(), 8)[2:]
    return (
        f"{height}x{width} inputs with 1 and 3 channels give {' and '.join(map(str, widths))} "
        f"channels (as built) of {'x'.join(map(str, sides))}"
    )


def _stem_names(subject: _StemSubject) -> str:
    names = [name for name, _ in subject.make(subject.example()).named_children()]
    if not names:
        raise ViolationError("the stem has no children")
    clashes = stem_name_clashes(names)
    if clashes:
        raise ViolationError(
            f"child names {clashes} clash with the ResNet's own modules (layer1..layerN, "
            "avgpool, fc, norm) or attributes; rename them"
        )
    return f"children {', '.join(names)}"


_STEM_CHECKS: dict[str, Check[_StemSubject]] = {
    "interface": _stem_interface,
    "shapes": _stem_shapes,
    "names": _stem_names,
    "gradients": gradients,
    "norm_layer": norm_layer,
    "act_layer": act_layer,
    "batch_independence": batch_independence,
    "serialization": serialization,
    "spec": spec,
}
STEM_CHECKS: tuple[str, ...] = tuple(_STEM_CHECKS)
"""The names of :func:`check_stem`'s checks, in the order they run."""


def check_stem(
    stem: str | type[Stem],
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    only: Collection[str] | None = None,
    raise_on_failure: bool = False,
) -> ConformanceReport:
    """Run the stem checks (:data:`STEM_CHECKS`) against a stem class or registered name: the
    output must have ``out_channels`` channels, ``reduction`` times smaller than the input."""
    return check_subject(_StemSubject, stem, _STEM_CHECKS, device, seed, only, raise_on_failure)
