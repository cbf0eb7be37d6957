"""Conformance checks for extenders: does a block, shortcut or stem keep the library's contracts?

:func:`check_block` runs every block property the library relies on (shapes at each stride
and channel change under every shortcut strategy, gradients, zero-init, drop path,
dilation, norm and activation options, batch independence, serialization and a spec round
trip) against any :class:`~resnetlib.ResidualBlock` subclass, registered or not, and
returns a :class:`ConformanceReport` naming each violated check with a readable reason.
:func:`check_shortcut` and :func:`check_stem` do the same for shortcut strategies and
stems. The checks are seeded and leave the caller's random state untouched; they run on
the CPU unless given a ``device``. They need nothing beyond PyTorch (no test framework).

:func:`fuzz_block` goes further on generated whole networks of a block; it needs
hypothesis (``pip install 'resnetlib[testing]'``), as does
:mod:`resnetlib.testing_strategies`, whose strategies it draws from.
"""

from __future__ import annotations

import copy
import inspect
import io
import itertools
import pickle
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import torch
from torch import nn

from .activations import ACTIVATIONS
from .blocks import BLOCKS, ResidualBlock, _validate_block
from .build import ALWAYS_PASSED, _check_block_options, build, takes_keyword
from .drop_path import DropPath
from .layers import NormLayer
from .norms import NORMS
from .registry import Registry
from .shortcuts import SHORTCUTS, ShortcutStrategy
from .spec import JSONScalar, ResNetSpec, StageSpec, StemSpec
from .stems import STEMS, Stem
from .validate import is_int

if TYPE_CHECKING:
    from .testing_strategies import Case

__all__ = [
    "BLOCK_CHECKS",
    "FUZZ_PROPERTIES",
    "SHORTCUT_CHECKS",
    "STEM_CHECKS",
    "CheckResult",
    "ConformanceError",
    "ConformanceReport",
    "check_block",
    "check_shortcut",
    "check_stem",
    "fuzz_block",
]

Status = Literal["passed", "failed", "skipped"]
S = TypeVar("S")


