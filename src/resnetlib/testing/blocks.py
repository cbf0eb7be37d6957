"""Conformance checks for residual blocks: :func:`check_block`."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..core.build import ALWAYS_PASSED, check_block_options
from ..core.spec import JSONScalar
from ..nn.blocks import BLOCKS, NormLayer, ResidualBlock, validate_block
from ..nn.drop_path import DropPath
from ..nn.shortcuts import SHORTCUTS
from .checks import (
    RELATIONS,
    SIZES,
    Check,
    ConformanceReport,
    ShapeCase,
    Subject,
    ViolationError,
    act_layer,
    all_close,
    batch_independence,
    channel_cases,
    check_interface,
    check_shapes,
    check_subject,
    gradients,
    max_abs_diff,
    norm_layer,
    parameters_without_gradient,
    pickled,
    raised_at,
    shortcut_module,
    spec,
    state_dict,
)

__all__ = ["BLOCK_CHECKS", "check_block"]


_WIDTH = 4


@dataclass
class _BlockSubject(Subject[ResidualBlock, ResidualBlock]):
    kind = "block"
    registry = BLOCKS
    optional = ("act_layer", "drop_path", "dilation")

    options: dict[str, JSONScalar] = field(default_factory=dict)

    @property
    def out_channels(self) -> int:
        return _WIDTH * self.cls.expansion

    def construct(
        self, case: ShapeCase, norm_layer: NormLayer, *, zero_shortcut: bool = False, **extra: Any
    ) -> ResidualBlock:
        """Construct as build() does; ``zero_shortcut=True``: a shortcut that adds zeros."""
        strategy = SHORTCUTS.get(case.shortcut)
        downsample = shortcut_module(strategy, case, self.out_channels, norm_layer)
        residual = strategy.adds_shortcut
        if zero_shortcut:
            downsample, residual = _ZeroShortcut(self.out_channels, case.stride), True
        make_block: Callable[..., ResidualBlock] = self.cls
        block = make_block(
            in_channels=case.in_channels,
            width=_WIDTH,
            stride=case.stride,
            downsample=downsample,
            residual=residual,
            norm_layer=norm_layer,
            **extra,
            **self.options,
        )
        block.init_weights()
        return block

    def cases(self) -> list[ShapeCase]:
        """Every stride and channel change, with every registered strategy that serves it."""
        found = []
        for case, name in itertools.product(channel_cases(self.out_channels), SHORTCUTS):
            with suppress(Exception):  # e.g. option A cannot shrink channels: not a case
                shortcut_module(SHORTCUTS.get(name), case, self.out_channels, nn.BatchNorm2d)
                found.append(replace(case, shortcut=name))
        return found

    def sample_cases(self) -> list[ShapeCase]:
        return [c for c in self.cases() if c.stride == 2 or c.in_channels == self.out_channels]

    def residual_cases(self) -> list[ShapeCase]:
        return [c for c in self.cases() if SHORTCUTS.get(c.shortcut).adds_shortcut]

    def example(self) -> ShapeCase:
        return ShapeCase(self.out_channels // 2, 2, "B")

    def spec_changes(self, name: str) -> dict[str, Any]:
        return {"block": name, "block_options": self.options, "zero_init_residual": True}


class _ZeroShortcut(nn.Module):
    """A shortcut that contributes nothing: zeros of the block's output shape."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.channels, self.stride = channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = ((side + self.stride - 1) // self.stride for side in x.shape[2:])
        return x.new_zeros((x.shape[0], self.channels, height, width))


def _block_out_channels(subject: _BlockSubject) -> str:
    case = ShapeCase(subject.out_channels, 1, "none")  # plain: no addition to fail first
    block, expected = subject.make(case), subject.out_channels
    rule = f"width {_WIDTH} x expansion {subject.cls.expansion} = {expected}"
    if block.out_channels != expected:
        raise ViolationError(f"out_channels is {block.out_channels}, but {rule}")
    with torch.no_grad():
        channels = block.eval()(subject.input(case)).shape[1]
    if channels != expected:
        raise ViolationError(f"the output has {channels} channels, but {rule}")
    return rule


