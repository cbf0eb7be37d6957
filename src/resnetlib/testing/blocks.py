"""Conformance checks for residual blocks: :func:`check_block`."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..core.build import ALWAYS_PASSED, check_block_options, takes_keyword
from ..core.spec import JSONScalar, ResNetSpec, StageSpec, StemSpec
from ..nn.blocks import BLOCKS, NormLayer, ResidualBlock, validate_block
from ..nn.drop_path import DropPath
from ..nn.norms import NORMS
from ..nn.shortcuts import SHORTCUTS, ShortcutStrategy
from ..validate import is_int
from .checks import (
    RELATIONS,
    SIZES,
    Check,
    ConformanceReport,
    CountingAct,
    NotApplicableError,
    ShapeCase,
    ViolationError,
    all_close,
    check_batch_independence,
    check_gradients,
    check_round_trip,
    check_spec_round_trip,
    check_state_dict_round_trip,
    max_abs_diff,
    missing_keywords,
    parameters_without_gradient,
    raised_at,
    registered_name,
    resolve_subject,
    run_checks,
    seeded,
    seeded_randn,
)

__all__ = ["BLOCK_CHECKS", "check_block"]


_WIDTH = 4


@dataclass
class _BlockSubject:
    cls: type[ResidualBlock]
    options: dict[str, JSONScalar]
    device: torch.device
    seed: int

    @property
    def out_channels(self) -> int:
        return _WIDTH * self.cls.expansion

    def strategy(self, name: str) -> ShortcutStrategy:
        return SHORTCUTS.get(name)()

    def make(
        self,
        case: ShapeCase,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        seed_offset: int = 0,
        zero_shortcut: bool = False,
        **extra: object,
    ) -> ResidualBlock:
        """Construct as build() does: the strategy's downsample, then the block, then init.

        ``zero_shortcut=True`` makes a residual block whose shortcut contributes nothing.
        """
        torch.manual_seed(self.seed + seed_offset)
        strategy = self.strategy(case.shortcut)
        downsample = strategy.make(
            in_channels=case.in_channels,
            out_channels=self.out_channels,
            stride=case.stride,
            norm_layer=norm_layer,
        )
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
        return block.to(self.device)

    def cases(self) -> list[ShapeCase]:
        """Every stride and channel change, with every registered strategy that serves it."""
        out = self.out_channels
        found = []
        for stride, relation, shortcut in itertools.product((1, 2), RELATIONS, SHORTCUTS):
            in_channels = {"in == out": out, "in < out": out // 2, "in > out": 2 * out}[relation]
            try:
                self.strategy(shortcut).make(
                    in_channels=in_channels,
                    out_channels=out,
                    stride=stride,
                    norm_layer=nn.BatchNorm2d,
                )
            except Exception:  # e.g. option A cannot shrink channels: not this block's case
                continue
            found.append(ShapeCase(in_channels, stride, shortcut))
        return found

    def residual_cases(self) -> list[ShapeCase]:
        return [c for c in self.cases() if SHORTCUTS.get(c.shortcut).adds_shortcut]

    def input(
        self, case: ShapeCase, *, batch: int = 2, size: int = 8, seed: int = 1
    ) -> torch.Tensor:
        return seeded_randn((batch, case.in_channels, size, size), self.seed + seed, self.device)

    def warm_up(self, block: ResidualBlock, case: ShapeCase) -> None:
        """Give norms non-trivial running statistics, as training would."""
        block.train()
        with torch.no_grad():
            for step in range(3):
                block(self.input(case, batch=4, seed=50 + step) * 2.0 + 0.5)

    def expected_shape(self, case: ShapeCase, batch: int, size: int) -> tuple[int, ...]:
        side = (size + case.stride - 1) // case.stride
        return (batch, self.out_channels, side, side)

    def requires(self, keyword: str, why: str) -> None:
        if not takes_keyword(self.cls, keyword):
            raise NotApplicableError(
                f"the block does not take {keyword!r}, so specs with {why} cannot use it"
            )


class _ZeroShortcut(nn.Module):
    """A shortcut that contributes nothing: zeros of the block's output shape."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = ((side + self.stride - 1) // self.stride for side in x.shape[2:])
        return x.new_zeros((x.shape[0], self.channels, height, width))


def _block_interface(subject: _BlockSubject) -> str:
    cls = subject.cls
    validate_block(cls.__name__, cls, run=False)  # the shape checks run it
    layers = cls.weighted_layers
    if not is_int(layers) or layers < 1:
        raise ViolationError(
            f"'weighted_layers' must be an int >= 1 (weighted layers on the branch); got {layers!r}"
        )
    missing = missing_keywords(cls, ALWAYS_PASSED)
    if missing:
        raise ViolationError(
            f"the constructor does not take {missing}; build() passes "
            f"{', '.join(ALWAYS_PASSED)} as keywords"
        )
    check_block_options(cls.__name__, cls, subject.options)
    return f"a concrete ResidualBlock, expansion {cls.expansion}, layers {layers}"