class ConformanceError(AssertionError):
    """Raised by :meth:`ConformanceReport.raise_for_failures`; the message lists every failure."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one named check: ``detail`` says what was checked, or why it failed."""

    name: str
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class ConformanceReport:
    """Every check run against one ``subject`` (for example ``"block 'basic' (BasicBlock)"``).

    ``report.ok`` is true when no check failed (skipped checks do not fail: they cover
    optional keywords the type does not take). ``str(report)`` is a readable summary.
    """

    subject: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    def names(self, status: Status) -> list[str]:
        """The names of the checks that ended with ``status``, in run order."""
        return [r.name for r in self.results if r.status == status]

    def __getitem__(self, name: str) -> CheckResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no check named {name!r}; ran: {', '.join(r.name for r in self.results)}")

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` listing every failed check; do nothing if none."""
        if self.failures:
            lines = [f"- {r.name}: {r.detail}" for r in self.failures]
            raise ConformanceError(
                f"{self.subject} failed {len(lines)} conformance check(s):\n" + "\n".join(lines)
            )

    def __str__(self) -> str:
        counts = ", ".join(
            f"{len(self.names(status))} {status}" for status in ("passed", "failed", "skipped")
        )
        lines = [f"{self.subject}: {counts}"]
        marks = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
        lines += [f"  {marks[r.status]} {r.name}: {r.detail}" for r in self.results]
        return "\n".join(lines)


class _ViolationError(Exception):
    """A check found the subject breaking a contract; the message is the reason."""


class _NotApplicableError(Exception):
    """A check does not apply (an optional keyword the subject does not take)."""


Check = Callable[[S], str]


def _run(
    subject: str,
    target: S,
    checks: Mapping[str, Check[S]],
    only: Collection[str] | None,
    prerequisite: str,
) -> ConformanceReport:
    if only is not None:
        unknown = sorted(set(only) - set(checks))
        if unknown:
            raise ValueError(f"unknown check(s) {unknown}; known: {', '.join(checks)}")
    results: list[CheckResult] = []
    for name, check in checks.items():
        if only is not None and name not in only and name != prerequisite:
            continue
        if results and results[0].name == prerequisite and not results[0].passed:
            results.append(CheckResult(name, "skipped", f"'{prerequisite}' failed"))
            continue
        try:
            results.append(CheckResult(name, "passed", check(target)))
        except _NotApplicableError as skip:
            results.append(CheckResult(name, "skipped", str(skip)))
        except _ViolationError as violation:
            results.append(CheckResult(name, "failed", str(violation)))
        except Exception as error:  # the subject's own code raised: that is the finding
            results.append(CheckResult(name, "failed", f"raised {type(error).__name__}: {error}"))
    return ConformanceReport(subject, tuple(results))


@contextmanager
def _seeded(device: torch.device) -> Iterator[None]:
    """Keep the caller's random state (checks reseed freely inside) and compute in full float32.

    On GPUs with TensorFloat-32 (Ampere and later) cuDNN may pick a TF32 convolution for one
    batch size and not another, which differs by about 1e-4: enough to fail a check that
    compares outputs, and nothing to do with the subject. The caller's flags are restored.
    """
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def _randn(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(device)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def _close(a: torch.Tensor, b: torch.Tensor, *, exact: bool = False) -> bool:
    if a.shape != b.shape:
        return False
    if exact:
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


def _missing_keywords(cls: type, keywords: Collection[str]) -> list[str]:
    return [k for k in keywords if not takes_keyword(cls, k)]


@contextmanager
def _at(where: str) -> Iterator[None]:
    """Report an exception the subject's code raises together with the case being run."""
    try:
        yield
    except (_ViolationError, _NotApplicableError):
        raise
    except Exception as error:
        raise _ViolationError(f"{where}: raised {type(error).__name__}: {error}") from error


def _without_gradient(module: nn.Module, output: torch.Tensor) -> list[str]:
    """Backpropagate a random projection of ``output``; the parameters left without a grad."""
    module.zero_grad(set_to_none=True)
    weights = _randn(tuple(output.shape), 99, output.device)
    torch.autograd.backward((output * weights).sum())
    return [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]


def _check_gradients(module: nn.Module, output: torch.Tensor, where: str) -> int:
    """Backpropagate a random projection of ``output``; every parameter needs a finite grad."""
    if not any(p.requires_grad for p in module.parameters()):
        return 0
    weights = _randn(tuple(output.shape), 99, output.device)
    torch.autograd.backward((output * weights).sum())
    count = 0
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            raise _ViolationError(
                f"parameter {name!r} received no gradient ({where}); DDP with "
                "find_unused_parameters=False would fail: use every parameter in forward"
            )
        if not torch.isfinite(parameter.grad).all():
            raise _ViolationError(f"parameter {name!r} has a non-finite gradient ({where})")
        count += 1
    return count


def _round_trip(module: nn.Module, x: torch.Tensor, where: str) -> None:
    """Pickle and torch.save the eval-mode ``module``; the copies compute the same output."""
    module.eval()
    with torch.no_grad():
        expected = module(x)
        buffer = io.BytesIO()
        torch.save(module, buffer)
        buffer.seek(0)
        clones = {
            "pickle": pickle.loads(pickle.dumps(module)),
            "torch.save": torch.load(buffer, weights_only=False),
        }
        for how, clone in clones.items():
            if not _close(clone(x), expected, exact=True):
                raise _ViolationError(f"the {how} copy computes a different output ({where})")


def _state_dict_round_trip(original: nn.Module, other: nn.Module, x: torch.Tensor) -> None:
    result = other.load_state_dict(original.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; be explicit
        raise _ViolationError(f"state dict keys differ: {result}")
    original.eval()
    other.eval()
    with torch.no_grad():
        if not _close(other(x), original(x), exact=True):
            raise _ViolationError(
                "a second instance loaded with the first's state dict computes a different "
                "output: some state (a tensor attribute?) is neither a parameter nor a buffer"
            )


def _check_batch_independence(module: nn.Module, x: torch.Tensor, where: str) -> None:
    module.eval()
    with torch.no_grad():
        together = module(x)
        alone = torch.cat([module(x[i : i + 1]) for i in range(x.shape[0])])
    if not _close(together, alone):
        raise _ViolationError(
            f"in eval mode a sample's output depends on the rest of the batch ({where}; "
            f"max abs difference {_max_diff(together, alone):.3g}): use running statistics "
            "in eval, never batch statistics"
        )


def _counted_registration(registry: Registry[S], obj: S, prefix: str) -> tuple[str, bool]:
    """The name ``obj`` is registered under, registering it under a fresh name if needed."""
    name = registry.name_of(obj)
    if name is not None:
        return name, False
    for index in itertools.count():
        name = f"{prefix}{index}"
        if name not in registry:
            registry.register(name, obj)
            return name, True
    raise AssertionError("unreachable")  # pragma: no cover


def _spec_round_trip(spec: ResNetSpec, seed: int, device: torch.device, size: int) -> str:
    torch.manual_seed(seed)
    model = build(spec).to(device).eval()
    again = ResNetSpec.from_json(spec.to_json())
    if again != spec or again.to_json() != spec.to_json():
        raise _ViolationError("the spec does not round-trip through JSON")
    torch.manual_seed(seed)
    rebuilt = build(again).to(device).eval()
    x = _randn((2, spec.in_channels, size, size), seed + 1, device)
    with torch.no_grad():
        out = model(x)
        if tuple(out.shape) != (2, spec.num_classes):
            raise _ViolationError(f"the model's output has shape {tuple(out.shape)}")
        if not _close(rebuilt(x), out, exact=True):
            raise _ViolationError(
                "rebuilding the spec from JSON with the same seed changes outputs"
            )
    return spec.to_json()


# Blocks -----------------------------------------------------------------------------------

_WIDTH = 4
_SIZES = (8, 7)  # an odd size catches padding that only works for even inputs
_RELATIONS = ("in == out", "in < out", "in > out")


@dataclass(frozen=True)
class _Case:
    """One construction of the block: channels, stride and the shortcut strategy serving it."""

    in_channels: int
    stride: int
    shortcut: str

    def describe(self, out_channels: int) -> str:
        return (
            f"stride {self.stride}, {self.in_channels} -> {out_channels} channels, "
            f"shortcut {self.shortcut!r}"
        )


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
        case: _Case,
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

    def cases(self) -> list[_Case]:
        """Every stride and channel change, with every registered strategy that serves it."""
        out = self.out_channels
        found = []
        for stride, relation, shortcut in itertools.product((1, 2), _RELATIONS, SHORTCUTS):
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
            found.append(_Case(in_channels, stride, shortcut))
        return found

    def residual_cases(self) -> list[_Case]:
        return [c for c in self.cases() if SHORTCUTS.get(c.shortcut).adds_shortcut]

    def input(self, case: _Case, *, batch: int = 2, size: int = 8, seed: int = 1) -> torch.Tensor:
        return _randn((batch, case.in_channels, size, size), self.seed + seed, self.device)

    def warm_up(self, block: ResidualBlock, case: _Case) -> None:
        """Give norms non-trivial running statistics, as training would."""
        block.train()
        with torch.no_grad():
            for step in range(3):
                block(self.input(case, batch=4, seed=50 + step) * 2.0 + 0.5)

    def expected_shape(self, case: _Case, batch: int, size: int) -> tuple[int, ...]:
        side = (size + case.stride - 1) // case.stride
        return (batch, self.out_channels, side, side)

    def requires(self, keyword: str, why: str) -> None:
        if not takes_keyword(self.cls, keyword):
            raise _NotApplicableError(
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
    _validate_block(cls.__name__, cls)
    layers = cls.layers
    if not is_int(layers) or layers < 1:
        raise _ViolationError(
            f"'layers' must be an int >= 1 (weighted layers on the branch); got {layers!r}"
        )
    missing = _missing_keywords(cls, ALWAYS_PASSED)
    if missing:
        raise _ViolationError(
            f"the constructor does not take {missing}; build() passes "
            f"{', '.join(ALWAYS_PASSED)} as keywords"
        )
    _check_block_options(cls.__name__, cls, subject.options)
    return f"a concrete ResidualBlock, expansion {cls.expansion}, layers {layers}"


def _block_out_channels(subject: _BlockSubject) -> str:
    case = _Case(subject.out_channels, 1, "none")  # plain: no addition to fail first
    block = subject.make(case)
    expected = subject.out_channels
    if block.out_channels != expected:
        raise _ViolationError(
            f"out_channels is {block.out_channels}, but width {_WIDTH} x expansion "
            f"{subject.cls.expansion} = {expected}"
        )
    with torch.no_grad():
        channels = block.eval()(subject.input(case)).shape[1]
    if channels != expected:
        raise _ViolationError(
            f"the output has {channels} channels, but width {_WIDTH} x expansion "
            f"{subject.cls.expansion} = {expected}"
        )
    return f"width {_WIDTH} x expansion {subject.cls.expansion} = {expected}"


def _block_shapes(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        block = subject.make(case)
        for mode, size in itertools.product(("train", "eval"), _SIZES):
            where = f"{case.describe(subject.out_channels)}, {size}x{size} input, {mode} mode"
            block.train(mode == "train")
            with _at(where), torch.no_grad():
                shape = tuple(block(subject.input(case, size=size)).shape)
            expected = subject.expected_shape(case, 2, size)
            if shape != expected:
                raise _ViolationError(f"{where}: output shape {shape}, expected {expected}")
    shortcuts = sorted({c.shortcut for c in cases})
    return (
        f"{len(cases)} cases: stride 1 and 2, {', '.join(_RELATIONS)}, "
        f"shortcuts {', '.join(shortcuts)}; inputs {' and '.join(f'{s}x{s}' for s in _SIZES)}"
    )


def _block_gradients(subject: _BlockSubject) -> str:
    cases = subject.cases()
    for case in cases:
        where = case.describe(subject.out_channels)
        with _at(where):
            block = subject.make(case).train()
            _check_gradients(block, block(subject.input(case)), where)
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
            with _at(f"{where}, {mode} mode"), torch.no_grad():
                zeroed, without_branch = block(x), dropped(x)
            if not _close(zeroed, without_branch):
                raise _ViolationError(
                    f"after zero_init_last() the output differs from the output with the "
                    f"residual branch removed ({where}, {mode} mode; max abs difference "
                    f"{_max_diff(zeroed, without_branch):.3g}): zero the scale of the "
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
        with _at(where):
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
                same = _close(block(x), without(x))
        if block.residual:
            if isinstance(block.downsample, nn.Module) and calls.count == 0:
                raise _ViolationError(
                    f"the block never calls its downsample module ({where}): join branch and "
                    "shortcut with self.add_shortcut(out, x)"
                )
            if same:
                raise _ViolationError(
                    f"the output is the same when the shortcut adds zeros ({where}): the block "
                    "ignores its shortcut; join branch and shortcut with self.add_shortcut"
                )
        elif not same:
            raise _ViolationError(
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
            if not _close(half.eval()(x), reference.eval()(x)):
                raise _ViolationError(
                    f"drop_path=0.5 changes the eval-mode output ({where}): drop path must "
                    "be the identity in eval mode"
                )
        everything = subject.make(case, drop_path=1.0)
        everything.load_state_dict(state)
        branch_dropped = _branch_dropped(reference)
        with torch.no_grad():
            dropped, expected = everything.train()(x), branch_dropped.train()(x)
        if not _close(dropped, expected):
            raise _ViolationError(
                f"drop_path=1.0 in train mode does not drop the branch ({where}; max abs "
                f"difference to the shortcut path {_max_diff(dropped, expected):.3g}): "
                "pass drop_path to super().__init__ and join with self.add_shortcut"
            )
        lost = sorted(
            set(_without_gradient(half.train(), half(x)))
            - set(_without_gradient(reference.train(), reference(x)))
        )
        if lost:
            raise _ViolationError(
                f"with drop_path=0.5 in train mode {lost} get no gradient ({where}): scale "
                "the branch per sample instead of skipping it (DDP needs every gradient)"
            )
    return "identity in eval mode; rate 1.0 in train mode leaves the shortcut path; gradients"


def _block_dilation(subject: _BlockSubject) -> str:
    subject.requires("dilation", "a stage dilation > 1")
    out = subject.out_channels
    same = _Case(out, 1, "B")
    plain = subject.make(same)
    dilated = subject.make(same, dilation=2)
    dilated.load_state_dict(plain.state_dict())
    x = subject.input(same)
    with torch.no_grad():
        y, y_dilated = plain.eval()(x), dilated.eval()(x)
    if y_dilated.shape != x.shape:
        raise _ViolationError(
            f"dilation=2 at stride 1 changes the size: input {tuple(x.shape)}, output "
            f"{tuple(y_dilated.shape)}: pad 3x3 convolutions by the dilation"
        )
    if _close(y, y_dilated):
        raise _ViolationError(
            "dilation=2 does not change the output: pass it to the 3x3 convolutions"
        )
    strided = _Case(out // 2, 2, "B")
    block = subject.make(strided, dilation=2)
    with torch.no_grad():
        shape = tuple(block.eval()(subject.input(strided)).shape)
    if shape != subject.expected_shape(strided, 2, 8):
        raise _ViolationError(
            f"dilation=2 at stride 2 gives shape {shape}, expected "
            f"{subject.expected_shape(strided, 2, 8)}"
        )
    return "dilation 2 keeps the size at stride 1, halves it at stride 2, and is used"


def _block_norm_layer(subject: _BlockSubject) -> str:
    out = subject.out_channels
    checked = []
    for norm in ("groupnorm", "frozen_batchnorm"):
        norm_layer = NORMS.get(norm)
        for case in (_Case(out, 1, "B"), _Case(out // 2, 2, "B")):
            block = subject.make(case, norm_layer=norm_layer)
            stray = [n for n, m in block.named_modules() if type(m) is nn.BatchNorm2d]
            if stray:
                raise _ViolationError(
                    f"with norm_layer={norm!r} the block still has nn.BatchNorm2d at "
                    f"{stray}: build every norm with norm_layer"
                )
            for mode in ("train", "eval"):
                with torch.no_grad():
                    shape = tuple(block.train(mode == "train")(subject.input(case)).shape)
                if shape != subject.expected_shape(case, 2, 8):
                    raise _ViolationError(f"with norm_layer={norm!r} the output has shape {shape}")
        checked.append(norm)
    return f"builds and runs with norm_layer {', '.join(checked)}"


class _CountingAct:
    """An ``act_layer`` that counts the modules it makes (SiLU, so it differs from ReLU)."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> nn.Module:
        self.made += 1
        return nn.SiLU()


def _block_act_layer(subject: _BlockSubject) -> str:
    subject.requires("act_layer", "an activation other than 'relu'")
    case = _Case(subject.out_channels // 2, 2, "B")
    reference = subject.make(case)
    act_layer = _CountingAct()
    block = subject.make(case, act_layer=act_layer)
    if act_layer.made == 0:
        raise _ViolationError("the block never calls act_layer: build its activations with it")
    block.load_state_dict(reference.state_dict())
    x = subject.input(case)
    with torch.no_grad():
        y, y_silu = reference.eval()(x), block.eval()(x)
    if y_silu.shape != y.shape:
        raise _ViolationError(f"with act_layer=SiLU the output has shape {tuple(y_silu.shape)}")
    if _close(y, y_silu):
        raise _ViolationError(
            "act_layer=SiLU does not change the output: the block makes the activation but "
            "does not use it"
        )
    return f"act_layer made {act_layer.made} activation(s), and they are used"


def _block_batch_independence(subject: _BlockSubject) -> str:
    cases = [c for c in subject.cases() if c.stride == 2 or c.in_channels == subject.out_channels]
    for case in cases:
        where = case.describe(subject.out_channels)
        with _at(where):
            block = subject.make(case)
            subject.warm_up(block, case)
            _check_batch_independence(block, subject.input(case, batch=3), where)
    return f"eval outputs are per sample, in {len(cases)} cases"


def _block_state_dict(subject: _BlockSubject) -> str:
    case = _Case(subject.out_channels // 2, 2, "C")
    original = subject.make(case)
    subject.warm_up(original, case)
    _state_dict_round_trip(original, subject.make(case, seed_offset=1), subject.input(case))
    return "a second instance loaded with strict=True computes the same output"


def _block_pickle(subject: _BlockSubject) -> str:
    case = _Case(subject.out_channels // 2, 2, "C")
    block = subject.make(case)
    subject.warm_up(block, case)
    _round_trip(block, subject.input(case), case.describe(subject.out_channels))
    return "pickle and torch.save copies compute the same output"


def _block_spec(subject: _BlockSubject) -> str:
    name, registered = _counted_registration(BLOCKS, subject.cls, "_conformance_block_")
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
        _spec_round_trip(spec, subject.seed, subject.device, 8)
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
        _spec_round_trip(options, subject.seed, subject.device, 8)
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


def _resolve(registry: Registry[type[S]], kind: str, item: str | type[S]) -> tuple[type[S], str]:
    if isinstance(item, str):
        cls = registry.get(item)
        return cls, f"{kind} {item!r} ({cls.__name__})"
    if not isinstance(item, type):
        raise TypeError(f"expected a {kind} class or a registered {kind} name; got {item!r}")
    name = registry.name_of(item)
    label = f"{kind} {name!r} ({item.__name__})" if name else f"{kind} {item.__name__}"
    return item, label


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
    cls, label = _resolve(BLOCKS, "block", block)
    torch_device = torch.device(device)
    subject = _BlockSubject(cls, dict(block_options or {}), torch_device, seed)
    with _seeded(torch_device):
        report = _run(label, subject, _BLOCK_CHECKS, only, "interface")
    if raise_on_failure:
        report.raise_for_failures()
    return report


# Shortcut strategies ----------------------------------------------------------------------

_SHORTCUT_OUT = 8


def _shortcut_cases() -> Iterator[tuple[int, str, int]]:
    """``(stride, relation, in_channels)`` for every case a shortcut is checked on."""
    in_channels = {"in == out": _SHORTCUT_OUT, "in < out": 4, "in > out": 16}
    for stride, relation in itertools.product((1, 2), _RELATIONS):
        yield stride, relation, in_channels[relation]


@dataclass
class _ShortcutSubject:
    cls: type[ShortcutStrategy]
    device: torch.device
    seed: int

    def served(self, norm_layer: NormLayer = nn.BatchNorm2d) -> list[tuple[_Case, nn.Module]]:
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
                found.append((_Case(in_channels, stride, "?"), module.to(self.device)))
        return found

    def input(self, case: _Case, *, batch: int = 2, size: int = 8, seed: int = 1) -> torch.Tensor:
        return _randn((batch, case.in_channels, size, size), self.seed + seed, self.device)

    def warm_up(self, module: nn.Module, case: _Case) -> None:
        module.train()
        with torch.no_grad():
            for step in range(3):
                module(self.input(case, batch=4, seed=50 + step) * 2.0 + 0.5)

    def modules(self, norm_layer: NormLayer = nn.BatchNorm2d) -> list[tuple[_Case, nn.Module]]:
        """:meth:`served`, or not applicable when the strategy makes no modules at all."""
        served = self.served(norm_layer)
        if not served:
            raise _NotApplicableError("the strategy makes no modules (identity only)")
        return served


def _describe_shortcut_case(case: _Case) -> str:
    return f"stride {case.stride}, {case.in_channels} -> {_SHORTCUT_OUT} channels"


def _shortcut_interface(subject: _ShortcutSubject) -> str:
    cls = subject.cls
    if not (isinstance(cls, type) and issubclass(cls, ShortcutStrategy)):
        raise _ViolationError(f"{cls!r} is not a ShortcutStrategy subclass")
    if inspect.isabstract(cls):
        raise _ViolationError(f"{cls.__name__} leaves make() abstract")
    if not isinstance(cls.adds_shortcut, bool):
        raise _ViolationError(f"adds_shortcut must be a bool; got {cls.adds_shortcut!r}")
    cls()  # build() instantiates strategies with no arguments
    return f"a concrete ShortcutStrategy, adds_shortcut={cls.adds_shortcut}"


def _shortcut_shapes(subject: _ShortcutSubject) -> str:
    served, refused = 0, []
    for stride, relation, in_channels in _shortcut_cases():
        case = _Case(in_channels, stride, "?")
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
                raise _ViolationError(
                    f"make() refuses {where}, the shape-preserving case every network has"
                ) from None
            refused.append(where)
            continue
        except Exception as error:
            raise _ViolationError(
                f"make() raised {type(error).__name__} for {where}: {error}; raise ValueError "
                "for a shape the strategy cannot produce"
            ) from None
        if module is None:
            if subject.cls.adds_shortcut and (stride != 1 or relation != "in == out"):
                raise _ViolationError(
                    f"make() returned None (the identity) for {where}, where the shape changes"
                )
            served += 1
            continue
        if not subject.cls.adds_shortcut:
            raise _ViolationError(
                f"a plain strategy (adds_shortcut=False) made a module for {where}; blocks add "
                "nothing, so its parameters would get no gradient: return None"
            )
        if not isinstance(module, nn.Module):
            raise _ViolationError(f"make() returned {module!r} for {where}; expected a module")
        module = module.to(subject.device)
        for mode, size in itertools.product(("train", "eval"), _SIZES):
            module.train(mode == "train")
            with torch.no_grad():
                shape = tuple(module(subject.input(case, size=size)).shape)
            side = (size + stride - 1) // stride
            expected = (2, _SHORTCUT_OUT, side, side)
            if shape != expected:
                raise _ViolationError(
                    f"{where}, {size}x{size} input, {mode} mode: output shape {shape}, "
                    f"expected {expected}"
                )
        served += 1
    detail = f"serves {served} of {2 * len(_RELATIONS)} cases"
    return detail + (f"; refuses (ValueError) {'; '.join(refused)}" if refused else "")


def _shortcut_gradients(subject: _ShortcutSubject) -> str:
    served = subject.modules()
    for case, module in served:
        module.train()
        _check_gradients(module, module(subject.input(case)), _describe_shortcut_case(case))
    return f"every parameter gets a finite gradient, in {len(served)} cases with a module"


def _shortcut_norm_layer(subject: _ShortcutSubject) -> str:
    served = subject.modules(norm_layer=NORMS.get("groupnorm"))
    for case, module in served:
        stray = [n for n, m in module.named_modules() if type(m) is nn.BatchNorm2d]
        if stray:
            raise _ViolationError(
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
        _check_batch_independence(
            module, subject.input(case, batch=3), _describe_shortcut_case(case)
        )
    return f"eval outputs are per sample, in {len(served)} cases"


def _shortcut_serialization(subject: _ShortcutSubject) -> str:
    case, module = max(subject.modules(), key=lambda item: item[0].stride)
    subject.warm_up(module, case)
    x = subject.input(case)
    _round_trip(module, x, _describe_shortcut_case(case))
    torch.manual_seed(subject.seed + 1)
    other = subject.cls().make(
        in_channels=case.in_channels,
        out_channels=_SHORTCUT_OUT,
        stride=case.stride,
        norm_layer=nn.BatchNorm2d,
    )
    if other is None:
        raise _ViolationError("make() returned None the second time it was called")
    _state_dict_round_trip(module, other.to(subject.device), x)
    return "state dict, pickle and torch.save round trips compute the same output"


def _shortcut_spec(subject: _ShortcutSubject) -> str:
    name, registered = _counted_registration(SHORTCUTS, subject.cls, "_conformance_shortcut_")
    try:
        spec = ResNetSpec(
            stages=(StageSpec(1, 8), StageSpec(2, 16, stride=2)),
            shortcut=name,
            stem=StemSpec("cifar", 4),
            num_classes=3,
            zero_init_residual=subject.cls.adds_shortcut,
        )
        _spec_round_trip(spec, subject.seed, subject.device, 8)
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
    cls, label = _resolve(SHORTCUTS, "shortcut", strategy)
    torch_device = torch.device(device)
    with _seeded(torch_device):
        report = _run(
            label, _ShortcutSubject(cls, torch_device, seed), _SHORTCUT_CHECKS, only, "interface"
        )
    if raise_on_failure:
        report.raise_for_failures()
    return report


# Stems ------------------------------------------------------------------------------------

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
        return _randn((batch, in_channels, height, width), self.seed + seed, self.device)

    def warm_up(self, stem: Stem) -> None:
        stem.train()
        with torch.no_grad():
            for step in range(3):
                stem(self.input(batch=4, seed=50 + step) * 2.0 + 0.5)


def _stem_interface(subject: _StemSubject) -> str:
    cls = subject.cls
    if not (isinstance(cls, type) and issubclass(cls, Stem)):
        raise _ViolationError(f"{cls!r} is not a Stem subclass")
    for attribute in ("reduction", "default_image_size"):
        value = getattr(cls, attribute)
        if not is_int(value) or value < 1:
            raise _ViolationError(f"{attribute} must be an int >= 1; got {value!r}")
    missing = _missing_keywords(cls, ("in_channels", "out_channels", "norm_layer"))
    if missing:
        raise _ViolationError(
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
            raise _ViolationError(
                f"the stem reports in_channels={stem.in_channels}, "
                f"out_channels={stem.out_channels}; built with {in_channels}, {_STEM_OUT}"
            )
        for mode in ("train", "eval"):
            with torch.no_grad():
                out = stem.train(mode == "train")(subject.input(in_channels=in_channels))
            expected = (2, _STEM_OUT, *expected_side)
            if tuple(out.shape) != expected:
                raise _ViolationError(
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
        raise _ViolationError("the stem has no children")
    clashes = [name for name in names if _RESERVED.fullmatch(name)]
    if clashes:
        raise _ViolationError(
            f"child names {clashes} clash with the model's own modules "
            "(layer1..layerN, avgpool, fc, norm)"
        )
    return f"children {', '.join(names)}"


def _stem_gradients(subject: _StemSubject) -> str:
    stem = subject.make().train()
    count = _check_gradients(stem, stem(subject.input()), "train mode")
    return f"all {count} parameters get a finite gradient in train mode"


def _stem_norm_layer(subject: _StemSubject) -> str:
    for norm in ("groupnorm", "frozen_batchnorm"):
        stem = subject.make(norm_layer=NORMS.get(norm))
        stray = [n for n, m in stem.named_modules() if type(m) is nn.BatchNorm2d]
        if stray:
            raise _ViolationError(
                f"with norm_layer={norm!r} the stem still has nn.BatchNorm2d at {stray}: "
                "build every norm with norm_layer"
            )
        with torch.no_grad():
            stem(subject.input())
    return "builds and runs with norm_layer groupnorm, frozen_batchnorm"


def _stem_act_layer(subject: _StemSubject) -> str:
    if not takes_keyword(subject.cls, "act_layer"):
        raise _NotApplicableError(
            "the stem does not take 'act_layer', so specs with an activation other than "
            "'relu' cannot use it"
        )
    reference = subject.make()
    act_layer = _CountingAct()
    stem = subject.make(act_layer=act_layer)
    if act_layer.made == 0:
        # A stem may have no activation at all (pre-activation stems): then nothing is owed.
        builtin = tuple({type(ACTIVATIONS.get(name)()) for name in ACTIVATIONS} - {nn.Identity})
        stray = [name for name, module in stem.named_modules() if isinstance(module, builtin)]
        if stray:
            raise _ViolationError(
                f"the stem never calls act_layer but has activations at {stray}: build its "
                "activations with it"
            )
        return "the stem has no activation (it takes act_layer and needs none)"
    stem.load_state_dict(reference.state_dict())
    x = subject.input()
    with torch.no_grad():
        if _close(reference.eval()(x), stem.eval()(x)):
            raise _ViolationError(
                "act_layer=SiLU does not change the output: the stem makes the activation but "
                "does not use it"
            )
    return f"act_layer made {act_layer.made} activation(s), and they are used"


def _stem_batch_independence(subject: _StemSubject) -> str:
    stem = subject.make()
    subject.warm_up(stem)
    _check_batch_independence(stem, subject.input(batch=3), "after warm-up")
    return "eval outputs are per sample"


def _stem_serialization(subject: _StemSubject) -> str:
    stem = subject.make()
    subject.warm_up(stem)
    x = subject.input()
    _round_trip(stem, x, "eval mode")
    _state_dict_round_trip(stem, subject.make(seed_offset=1), x)
    return "state dict, pickle and torch.save round trips compute the same output"


def _stem_spec(subject: _StemSubject) -> str:
    name, registered = _counted_registration(STEMS, subject.cls, "_conformance_stem_")
    size = 8 * subject.cls.reduction
    try:
        spec = ResNetSpec(
            stages=(StageSpec(1, 8), StageSpec(1, 16, stride=2)),
            stem=StemSpec(name, _STEM_OUT),
            num_classes=3,
        )
        _spec_round_trip(spec, subject.seed, subject.device, size)
        act = "silu" if takes_keyword(subject.cls, "act_layer") else "relu"
        variant = ResNetSpec(
            stages=spec.stages, stem=spec.stem, num_classes=3, norm="groupnorm", act=act
        )
        _spec_round_trip(variant, subject.seed, subject.device, size)
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
    cls, label = _resolve(STEMS, "stem", stem)
    torch_device = torch.device(device)
    with _seeded(torch_device):
        report = _run(label, _StemSubject(cls, torch_device, seed), _STEM_CHECKS, only, "interface")
    if raise_on_failure:
        report.raise_for_failures()
    return report


# Fuzzing whole networks (optional: needs hypothesis) --------------------------------------

FUZZ_PROPERTIES: tuple[str, ...] = ("build", "output_shape", "gradients", "batch_independence")
"""The names of the properties :func:`fuzz_block` checks on every generated spec."""


class _FuzzFailureError(Exception):
    """A generated case broke ``prop``; carries the case for the report."""

    def __init__(self, prop: str, detail: str, case: Case) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail
        self.case = case


@contextmanager
def _fuzz_property(prop: str, case: Case) -> Iterator[None]:
    try:
        yield
    except _ViolationError as violation:
        raise _FuzzFailureError(prop, str(violation), case) from violation
    except Exception as error:  # the block's own code raised: that is the finding
        raise _FuzzFailureError(prop, f"raised {type(error).__name__}: {error}", case) from error


def _fuzz_case(case: Case, device: torch.device, seed: int) -> None:
    """Build the case's spec and check each of :data:`FUZZ_PROPERTIES` on it."""
    spec = case.spec
    with _fuzz_property("build", case):
        torch.manual_seed(seed)
        model = build(spec).to(device)
    size = (case.batch_size, spec.in_channels, case.image_size, case.image_size)
    x = _randn(size, seed + 1, device)
    expected = (case.batch_size, spec.num_classes)
    with _fuzz_property("output_shape", case):
        for mode in ("train", "eval"):
            model.train(mode == "train")
            with torch.no_grad():
                shape = tuple(model(x).shape)
            if shape != expected:
                raise _ViolationError(f"{mode} mode: output shape {shape}, expected {expected}")
    with _fuzz_property("gradients", case):
        model.train().zero_grad(set_to_none=True)
        _check_gradients(model, model(x), "train mode")
    with _fuzz_property("batch_independence", case):
        _check_batch_independence(model, x, "eval mode")


def _fuzz_message(label: str, name: str, registered: bool, failure: _FuzzFailureError) -> str:
    case = failure.case
    lines = [
        f"{label} violates {failure.prop!r} on a generated spec (the smallest failing one found):",
        f"  {failure.detail}",
        f"  spec: {case.spec.to_json()}",
        f"  input: batch {case.batch_size} x {case.spec.in_channels} x {case.image_size} x "
        f"{case.image_size}",
        "Rebuild it with resnetlib.build(resnetlib.ResNetSpec.from_json(...)).",
    ]
    if registered:
        lines.append(f"(The block was registered as {name!r} while fuzzing.)")
    return "\n".join(lines)


def fuzz_block(
    block: str | type[ResidualBlock],
    *,
    block_options: Mapping[str, JSONScalar] | None = None,
    max_examples: int = 20,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> int:
    """Build generated networks of ``block`` and check :data:`FUZZ_PROPERTIES` on each.

    Needs hypothesis (``pip install 'resnetlib[testing]'``). The specs come from
    :func:`resnetlib.testing_strategies.cases` restricted to the block: every built-in
    shortcut, stem, norm and activation, drop path and dilation, each optional keyword
    only where the block takes it. ``block_options`` go into every spec; ``None`` draws
    the built-in bottlenecks' options (``{}`` for other blocks). Each spec is built, its
    output shape checked in train and eval mode, every parameter must get a finite
    gradient in train mode, and eval outputs must not depend on the rest of the batch.

    The run is deterministic for a ``seed``, writes no example database and leaves the
    caller's random state untouched. Returns how many generated cases were checked;
    raises :class:`ConformanceError` naming the violated property and showing the
    shrunk failing spec as JSON.
    """
    # First: without hypothesis this raises the ImportError that names the extra.
    from .testing_strategies import BUILTIN_NORMS, BUILTIN_SHORTCUTS, BUILTIN_STEMS, cases

    cls, label = _resolve(BLOCKS, "block", block)
    from hypothesis import HealthCheck, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Flaky

    if not is_int(max_examples) or max_examples < 1:
        raise ValueError(f"max_examples must be an int >= 1; got {max_examples!r}")
    options = None if block_options is None else dict(block_options)
    if options is not None:
        _check_block_options(cls.__name__, cls, options)
    torch_device = torch.device(device)
    run_settings = settings(
        parent=settings.get_profile("default"),
        max_examples=max_examples,
        derandomize=False,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    checked = 0
    name, registered = _counted_registration(BLOCKS, cls, "_fuzz_block_")
    strategy = cases(
        blocks=(name,),
        stems=BUILTIN_STEMS,
        shortcuts=BUILTIN_SHORTCUTS,
        norms=BUILTIN_NORMS,
        block_options=options,
    )

    def check(case: Case) -> None:
        nonlocal checked
        _fuzz_case(case, torch_device, seed)
        checked += 1

    run = hypothesis_seed(seed)(run_settings(given(strategy)(check)))
    try:
        with _seeded(torch_device):
            run()
    except _FuzzFailureError as failure:
        raise ConformanceError(_fuzz_message(label, name, registered, failure)) from failure
    except Flaky as error:
        raise ConformanceError(
            f"{label} failed on a generated spec and then passed when it was replayed: its "
            f"output or gradients are not deterministic for a fixed seed ({error})"
        ) from error
    finally:
        if registered:
            BLOCKS.unregister(name)
    return checked
