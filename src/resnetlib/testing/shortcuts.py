"""Conformance checks for shortcut strategies: :func:`check_shortcut`."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..nn.blocks import NormLayer
from ..nn.shortcuts import SHORTCUTS, ShortcutStrategy
from .checks import (
    RELATIONS,
    Check,
    ConformanceReport,
    NotApplicableError,
    ShapeCase,
    Subject,
    ViolationError,
    batch_independence,
    channel_cases,
    check_interface,
    check_shapes,
    check_subject,
    gradients,
    norm_layer,
    serialization,
    shortcut_module,
    spec,
)

__all__ = ["SHORTCUT_CHECKS", "check_shortcut"]


@dataclass
class _ShortcutSubject(Subject[ShortcutStrategy, nn.Module]):
    kind = "shortcut"
    registry = SHORTCUTS

    def construct(self, case: ShapeCase, norm_layer: NormLayer, **extra: Any) -> nn.Module:
        module = shortcut_module(self.cls, case, self.out_channels, norm_layer)
        if module is None:
            raise ViolationError(f"make() returned None for {self.describe(case)} this time")
        return module

    def cases(self) -> list[ShapeCase]:
        """Every case the strategy answers with a module (identity and refusals left out)."""
        found = []
        for case in channel_cases(self.out_channels):
            with suppress(ValueError):
                if shortcut_module(self.cls, case, self.out_channels, nn.BatchNorm2d) is not None:
                    found.append(case)
        if not found:
            raise NotApplicableError("the strategy makes no modules (identity only)")
        return found

    def spec_changes(self, name: str) -> dict[str, Any]:
        return {"shortcut": name, "zero_init_residual": self.cls.adds_shortcut}


def _shortcut_interface(subject: _ShortcutSubject) -> str:
    cls = subject.cls
    check_interface(cls, ShortcutStrategy)
    if not isinstance(cls.adds_shortcut, bool):
        raise ViolationError(f"adds_shortcut must be a bool; got {cls.adds_shortcut!r}")
    cls()  # build() instantiates strategies with no arguments
    return f"a concrete ShortcutStrategy, adds_shortcut={cls.adds_shortcut}"


def _shortcut_shapes(subject: _ShortcutSubject) -> str:
    served, refused = 0, []
    for case in channel_cases(subject.out_channels):
        where = subject.describe(case)
        keeps_shape = case.stride == 1 and case.in_channels == subject.out_channels
        try:
            module = shortcut_module(subject.cls, case, subject.out_channels, nn.BatchNorm2d)
        except ValueError:
            if keeps_shape:
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
            if subject.cls.adds_shortcut and not keeps_shape:
                raise ViolationError(
                    f"make() returned None (the identity) for {where}, where the shape changes"
                )
        elif not subject.cls.adds_shortcut:
            raise ViolationError(
                f"a plain strategy (adds_shortcut=False) made a module for {where}; blocks add "
                "nothing, so its parameters would get no gradient: return None"
            )
        elif not isinstance(module, nn.Module):
            raise ViolationError(f"make() returned {module!r} for {where}; expected a module")
        else:
            check_shapes(subject, case, module.to(subject.device))
        served += 1
    detail = f"serves {served} of {2 * len(RELATIONS)} cases"
    return detail + (f"; refuses (ValueError) {'; '.join(refused)}" if refused else "")


_SHORTCUT_CHECKS: dict[str, Check[_ShortcutSubject]] = {
    "interface": _shortcut_interface,
    "shapes": _shortcut_shapes,
    "gradients": gradients,
    "norm_layer": norm_layer,
    "batch_independence": batch_independence,
    "serialization": serialization,
    "spec": spec,
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
    args = (device, seed, only, raise_on_failure)
    return check_subject(_ShortcutSubject, strategy, _SHORTCUT_CHECKS, *args)