def _block_out_channels(subject: _BlockSubject) -> str:
    case = ShapeCase(subject.out_channels, 1, "none")  # plain: no addition to fail first
    block = subject.make(case)
    expected = subject.out_channels
    if block.out_channels != expected:
        raise ViolationError(
            f"out_channels is {block.out_channels}, but width {_WIDTH} x expansion "
            f"{subject.cls.expansion} = {expected}"
        )
    with torch.no_grad():
        channels = block.eval()(subject.input(case)).shape[1]
    if channels != expected:
        raise ViolationError(
            f"the output has {channels} channels, but width {_WIDTH} x expansion "
            f"{subject.cls.expansion} = {expected}"
        )
    return f"width {_WIDTH} x expansion {subject.cls.expansion} = {expected}"


def _block_shapes(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        block = subject.make(case)
        for mode, size in itertools.product(("train", "eval"), SIZES):
            where = f"{case.describe(subject.out_channels)}, {size}x{size} input, {mode} mode"
            block.train(mode == "train")
            with raised_at(where), torch.no_grad():
                shape = tuple(block(subject.input(case, size=size)).shape)
            expected = subject.expected_shape(case, 2, size)
            if shape != expected:
                raise ViolationError(f"{where}: output shape {shape}, expected {expected}")
    shortcuts = sorted({c.shortcut for c in cases})
    return (
        f"{len(cases)} cases: stride 1 and 2, {', '.join(RELATIONS)}, "
        f"shortcuts {', '.join(shortcuts)}; inputs {' and '.join(f'{s}x{s}' for s in SIZES)}"
    )


def _block_gradients(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        where = case.describe(subject.out_channels)
        with raised_at(where):
            block = subject.make(case).train()
            check_gradients(block, block(subject.input(case)), where)
    return f"every parameter gets a finite gradient in train mode, in all {len(cases)} cases"


def _branch_dropped(block: ResidualBlock) -> ResidualBlock:
    """A copy whose residual branch is dropped for every sample, even in eval mode."""
    dropped = copy.deepcopy(block)
    dropped.drop_path = DropPath(1.0)
    return dropped


def _block_zero_init(subject: _BlockSubject) -> str:
    cases = subject.residual_cases()
    for case in cases:
        where = case.describe(subject.out_channels)
        block = subject.make(case)
        subject.warm_up(block, case)
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


class _CallCounter:
    """A forward hook that counts calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_: object) -> None:
        self.count += 1


def _block_shortcut(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        where = case.describe(subject.out_channels)
        with raised_at(where):
            block = subject.make(case)
            subject.warm_up(block, case)
            block.eval()
            # The same block, residual, with a shortcut that adds zeros.
            without = subject.make(case, zero_shortcut=True)
            without.load_state_dict(block.state_dict(), strict=False)
            without.eval()
            calls = _CallCounter()
            if isinstance(block.downsample, nn.Module):
                block.downsample.register_forward_hook(calls)
            x = subject.input(case)
            with torch.no_grad():
                same = all_close(block(x), without(x))
        if block.residual:
            if isinstance(block.downsample, nn.Module) and calls.count == 0:
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
    cases = [c for c in subject.residual_cases() if c.shortcut in ("B", "C")] or (
        subject.residual_cases()[:2]
    )
    for case in cases:
        where = case.describe(subject.out_channels)
        reference = subject.make(case)
        subject.warm_up(reference, case)
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
    out = subject.out_channels
    same = ShapeCase(out, 1, "B")
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
    strided = ShapeCase(out // 2, 2, "B")
    block = subject.make(strided, dilation=2)
    with torch.no_grad():
        shape = tuple(block.eval()(subject.input(strided)).shape)
    if shape != subject.expected_shape(strided, 2, 8):
        raise ViolationError(
            f"dilation=2 at stride 2 gives shape {shape}, expected "
            f"{subject.expected_shape(strided, 2, 8)}"
        )
    return "dilation 2 keeps the size at stride 1, halves it at stride 2, and is used"


def _block_norm_layer(subject: _BlockSubject) -> str:
    out = subject.out_channels
    checked = []
    for norm in ("groupnorm", "frozen_batchnorm"):
        norm_layer = NORMS.get(norm)
        for case in (ShapeCase(out, 1, "B"), ShapeCase(out // 2, 2, "B")):
            block = subject.make(case, norm_layer=norm_layer)
            stray = [n for n, m in block.named_modules() if type(m) is nn.BatchNorm2d]
            if stray:
                raise ViolationError(
                    f"with norm_layer={norm!r} the block still has nn.BatchNorm2d at "
                    f"{stray}: build every norm with norm_layer"
                )
            for mode in ("train", "eval"):
                with torch.no_grad():
                    shape = tuple(block.train(mode == "train")(subject.input(case)).shape)
                if shape != subject.expected_shape(case, 2, 8):
                    raise ViolationError(f"with norm_layer={norm!r} the output has shape {shape}")
        checked.append(norm)
    return f"builds and runs with norm_layer {', '.join(checked)}"


def _block_act_layer(subject: _BlockSubject) -> str:
    subject.requires("act_layer", "an activation other than 'relu'")
    case = ShapeCase(subject.out_channels // 2, 2, "B")
    reference = subject.make(case)
    act_layer = CountingAct()
    block = subject.make(case, act_layer=act_layer)
    if act_layer.made == 0:
        raise ViolationError("the block never calls act_layer: build its activations with it")
    block.load_state_dict(reference.state_dict())
    x = subject.input(case)
    with torch.no_grad():
        y, y_silu = reference.eval()(x), block.eval()(x)
    if y_silu.shape != y.shape:
        raise ViolationError(f"with act_layer=SiLU the output has shape {tuple(y_silu.shape)}")
    if all_close(y, y_silu):
        raise ViolationError(
            "act_layer=SiLU does not change the output: the block makes the activation but "
            "does not use it"
        )
    return f"act_layer made {act_layer.made} activation(s), and they are used"


def _block_batch_independence(subject: _BlockSubject) -> str:
    cases = [c for c in subject.cases() if c.stride == 2 or c.in_channels == subject.out_channels]
    for case in cases:
        where = case.describe(subject.out_channels)
        with raised_at(where):
            block = subject.make(case)
            subject.warm_up(block, case)
            check_batch_independence(block, subject.input(case, batch=3), where)
    return f"eval outputs are per sample, in {len(cases)} cases"


def _block_state_dict(subject: _BlockSubject) -> str:
    case = ShapeCase(subject.out_channels // 2, 2, "C")
    original = subject.make(case)
    subject.warm_up(original, case)
    check_state_dict_round_trip(original, subject.make(case, seed_offset=1), subject.input(case))
    return "a second instance loaded with strict=True computes the same output"


def _block_pickle(subject: _BlockSubject) -> str:
    case = ShapeCase(subject.out_channels // 2, 2, "C")
    block = subject.make(case)
    subject.warm_up(block, case)
    check_round_trip(block, subject.input(case), case.describe(subject.out_channels))
    return "pickle and torch.save copies compute the same output"


def _block_spec(subject: _BlockSubject) -> str:
    name, registered = registered_name(BLOCKS, subject.cls, "_conformance_block_")
    try:
        spec = ResNetSpec(
            stages=(StageSpec(1, _WIDTH), StageSpec(2, 2 * _WIDTH, stride=2)),
            block=name,
            shortcut="B",
            stem=StemSpec("cifar", 8),
            num_classes=3,
            zero_init_residual=True,
            block_options=subject.options,
        )
        check_spec_round_trip(spec, subject.seed, subject.device, 8)
        # The spec-level options reach the block only where it takes them.
        takes = {k: takes_keyword(subject.cls, k) for k in ("act_layer", "drop_path", "dilation")}
        options = ResNetSpec(
            stages=(
                StageSpec(1, _WIDTH),
                StageSpec(2, _WIDTH, stride=2, dilation=2 if takes["dilation"] else 1),
            ),
            block=name,
            shortcut="B",
            stem=StemSpec("cifar", 8),
            num_classes=3,
            block_options=subject.options,
            norm="groupnorm",
            act="silu" if takes["act_layer"] else "relu",
            drop_path_rate=0.2 if takes["drop_path"] else 0.0,
        )
        check_spec_round_trip(options, subject.seed, subject.device, 8)
    finally:
        if registered:
            BLOCKS.unregister(name)
    extras = "".join(f", {k}" for k, v in takes.items() if v)
    return (
        f"builds as {name!r}, round-trips through JSON and rebuilds equal; also with "
        f"norm 'groupnorm'{extras}"
    )


_BLOCK_CHECKS: dict[str, Check[_BlockSubject]] = {
    "interface": _block_interface,
    "out_channels": _block_out_channels,
    "shapes": _block_shapes,
    "gradients": _block_gradients,
    "zero_init": _block_zero_init,
    "shortcut": _block_shortcut,
    "drop_path": _block_drop_path,
    "dilation": _block_dilation,
    "norm_layer": _block_norm_layer,
    "act_layer": _block_act_layer,
    "batch_independence": _block_batch_independence,
    "state_dict": _block_state_dict,
    "pickle": _block_pickle,
    "spec": _block_spec,
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
    """Run the block checks (:data:`BLOCK_CHECKS`) against a block class or registered name.

    ``block_options`` are passed to every construction, as a spec's would be. ``only``
    runs a subset ("interface" always runs first). An unregistered class is registered
    under a temporary name for the "spec" check and unregistered afterwards.
    """
    cls, label = resolve_subject(BLOCKS, "block", block)
    torch_device = torch.device(device)
    subject = _BlockSubject(cls, dict(block_options or {}), torch_device, seed)
    with seeded(torch_device):
        report = run_checks(label, subject, _BLOCK_CHECKS, only, "interface")
    if raise_on_failure:
        report.raise_for_failures()
    return report