def _block_shapes(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        check_shapes(subject, case, subject.make(case))
    shortcuts = sorted({c.shortcut for c in cases})
    return (
        f"{len(cases)} cases: stride 1 and 2, {', '.join(RELATIONS)}, "
        f"shortcuts {', '.join(shortcuts)}; inputs {' and '.join(f'{s}x{s}' for s in SIZES)}"
    )


def _branch_dropped(block: ResidualBlock) -> ResidualBlock:
    """A copy whose residual branch is dropped for every sample, even in eval mode."""
    dropped = copy.deepcopy(block)
    dropped.drop_path = DropPath(1.0)
    return dropped


def _block_zero_init(subject: _BlockSubject) -> str:
    cases = subject.residual_cases()
    for case in cases:
        where = subject.describe(case)
        block = subject.warmed(case)
        dropped = _branch_dropped(block)
        block.zero_init_last()
        x = subject.input(case)
        for mode in ("train", "eval"):
            block.train(mode == "train")
            dropped.train(mode == "train")
            dropped.drop_path.train()  # type: ignore[union-attr]
            with raised_at(f"{where}, {mode} mode"), torch.no_grad():
                zeroed, without_branch = block(x), dropped(x)
            if not all_close(zeroed, without_branch):
                raise ViolationError(
                    f"after zero_init_last() the output differs from the output with the "
                    f"residual branch removed ({where}, {mode} mode; max abs difference "
                    f"{max_abs_diff(zeroed, without_branch):.3g}): zero the scale of the "
                    "branch's last norm, and join branch and shortcut with self.add_shortcut"
                )
    return f"the zero-initialized block equals its shortcut path, in {len(cases)} cases"


def _block_shortcut(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        where = subject.describe(case)
        with raised_at(where):
            block = subject.warmed(case)
            block.eval()
            without = subject.make(case, zero_shortcut=True).eval()
            without.load_state_dict(block.state_dict(), strict=False)
            calls: list[object] = []  # the downsample module's forward calls
            if isinstance(block.downsample, nn.Module):
                block.downsample.register_forward_hook(lambda *_, calls=calls: calls.append(_))
            x = subject.input(case)
            with torch.no_grad():
                same = all_close(block(x), without(x))
        if block.residual:
            if isinstance(block.downsample, nn.Module) and not calls:
                raise ViolationError(
                    f"the block never calls its downsample module ({where}): join branch and "
                    "shortcut with self.add_shortcut(out, x)"
                )
            if same:
                raise ViolationError(
                    f"the output is the same when the shortcut adds zeros ({where}): the block "
                    "ignores its shortcut; join branch and shortcut with self.add_shortcut"
                )
        elif not same:
            raise ViolationError(
                f"with residual=False (plain) the output differs from the branch alone "
                f"({where}): a plain block must add no shortcut; use self.add_shortcut"
            )
    return f"the shortcut is added when residual=True and only then, in {len(cases)} cases"


def _block_drop_path(subject: _BlockSubject) -> str:
    subject.requires("drop_path", "drop_path_rate > 0")
    residual = subject.residual_cases()
    cases = [c for c in residual if c.shortcut in ("B", "C")] or residual[:2]
    for case in cases:
        where = subject.describe(case)
        reference = subject.warmed(case)
        state = reference.state_dict()
        x = subject.input(case)
        half = subject.make(case, drop_path=0.5)
        half.load_state_dict(state)
        with torch.no_grad():
            if not all_close(half.eval()(x), reference.eval()(x)):
                raise ViolationError(
                    f"drop_path=0.5 changes the eval-mode output ({where}): drop path must "
                    "be the identity in eval mode"
                )
        everything = subject.make(case, drop_path=1.0)
        everything.load_state_dict(state)
        branch_dropped = _branch_dropped(reference)
        with torch.no_grad():
            dropped, expected = everything.train()(x), branch_dropped.train()(x)
        if not all_close(dropped, expected):
            raise ViolationError(
                f"drop_path=1.0 in train mode does not drop the branch ({where}; max abs "
                f"difference to the shortcut path {max_abs_diff(dropped, expected):.3g}): "
                "pass drop_path to super().__init__ and join with self.add_shortcut"
            )
        lost = sorted(
            set(parameters_without_gradient(half.train(), half(x)))
            - set(parameters_without_gradient(reference.train(), reference(x)))
        )
        if lost:
            raise ViolationError(
                f"with drop_path=0.5 in train mode {lost} get no gradient ({where}): scale "
                "the branch per sample instead of skipping it (DDP needs every gradient)"
            )
    return "identity in eval mode; rate 1.0 in train mode leaves the shortcut path; gradients"


def _block_dilation(subject: _BlockSubject) -> str:
    subject.requires("dilation", "a stage dilation > 1")
    same = ShapeCase(subject.out_channels, 1, "B")
    plain = subject.make(same)
    dilated = subject.make(same, dilation=2)
    dilated.load_state_dict(plain.state_dict())
    x = subject.input(same)
    with torch.no_grad():
        y, y_dilated = plain.eval()(x), dilated.eval()(x)
    if y_dilated.shape != x.shape:
        raise ViolationError(
            f"dilation=2 at stride 1 changes the size: input {tuple(x.shape)}, output "
            f"{tuple(y_dilated.shape)}: pad 3x3 convolutions by the dilation"
        )
    if all_close(y, y_dilated):
        raise ViolationError(
            "dilation=2 does not change the output: pass it to the 3x3 convolutions"
        )
    strided = subject.example()
    block = subject.make(strided, dilation=2)
    with torch.no_grad():
        shape = tuple(block.eval()(subject.input(strided)).shape)
    if shape != (expected := subject.expected_shape(strided, 8)):
        raise ViolationError(f"dilation=2 at stride 2 gives shape {shape}, expected {expected}")
    return "dilation 2 keeps the size at stride 1, halves it at stride 2, and is used"


def _block_interface(subject: _BlockSubject) -> str:
    cls = subject.cls
    validate_block(cls.__name__, cls, run=False)  # the shape checks run it
    check_interface(cls, ResidualBlock, ("weighted_layers",), ALWAYS_PASSED)
    check_block_options(cls.__name__, cls, subject.options)
    layers = cls.weighted_layers
    return f"a concrete ResidualBlock, expansion {cls.expansion}, weighted_layers {layers}"


_BLOCK_CHECKS: dict[str, Check[_BlockSubject]] = {
    "interface": _block_interface,
    "out_channels": _block_out_channels,
    "shapes": _block_shapes,
    "gradients": gradients,
    "zero_init": _block_zero_init,
    "shortcut": _block_shortcut,
    "drop_path": _block_drop_path,
    "dilation": _block_dilation,
    "norm_layer": norm_layer,
    "act_layer": act_layer,
    "batch_independence": batch_independence,
    "state_dict": state_dict,
    "pickle": pickled,
    "spec": spec,
}
BLOCK_CHECKS: tuple[str, ...] = tuple(_BLOCK_CHECKS)
"""The names of :func:`check_block`'s checks, in the order they run."""


def check_block(
    block: str | type[ResidualBlock],
    *,
    block_options: Mapping[str, JSONScalar] | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    only: Collection[str] | None = None,
    raise_on_failure: bool = False,
) -> ConformanceReport:
    """Run the block checks (:data:`BLOCK_CHECKS`) against a block class or registered name,
    ``block_options`` in every construction. ``only`` runs a subset, a name or names
    ("interface" always runs first). An unregistered class is registered for the "spec" check
    under a temporary name."""
    args = (device, seed, only, raise_on_failure)
    return check_subject(
        _BlockSubject, block, _BLOCK_CHECKS, *args, options=dict(block_options or {})
    )
