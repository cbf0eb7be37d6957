"""Conformance checks for stems: :func:`check_stem`."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import nn

from ..core.build import takes_keyword
from ..core.spec import ResNetSpec, StageSpec, StemSpec
from ..nn.activations import ACTIVATIONS
from ..nn.blocks import NormLayer
from ..nn.norms import NORMS
from ..nn.stems import STEMS, Stem
from ..validate import is_int
from .checks import (
    Check,
    ConformanceReport,
    CountingAct,
    NotApplicableError,
    ViolationError,
    all_close,
    check_batch_independence,
    check_gradients,
    check_round_trip,
    check_spec_round_trip,
    check_state_dict_round_trip,
    missing_keywords,
    registered_name,
    resolve_subject,
    run_checks,
    seeded,
    seeded_randn,
)

__all__ = ["STEM_CHECKS", "check_stem"]


_STEM_OUT = 8
_RESERVED = re.compile(r"layer\d+|avgpool|fc|norm")


@dataclass
class _StemSubject:
    cls: type[Stem]
    device: torch.device
    seed: int

    def make(
        self,
        *,
        in_channels: int = 3,
        norm_layer: NormLayer = nn.BatchNorm2d,
        seed_offset: int = 0,
        **extra: object,
    ) -> Stem:
        torch.manual_seed(self.seed + seed_offset)
        make_stem: Callable[..., Stem] = self.cls
        stem = make_stem(
            in_channels=in_channels, out_channels=_STEM_OUT, norm_layer=norm_layer, **extra
        )
        return stem.to(self.device)

    def size(self) -> tuple[int, int]:
        """A non-square input the stem's reduction divides: 8 x 12 output pixels."""
        return 8 * self.cls.reduction, 12 * self.cls.reduction

    def input(self, *, in_channels: int = 3, batch: int = 2, seed: int = 1) -> torch.Tensor:
        height, width = self.size()
        return seeded_randn((batch, in_channels, height, width), self.seed + seed, self.device)

    def warm_up(self, stem: Stem) -> None:
        stem.train()
        with torch.no_grad():
            for step in range(3):
                stem(self.input(batch=4, seed=50 + step) * 2.0 + 0.5)


def _stem_interface(subject: _StemSubject) -> str:
    cls = subject.cls
    if not (isinstance(cls, type) and issubclass(cls, Stem)):
        raise ViolationError(f"{cls!r} is not a Stem subclass")
    for attribute in ("reduction", "default_image_size"):
        value = getattr(cls, attribute)
        if not is_int(value) or value < 1:
            raise ViolationError(f"{attribute} must be an int >= 1; got {value!r}")
    missing = missing_keywords(cls, ("in_channels", "out_channels", "norm_layer"))
    if missing:
        raise ViolationError(
            f"the constructor does not take {missing}; build() passes in_channels, "
            "out_channels and norm_layer as keywords"
        )
    return f"a Stem, reduction {cls.reduction}, default_image_size {cls.default_image_size}"


