"""Conformance checks for shortcut strategies: :func:`check_shortcut`."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..core.spec import ResNetSpec, StageSpec, StemSpec
from ..nn.blocks import NormLayer
from ..nn.norms import NORMS
from ..nn.shortcuts import SHORTCUTS, ShortcutStrategy
from .checks import (
    RELATIONS,
    SIZES,
    Check,
    ConformanceReport,
    NotApplicableError,
    ShapeCase,
    ViolationError,
    check_batch_independence,
    check_gradients,
    check_round_trip,
    check_spec_round_trip,
    check_state_dict_round_trip,
    registered_name,
    resolve_subject,
    run_checks,
    seeded,
    seeded_randn,
)

__all__ = ["SHORTCUT_CHECKS", "check_shortcut"]


_SHORTCUT_OUT = 8


def _shortcut_cases() -> Iterator[tuple[int, str, int]]:
    """``(stride, relation, in_channels)`` for every case a shortcut is checked on."""
    in_channels = {"in == out": _SHORTCUT_OUT, "in < out": 4, "in > out": 16}
    for stride, relation in itertools.product((1, 2), RELATIONS):
        yield stride, relation, in_channels[relation]


@dataclass
class _ShortcutSubject:
    cls: type[ShortcutStrategy]
    device: torch.device
    seed: int

    def served(self, norm_layer: NormLayer = nn.BatchNorm2d) -> list[tuple[ShapeCase, nn.Module]]:
        """Every case the strategy answers with a module (identity and refusals left out)."""
        found = []
        for stride, _relation, in_channels in _shortcut_cases():
            torch.manual_seed(self.seed)
            try:
                module = self.cls().make(
                    in_channels=in_channels,
                    out_channels=_SHORTCUT_OUT,
                    stride=stride,
                    norm_layer=norm_layer,
                )
            except ValueError:
                continue
            if module is not None:
                found.append((ShapeCase(in_channels, stride, "?"), module.to(self.device)))
        return found

    def input(
        self, case: ShapeCase, *, batch: int = 2, size: int = 8, seed: int = 1
    ) -> torch.Tensor:
        return seeded_randn((batch, case.in_channels, size, size), self.seed + seed, self.device)

    def warm_up(self, module: nn.Module, case: ShapeCase) -> None:
        module.train()
        with torch.no_grad():
            for step in range(3):
                module(self.input(case, batch=4, seed=50 + step) * 2.0 + 0.5)

    def modules(self, norm_layer: NormLayer = nn.BatchNorm2d) -> list[tuple[ShapeCase, nn.Module]]:
        """:meth:`served`, or not applicable when the strategy makes no modules at all."""
        served = self.served(norm_layer)
        if not served:
            raise NotApplicableError("the strategy makes no modules (identity only)")
        return served


def _describe_shortcut_case(case: ShapeCase) -> str:
    return f"stride {case.stride}, {case.in_channels} -> {_SHORTCUT_OUT} channels"


def _shortcut_interface(subject: _ShortcutSubject) -> str:
    cls = subject.cls
    if not (isinstance(cls, type) and issubclass(cls, ShortcutStrategy)):
        raise ViolationError(f"{cls!r} is not a ShortcutStrategy subclass")
    if inspect.isabstract(cls):
        raise ViolationError(f"{cls.__name__} leaves make() abstract")
    if not isinstance(cls.adds_shortcut, bool):
        raise ViolationError(f"adds_shortcut must be a bool; got {cls.adds_shortcut!r}")
    cls()  # build() instantiates strategies with no arguments
    return f"a concrete ShortcutStrategy, adds_shortcut={cls.adds_shortcut}"


def _shortcut_shapes(subject: _ShortcutSubject) -> str:
    served, refused = 0, []
    for stride, relation, in_channels in _shortcut_cases():
        case = ShapeCase(in_channels, stride, "?")
        where = _describe_shortcut_case(case)
        try:
            module = subject.cls().make(
                in_channels=in_channels,
                out_channels=_SHORTCUT_OUT,
                stride=stride,
                norm_layer=nn.BatchNorm2d,
            )
        except ValueError:
            if stride == 1 and relation == "in == out":
                raise ViolationError(
                    f"make() refuses {where}, the shape-preserving case every network has"
                ) from None
            refused.append(where)
            continue
        except Exception as error:
            raise ViolationError(
                f"make() raised {type(error).__name__} for {where}: {error}; raise ValueError "
                "for a shape the strategy cannot produce"
            ) from None
        if module is None:
            if subject.cls.adds_shortcut and (stride != 1 or relation != "in == out"):
                raise ViolationError(
                    f"make() returned None (the identity) for {where}, where the shape changes"
                )
            served += 1
            continue
        if not subject.cls.adds_shortcut:
            raise ViolationError(
                f"a plain strategy (adds_shortcut=False) made a module for {where}; blocks add "
                "nothing, so its parameters would get no gradient: return None"
            )
        if not isinstance(module, nn.Module):
            raise ViolationError(f"make() returned {module!r} for {where}; expected a module")
        module = module.to(subject.device)
        for mode, size in itertools.product(("train", "eval"), SIZES):
            module.train(mode == "train")
            with torch.no_grad():
                shape = tuple(module(subject.input(case, size=size)).shape)
            side = (size + stride - 1) // stride
            expected = (2, _SHORTCUT_OUT, side, side)
            if shape != expected:
                raise ViolationError(
                    f"{where}, {size}x{size} input, {mode} mode: output shape {shape}, "
                    f"expected {expected}"
                )
        served += 1
    detail = f"serves {served} of {2 * len(RELATIONS)} cases"
    return detail + (f"; refuses (ValueError) {'; '.join(refused)}" if refused else "")


def _shortcut_gradients(subject: _ShortcutSubject) -> str:
    served = subject.modules()
    for case, module in served:
        module.train()
        check_gradients(module, module(subject.input(case)), _describe_shortcut_case(case))
    return f"every parameter gets a finite gradient, in {len(served)} cases with a module"


def _shortcut_norm_layer(subject: _ShortcutSubject) -> str:
    served = subject.modules(norm_layer=NORMS.get("groupnorm"))
    for case, module in served:
        stray = [n for n, m in module.named_modules() if type(m) is nn.BatchNorm2d]
        if stray:
            raise ViolationError(
                f"with norm_layer='groupnorm' the module still has nn.BatchNorm2d at {stray} "
                f"({_describe_shortcut_case(case)}): build every norm with norm_layer"
            )
        with torch.no_grad():
            module(subject.input(case))
    return f"builds and runs with norm_layer groupnorm, in {len(served)} cases"


def _shortcut_batch_independence(subject: _ShortcutSubject) -> str:
    served = subject.modules()
    for case, module in served:
        subject.warm_up(module, case)
        check_batch_independence(
            module, subject.input(case, batch=3), _describe_shortcut_case(case)
        )
    return f"eval outputs are per sample, in {len(served)} cases"


def _shortcut_serialization(subject: _ShortcutSubject) -> str:
    case, module = max(subject.modules(), key=lambda item: item[0].stride)
    subject.warm_up(module, case)
    x = subject.input(case)
    check_round_trip(module, x, _describe_shortcut_case(case))
    torch.manual_seed(subject.seed + 1)
    other = subject.cls().make(
        in_channels=case.in_channels,
        out_channels=_SHORTCUT_OUT,
        stride=case.stride,
        norm_layer=nn.BatchNorm2d,
    )
    if other is None:
        raise ViolationError("make() returned None the second time it was called")
    check_state_dict_round_trip(module, other.to(subject.device), x)
    return "state dict, pickle and torch.save round trips compute the same output"


def _shortcut_spec(subject: _ShortcutSubject) -> str:
    name, registered = registered_name(SHORTCUTS, subject.cls, "_conformance_shortcut_")
    try:
        spec = ResNetSpec(
            stages=(StageSpec(1, 8), StageSpec(2, 16, stride=2)),
            shortcut=name,
            stem=StemSpec("cifar", 4),
            num_classes=3,
            zero_init_residual=subject.cls.adds_shortcut,
        )
        check_spec_round_trip(spec, subject.seed, subject.device, 8)
    finally:
        if registered:
            SHORTCUTS.unregister(name)
    return f"builds as {name!r}, round-trips through JSON and rebuilds equal"


_SHORTCUT_CHECKS: dict[str, Check[_ShortcutSubject]] = {
    "interface": _shortcut_interface,
    "shapes": _shortcut_shapes,
    "gradients": _shortcut_gradients,
    "norm_layer": _shortcut_norm_layer,
    "batch_independence": _shortcut_batch_independence,
    "serialization": _shortcut_serialization,
    "spec": _shortcut_spec,
}
SHORTCUT_CHECKS: tuple[str, ...] = tuple(_SHORTCUT_CHECKS)
"""The names of :func:`check_shortcut`'s checks, in the order they run."""


def check_shortcut(
    strategy: str | type[ShortcutStrategy],
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    only: Collection[str] | None = None,
    raise_on_failure: bool = False,
) -> ConformanceReport:
    """Run the shortcut checks (:data:`SHORTCUT_CHECKS`) against a strategy or its name."""
    cls, label = resolve_subject(SHORTCUTS, "shortcut", strategy)
    torch_device = torch.device(device)
    with seeded(torch_device):
        report = run_checks(
            label, _ShortcutSubject(cls, torch_device, seed), _SHORTCUT_CHECKS, only, "interface"
        )
    if raise_on_failure:
        report.raise_for_failures()
    return report
