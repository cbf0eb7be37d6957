"""What the conformance checks share: the report types, the runner, the ``Subject`` base
and the properties every kind is held to. Only ``__all__`` is API; the other public names
are helpers shared within this package, free to change."""

from __future__ import annotations

import inspect
import io
import itertools
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import nn

from ..core.build import build, takes_keyword
from ..core.spec import ResNetSpec, StageSpec, StemSpec
from ..nn.activations import ACTIVATIONS
from ..nn.blocks import NormLayer
from ..nn.norms import NORMS
from ..nn.shortcuts import ShortcutStrategy
from ..registry import Registry
from ..validate import is_int

__all__ = ["CheckResult", "ConformanceError", "ConformanceReport"]

Status = Literal["passed", "failed", "skipped"]
S = TypeVar("S")
C = TypeVar("C")  # the class under check
M = TypeVar("M", bound=nn.Module, covariant=True)  # the modules it makes


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
    """Every check run against one ``subject``; ``report.ok`` when none failed (skipped checks,
    of optional keywords the type does not take, do not fail); ``str(report)`` summarizes."""

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
        lines = [f"  {r.status[:4].upper()} {r.name}: {r.detail}" for r in self.results]
        return "\n".join([f"{self.subject}: {counts}", *lines])


class ViolationError(Exception):
    """A check found the subject breaking a contract; the message is the reason."""


class NotApplicableError(Exception):
    """A check does not apply (an optional keyword the subject does not take)."""


Check = Callable[[S], str]


@contextmanager
def seeded(device: torch.device) -> Iterator[None]:
    """Keep the caller's random state (checks reseed freely inside) and compute in full float32
    (TF32 convolutions differ by about 1e-4 between batch sizes); the flags are restored."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def seeded_randn(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(device)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def all_close(a: torch.Tensor, b: torch.Tensor, *, exact: bool = False) -> bool:
    """Same shape and equal values (``exact``) or equal to float32 round-off."""
    if a.shape != b.shape:
        return False
    if exact:
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


@contextmanager
def raised_at(where: str) -> Iterator[None]:
    """Report an exception the subject's code raises together with the case being run."""
    try:
        yield
    except (ViolationError, NotApplicableError):
        raise
    except Exception as error:
        raise ViolationError(f"{where}: raised {type(error).__name__}: {error}") from error


def parameters_without_gradient(module: nn.Module, output: torch.Tensor) -> list[str]:
    """Backpropagate a random projection of ``output``; the parameters left without a grad."""
    module.zero_grad(set_to_none=True)
    weights = seeded_randn(tuple(output.shape), 99, output.device)
    torch.autograd.backward((output * weights).sum())
    return [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]


def check_gradients(module: nn.Module, output: torch.Tensor, where: str) -> None:
    """Every parameter of ``module`` gets a finite gradient from ``output``."""
    trained = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not trained:
        return
    missing = parameters_without_gradient(module, output)
    if missing:
        raise ViolationError(
            f"parameter {missing[0]!r} received no gradient ({where}); DDP with "
            "find_unused_parameters=False would fail: use every parameter in forward"
        )
    for name, parameter in trained:
        if not torch.isfinite(parameter.grad).all():  # type: ignore[arg-type]
            raise ViolationError(f"parameter {name!r} has a non-finite gradient ({where})")


def check_batch_independence(module: nn.Module, x: torch.Tensor, where: str) -> None:
    """In eval mode each sample of ``x`` gets the output it gets alone."""
    module.eval()
    with torch.no_grad():
        together = module(x)
        alone = torch.cat([module(x[i : i + 1]) for i in range(x.shape[0])])
    if not all_close(together, alone):
        raise ViolationError(
            f"in eval mode a sample's output depends on the rest of the batch ({where}; "
            f"max abs difference {max_abs_diff(together, alone):.3g}): use running statistics "
            "in eval, never batch statistics"
        )


def registered_name(registry: Registry[S], obj: S, prefix: str) -> tuple[str, bool]:
    """The name ``obj`` is registered under, registering it under a fresh name if needed."""
    name = registry.name_of(obj)
    if name is not None:
        return name, False
    names = (f"{prefix}{index}" for index in itertools.count())
    registry.register(name := next(n for n in names if n not in registry), obj)
    return name, True


def resolve_subject(
    registry: Registry[type[S]], kind: str, item: str | type[S]
) -> tuple[type[S], str]:
    """The class ``item`` names (a registered name or the class) and its label for reports."""
    if isinstance(item, str):
        cls = registry.get(item)
        return cls, f"{kind} {item!r} ({cls.__name__})"
    if not isinstance(item, type):
        raise TypeError(f"expected a {kind} class or a registered {kind} name; got {item!r}")
    name = registry.name_of(item)
    label = f"{kind} {name!r} ({item.__name__})" if name else f"{kind} {item.__name__}"
    return item, label