def _stem_shapes(subject: _StemSubject) -> str:
    height, width = subject.size()
    reduction = subject.cls.reduction
    expected_side = (height // reduction, width // reduction)
    for in_channels in (1, 3):
        stem = subject.make(in_channels=in_channels)
        if (stem.in_channels, stem.out_channels) != (in_channels, _STEM_OUT):
            raise ViolationError(
                f"the stem reports in_channels={stem.in_channels}, "
                f"out_channels={stem.out_channels}; built with {in_channels}, {_STEM_OUT}"
            )
        for mode in ("train", "eval"):
            with torch.no_grad():
                out = stem.train(mode == "train")(subject.input(in_channels=in_channels))
            expected = (2, _STEM_OUT, *expected_side)
            if tuple(out.shape) != expected:
                raise ViolationError(
                    f"{in_channels}x{height}x{width} input, {mode} mode: output shape "
                    f"{tuple(out.shape)}, expected {expected} (out_channels {_STEM_OUT}, "
                    f"reduction {reduction})"
                )
    out_height, out_width = expected_side
    return (
        f"{height}x{width} inputs with 1 and 3 channels give {_STEM_OUT} channels of "
        f"{out_height}x{out_width}"
    )


def _stem_names(subject: _StemSubject) -> str:
    names = [name for name, _ in subject.make().named_children()]
    if not names:
        raise ViolationError("the stem has no children")
    clashes = [name for name in names if _RESERVED.fullmatch(name)]
    if clashes:
        raise ViolationError(
            f"child names {clashes} clash with the model's own modules "
            "(layer1..layerN, avgpool, fc, norm)"
        )
    return f"children {', '.join(names)}"


def _stem_gradients(subject: _StemSubject) -> str:
    stem = subject.make().train()
    count = check_gradients(stem, stem(subject.input()), "train mode")
    return f"all {count} parameters get a finite gradient in train mode"


def _stem_norm_layer(subject: _StemSubject) -> str:
    for norm in ("groupnorm", "frozen_batchnorm"):
        stem = subject.make(norm_layer=NORMS.get(norm))
        stray = [n for n, m in stem.named_modules() if type(m) is nn.BatchNorm2d]
        if stray:
            raise ViolationError(
                f"with norm_layer={norm!r} the stem still has nn.BatchNorm2d at {stray}: "
                "build every norm with norm_layer"
            )
        with torch.no_grad():
            stem(subject.input())
    return "builds and runs with norm_layer groupnorm, frozen_batchnorm"


def _stem_act_layer(subject: _StemSubject) -> str:
    if not takes_keyword(subject.cls, "act_layer"):
        raise NotApplicableError(
            "the stem does not take 'act_layer', so specs with an activation other than "
            "'relu' cannot use it"
        )
    reference = subject.make()
    act_layer = CountingAct()
    stem = subject.make(act_layer=act_layer)
    if act_layer.made == 0:
        # A stem may have no activation at all (pre-activation stems): then nothing is owed.
        builtin = tuple({type(ACTIVATIONS.get(name)()) for name in ACTIVATIONS} - {nn.Identity})
        stray = [name for name, module in stem.named_modules() if isinstance(module, builtin)]
        if stray:
            raise ViolationError(
                f"the stem never calls act_layer but has activations at {stray}: build its "
                "activations with it"
            )
        return "the stem has no activation (it takes act_layer and needs none)"
    stem.load_state_dict(reference.state_dict())
    x = subject.input()
    with torch.no_grad():
        if all_close(reference.eval()(x), stem.eval()(x)):
            raise ViolationError(
                "act_layer=SiLU does not change the output: the stem makes the activation but "
                "does not use it"
            )
    return f"act_layer made {act_layer.made} activation(s), and they are used"


def _stem_batch_independence(subject: _StemSubject) -> str:
    stem = subject.make()
    subject.warm_up(stem)
    check_batch_independence(stem, subject.input(batch=3), "after warm-up")
    return "eval outputs are per sample"


def _stem_serialization(subject: _StemSubject) -> str:
    stem = subject.make()
    subject.warm_up(stem)
    x = subject.input()
    check_round_trip(stem, x, "eval mode")
    check_state_dict_round_trip(stem, subject.make(seed_offset=1), x)
    return "state dict, pickle and torch.save round trips compute the same output"


def _stem_spec(subject: _StemSubject) -> str:
    name, registered = registered_name(STEMS, subject.cls, "_conformance_stem_")
    size = 8 * subject.cls.reduction
    try:
        spec = ResNetSpec(
            stages=(StageSpec(1, 8), StageSpec(1, 16, stride=2)),
            stem=StemSpec(name, _STEM_OUT),
            num_classes=3,
        )
        check_spec_round_trip(spec, subject.seed, subject.device, size)
        act = "silu" if takes_keyword(subject.cls, "act_layer") else "relu"
        variant = ResNetSpec(
            stages=spec.stages, stem=spec.stem, num_classes=3, norm="groupnorm", act=act
        )
        check_spec_round_trip(variant, subject.seed, subject.device, size)
    finally:
        if registered:
            STEMS.unregister(name)
    return f"builds as {name!r}, round-trips through JSON and rebuilds equal; also with " + (
        f"norm 'groupnorm', act {act!r}"
    )


_STEM_CHECKS: dict[str, Check[_StemSubject]] = {
    "interface": _stem_interface,
    "shapes": _stem_shapes,
    "names": _stem_names,
    "gradients": _stem_gradients,
    "norm_layer": _stem_norm_layer,
    "act_layer": _stem_act_layer,
    "batch_independence": _stem_batch_independence,
    "serialization": _stem_serialization,
    "spec": _stem_spec,
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
    """Run the stem checks (:data:`STEM_CHECKS`) against a stem class or registered name.

    The output must have ``out_channels`` channels and be ``reduction`` times smaller than
    an input whose sides ``reduction`` divides.
    """
    cls, label = resolve_subject(STEMS, "stem", stem)
    torch_device = torch.device(device)
    with seeded(torch_device):
        report = run_checks(
            label, _StemSubject(cls, torch_device, seed), _STEM_CHECKS, only, "interface"
        )
    if raise_on_failure:
        report.raise_for_failures()
    return report