SIZES = (8, 7)  # an odd size catches padding that only works for even inputs
RELATIONS = ("in == out", "in < out", "in > out")
NORMS_CHECKED = ("groupnorm", "frozen_batchnorm")


@dataclass(frozen=True)
class ShapeCase:
    """Input channels, stride (a stem's reduction) and, for a block, the shortcut strategy."""

    in_channels: int
    stride: int
    shortcut: str = ""


def channel_cases(out: int) -> list[ShapeCase]:
    """Stride 1 and 2, each with in == out, in < out and in > out channels (``RELATIONS``)."""
    return [ShapeCase(c, stride) for stride in (1, 2) for c in (out, out // 2, 2 * out)]


def shortcut_module(
    strategy: type[ShortcutStrategy], case: ShapeCase, out: int, norm_layer: NormLayer
) -> nn.Module | None:
    """What ``strategy`` makes for ``case`` (None: the identity), as build() asks for it."""
    return strategy().make(
        in_channels=case.in_channels, out_channels=out, stride=case.stride, norm_layer=norm_layer
    )


@dataclass
class Subject(ABC, Generic[C, M]):
    """A class under check (a block, shortcut strategy or stem) and how to build and feed
    the modules it makes; the properties below hold every kind to the same contract."""

    kind: ClassVar[str]
    registry: ClassVar[Registry[Any]]
    optional: ClassVar[tuple[str, ...]] = ()  # optional build keywords a spec may use
    stride_name: ClassVar[str] = "stride"
    sizes: ClassVar[tuple[int, ...]] = SIZES
    may_lack_activation: ClassVar[bool] = False  # may take act_layer and make no activation

    cls: type[C]
    device: torch.device
    seed: int

    @abstractmethod
    def construct(self, case: ShapeCase, norm_layer: NormLayer, **extra: Any) -> M: ...

    @abstractmethod
    def cases(self) -> list[ShapeCase]: ...

    @abstractmethod
    def spec_changes(self, name: str) -> dict[str, Any]:
        """What a small spec changes to use the subject, registered as ``name``."""

    @property
    def out_channels(self) -> int:
        return 8

    def make(
        self,
        case: ShapeCase,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        seed_offset: int = 0,
        **extra: Any,
    ) -> M:
        torch.manual_seed(self.seed + seed_offset)
        return self.construct(case, norm_layer, **extra).to(self.device)

    def sample_cases(self) -> list[ShapeCase]:
        """The cases of the per-sample and norm checks."""
        return self.cases()

    def example(self) -> ShapeCase:
        """The one case of the single-case checks."""
        return max(self.cases(), key=lambda case: (case.stride, case.in_channels))

    def sides(self, size: int) -> tuple[int, int]:
        return size, size

    def input(
        self, case: ShapeCase, *, batch: int = 2, size: int = 8, seed: int = 1
    ) -> torch.Tensor:
        shape = (batch, case.in_channels, *self.sides(size))
        return seeded_randn(shape, self.seed + seed, self.device)

    def expected_shape(self, case: ShapeCase, size: int) -> tuple[int, ...]:
        sides = (-(-side // case.stride) for side in self.sides(size))
        return (2, self.out_channels, *sides)

    def describe(self, case: ShapeCase, size: int | None = None) -> str:
        where = f"stride {case.stride}, {case.in_channels} -> {self.out_channels} channels"
        where += f", shortcut {case.shortcut!r}" if case.shortcut else ""
        return where + (f", {size}x{size} input" if size else "")

    def warmed(self, case: ShapeCase) -> M:
        """``make(case)`` with non-trivial running statistics in its norms, as training gives."""
        module = self.make(case).train()
        with torch.no_grad():
            for step in range(3):
                module(self.input(case, batch=4, seed=50 + step) * 2.0 + 0.5)
        return module

    def requires(self, keyword: str, why: str) -> None:
        if not takes_keyword(self.cls, keyword):
            raise NotApplicableError(
                f"the {self.kind} does not take {keyword!r}, so specs with {why} cannot use it"
            )


AnySubject = Subject[Any, nn.Module]


def check_interface(
    cls: type, base: type, ints: Collection[str] = (), keywords: Collection[str] = ()
) -> None:
    """``cls`` is a concrete ``base``, its ``ints`` ints >= 1; its __init__ takes ``keywords``."""
    if not issubclass(cls, base):
        raise ViolationError(f"{cls!r} is not a {base.__name__} subclass")
    if inspect.isabstract(cls):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        raise ViolationError(f"{cls.__name__} leaves abstract methods {missing}")
    for attribute in ints:
        value = getattr(cls, attribute)
        if not is_int(value) or value < 1:
            raise ViolationError(f"{attribute} must be an int >= 1; got {value!r}")
    missing = [k for k in keywords if not takes_keyword(cls, k)]
    if missing:
        raise ViolationError(
            f"the constructor does not take {missing}; build() passes "
            f"{', '.join(keywords)} as keywords"
        )


def check_shapes(subject: AnySubject, case: ShapeCase, module: nn.Module) -> None:
    """In train and eval mode, at each of the subject's sizes, the output has its shape."""
    for mode, size in itertools.product(("train", "eval"), subject.sizes):
        where = f"{subject.describe(case, size)}, {mode} mode"
        module.train(mode == "train")
        with raised_at(where), torch.no_grad():
            shape = tuple(module(subject.input(case, size=size)).shape)
        expected = subject.expected_shape(case, size)
        if shape != expected:
            raise ViolationError(
                f"{where}: output shape {shape}, expected {expected} (out_channels "
                f"{subject.out_channels}, {subject.stride_name} {case.stride})"
            )


def gradients(subject: AnySubject) -> str:
    cases = subject.cases()
    for case in cases:
        where = subject.describe(case)
        with raised_at(where):
            module = subject.make(case).train()
            check_gradients(module, module(subject.input(case)), where)
    return f"every parameter gets a finite gradient in train mode, in {len(cases)} case(s)"


def norm_layer(subject: AnySubject) -> str:
    """Each of ``NORMS_CHECKED`` replaces every norm and keeps the output shape."""
    cases = subject.sample_cases()
    for case in cases:
        x, reference = subject.input(case), subject.make(case)
        for norm in NORMS_CHECKED:
            where = f"{subject.describe(case)}, norm_layer={norm!r}"
            module = subject.make(case, norm_layer=NORMS.get(norm))
            stray = [n for n, m in module.named_modules() if type(m) is nn.BatchNorm2d]
            if stray:
                raise ViolationError(
                    f"with norm_layer={norm!r} the {subject.kind} still has nn.BatchNorm2d at "
                    f"{stray} ({where}): build every norm with norm_layer"
                )
            for mode in ("train", "eval"):
                with raised_at(f"{where}, {mode} mode"), torch.no_grad():
                    shape = tuple(module.train(mode == "train")(x).shape)
                    expected = tuple(reference.train(mode == "train")(x).shape)
                if shape != expected:
                    raise ViolationError(
                        f"with norm_layer={norm!r} the output has shape {shape}, with "
                        f"nn.BatchNorm2d {expected} ({where}, {mode} mode)"
                    )
    return f"builds and runs with norm_layer {', '.join(NORMS_CHECKED)}, in {len(cases)} case(s)"


def act_layer(subject: AnySubject) -> str:
    subject.requires("act_layer", "an activation other than 'relu'")
    case, kind = subject.example(), subject.kind
    reference, made = subject.make(case), []

    def counting() -> nn.Module:  # SiLU, so that it differs from ReLU
        made.append(nn.SiLU())
        return made[-1]

    module = subject.make(case, act_layer=counting)
    if not made:
        builtin = tuple({type(ACTIVATIONS.get(name)()) for name in ACTIVATIONS} - {nn.Identity})
        stray = [name for name, m in module.named_modules() if isinstance(m, builtin)]
        if stray or not subject.may_lack_activation:
            has = f" but has activations at {stray}" if stray else ""
            raise ViolationError(
                f"the {kind} never calls act_layer{has}: build its activations with it"
            )
        return f"the {kind} has no activation (it takes act_layer and needs none)"
    module.load_state_dict(reference.state_dict())
    x = subject.input(case)
    with torch.no_grad():
        y, y_silu = reference.eval()(x), module.eval()(x)
    if y_silu.shape != y.shape:
        raise ViolationError(f"with act_layer=SiLU the output has shape {tuple(y_silu.shape)}")
    if all_close(y, y_silu):
        raise ViolationError(
            f"act_layer=SiLU does not change the output: the {kind} makes the activation but "
            "does not use it"
        )
    return f"act_layer made {len(made)} activation(s), and they are used"


def batch_independence(subject: AnySubject) -> str:
    cases = subject.sample_cases()
    for case in cases:
        where = subject.describe(case)
        with raised_at(where):
            module = subject.warmed(case)
            check_batch_independence(module, subject.input(case, batch=3), where)
    return f"eval outputs are per sample, in {len(cases)} case(s)"


def _warm(subject: AnySubject) -> tuple[nn.Module, torch.Tensor]:
    case = subject.example()
    return subject.warmed(case).eval(), subject.input(case)


def state_dict(subject: AnySubject) -> str:
    original, x = _warm(subject)
    other = subject.make(subject.example(), seed_offset=1).eval()
    result = other.load_state_dict(original.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; be explicit
        raise ViolationError(f"state dict keys differ: {result}")
    with torch.no_grad():
        if not all_close(other(x), original(x), exact=True):
            raise ViolationError(
                "a second instance loaded with the first's state dict computes a different "
                "output: some state (a tensor attribute?) is neither a parameter nor a buffer"
            )
    return "a second instance loaded with strict=True computes the same output"


def pickled(subject: AnySubject) -> str:
    module, x = _warm(subject)
    with torch.no_grad():
        expected = module(x)
        buffer = io.BytesIO()
        torch.save(module, buffer)
        buffer.seek(0)
        copies = {
            "pickle": pickle.loads(pickle.dumps(module)),
            "torch.save": torch.load(buffer, weights_only=False),
        }
        for how, copy in copies.items():
            if not all_close(copy(x), expected, exact=True):
                raise ViolationError(
                    f"the {how} copy computes a different output "
                    f"({subject.describe(subject.example())})"
                )
    return "pickle and torch.save copies compute the same output"


def serialization(subject: AnySubject) -> str:
    pickled(subject)
    state_dict(subject)
    return "state dict, pickle and torch.save round trips compute the same output"


def spec(subject: AnySubject) -> str:
    """A small spec using the subject survives JSON and rebuilds, seeded, to the same output;
    also with group norm and the optional keywords the subject takes."""
    name, registered = registered_name(
        subject.registry, subject.cls, f"_conformance_{subject.kind}_"
    )
    takes = [k for k in subject.optional if takes_keyword(subject.cls, k)]
    size = subject.sides(8)[0]
    try:
        stages = (StageSpec(1, 8), StageSpec(2, 16, stride=2))
        changes = {"stem": StemSpec("cifar", 4), **subject.spec_changes(name)}
        base = ResNetSpec(stages=stages, num_classes=3, **changes)
        last = replace(base.stages[-1], dilation=2 if "dilation" in takes else 1)
        variant = replace(
            base,
            stages=(*base.stages[:-1], last),
            norm="groupnorm",
            act="silu" if "act_layer" in takes else "relu",
            drop_path_rate=0.2 if "drop_path" in takes else 0.0,
        )
        for built in (base, variant):
            torch.manual_seed(subject.seed)
            model = build(built).to(subject.device).eval()
            again = ResNetSpec.from_json(built.to_json())
            if again != built or again.to_json() != built.to_json():
                raise ViolationError("the spec does not round-trip through JSON")
            torch.manual_seed(subject.seed)
            rebuilt = build(again).to(subject.device).eval()
            x = seeded_randn((2, built.in_channels, size, size), subject.seed + 1, subject.device)
            with torch.no_grad():
                out = model(x)
                if tuple(out.shape) != (2, built.num_classes):
                    raise ViolationError(f"the model's output has shape {tuple(out.shape)}")
                if not all_close(rebuilt(x), out, exact=True):
                    raise ViolationError(
                        "rebuilding the spec from JSON with the same seed changes outputs"
                    )
    finally:
        if registered:
            subject.registry.unregister(name)
    also = "".join(f", {k}" for k in takes)
    return (
        f"builds as {name!r}, round-trips through JSON and rebuilds equal; also with "
        f"norm 'groupnorm'{also}"
    )


def check_subject(
    subject_type: type[Subject[C, M]],
    item: str | type[C],
    checks: Mapping[str, Check[Any]],
    device: torch.device | str,
    seed: int,
    only: Collection[str] | None,
    raise_on_failure: bool,
    **fields: Any,
) -> ConformanceReport:
    """Run ``checks`` (those in ``only``: a name or names) on a seeded subject; "interface"
    always runs first, and the later checks are skipped when it fails."""
    if isinstance(only, str):  # one check's name, not its letters
        only = (only,)
    unknown = sorted(set(only or ()) - set(checks))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {', '.join(checks)}")
    cls, label = resolve_subject(subject_type.registry, subject_type.kind, item)
    torch_device = torch.device(device)
    subject = subject_type(cls, torch_device, seed, **fields)
    results: list[CheckResult] = []
    with seeded(torch_device):
        for name, check in checks.items():
            if only is not None and name not in only and name != "interface":
                continue
            if results and not results[0].passed:
                results.append(CheckResult(name, "skipped", "'interface' failed"))
                continue
            try:
                results.append(CheckResult(name, "passed", check(subject)))
            except NotApplicableError as skip:
                results.append(CheckResult(name, "skipped", str(skip)))
            except ViolationError as violation:
                results.append(CheckResult(name, "failed", str(violation)))
            except Exception as error:  # the subject's own code raised: that is the finding
                detail = f"raised {type(error).__name__}: {error}"
                results.append(CheckResult(name, "failed", detail))
    report = ConformanceReport(label, tuple(results))
    if raise_on_failure:
        report.raise_for_failures()
    return report
