"""The machinery the conformance checks share: the report types, the runner, seeded inputs
and the properties every subject is held to (gradients, serialization, batch independence,
a spec round trip). Only ``__all__`` is API; the other public names are the helpers
the checks modules of this package share (importable, but free to change)."""

from __future__ import annotations

import io
import itertools
import pickle
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

from ..core.build import build, takes_keyword
from ..core.spec import ResNetSpec
from ..registry import Registry

__all__ = ["CheckResult", "ConformanceError", "ConformanceReport"]

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


class ViolationError(Exception):
    """A check found the subject breaking a contract; the message is the reason."""


class NotApplicableError(Exception):
    """A check does not apply (an optional keyword the subject does not take)."""


Check = Callable[[S], str]


def run_checks(
    subject: str,
    target: S,
    checks: Mapping[str, Check[S]],
    only: Collection[str] | None,
    prerequisite: str,
) -> ConformanceReport:
    """Run ``checks`` (or those in ``only``, and ``prerequisite`` always) on ``target``;
    all later checks are skipped when ``prerequisite``, run first, fails."""
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
        except NotApplicableError as skip:
            results.append(CheckResult(name, "skipped", str(skip)))
        except ViolationError as violation:
            results.append(CheckResult(name, "failed", str(violation)))
        except Exception as error:  # the subject's own code raised: that is the finding
            results.append(CheckResult(name, "failed", f"raised {type(error).__name__}: {error}"))
    return ConformanceReport(subject, tuple(results))


@contextmanager
def seeded(device: torch.device) -> Iterator[None]:
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


def seeded_randn(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """Standard normal values of ``shape`` drawn on the CPU from ``seed``, moved to ``device``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(device)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference between ``a`` and ``b``."""
    return float((a.detach() - b.detach()).abs().max())


def all_close(a: torch.Tensor, b: torch.Tensor, *, exact: bool = False) -> bool:
    """Same shape and equal values (``exact``) or equal to float32 round-off."""
    if a.shape != b.shape:
        return False
    if exact:
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


def missing_keywords(cls: type, keywords: Collection[str]) -> list[str]:
    """The ``keywords`` that ``cls`` does not take."""
    return [k for k in keywords if not takes_keyword(cls, k)]


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


def check_gradients(module: nn.Module, output: torch.Tensor, where: str) -> int:
    """Backpropagate a random projection of ``output``; every parameter needs a finite grad."""
    if not any(p.requires_grad for p in module.parameters()):
        return 0
    weights = seeded_randn(tuple(output.shape), 99, output.device)
    torch.autograd.backward((output * weights).sum())
    count = 0
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            raise ViolationError(
                f"parameter {name!r} received no gradient ({where}); DDP with "
                "find_unused_parameters=False would fail: use every parameter in forward"
            )
        if not torch.isfinite(parameter.grad).all():
            raise ViolationError(f"parameter {name!r} has a non-finite gradient ({where})")
        count += 1
    return count


def check_round_trip(module: nn.Module, x: torch.Tensor, where: str) -> None:
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
            if not all_close(clone(x), expected, exact=True):
                raise ViolationError(f"the {how} copy computes a different output ({where})")


def check_state_dict_round_trip(original: nn.Module, other: nn.Module, x: torch.Tensor) -> None:
    """``other`` loaded with ``original``'s state dict computes the same output on ``x``."""
    result = other.load_state_dict(original.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; be explicit
        raise ViolationError(f"state dict keys differ: {result}")
    original.eval()
    other.eval()
    with torch.no_grad():
        if not all_close(other(x), original(x), exact=True):
            raise ViolationError(
                "a second instance loaded with the first's state dict computes a different "
                "output: some state (a tensor attribute?) is neither a parameter nor a buffer"
            )


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
    for index in itertools.count():
        name = f"{prefix}{index}"
        if name not in registry:
            registry.register(name, obj)
            return name, True
    raise AssertionError("unreachable")  # pragma: no cover


def check_spec_round_trip(spec: ResNetSpec, seed: int, device: torch.device, size: int) -> str:
    """``spec`` survives JSON, and the model rebuilt from it with ``seed`` computes the
    same output; the spec's JSON."""
    torch.manual_seed(seed)
    model = build(spec).to(device).eval()
    again = ResNetSpec.from_json(spec.to_json())
    if again != spec or again.to_json() != spec.to_json():
        raise ViolationError("the spec does not round-trip through JSON")
    torch.manual_seed(seed)
    rebuilt = build(again).to(device).eval()
    x = seeded_randn((2, spec.in_channels, size, size), seed + 1, device)
    with torch.no_grad():
        out = model(x)
        if tuple(out.shape) != (2, spec.num_classes):
            raise ViolationError(f"the model's output has shape {tuple(out.shape)}")
        if not all_close(rebuilt(x), out, exact=True):
            raise ViolationError("rebuilding the spec from JSON with the same seed changes outputs")
    return spec.to_json()


SIZES = (8, 7)  # an odd size catches padding that only works for even inputs


RELATIONS = ("in == out", "in < out", "in > out")


@dataclass(frozen=True)
class ShapeCase:
    """One construction of the block: channels, stride and the shortcut strategy serving it."""

    in_channels: int
    stride: int
    shortcut: str

    def describe(self, out_channels: int) -> str:
        return (
            f"stride {self.stride}, {self.in_channels} -> {out_channels} channels, "
            f"shortcut {self.shortcut!r}"
        )


class CountingAct:
    """An ``act_layer`` that counts the modules it makes (SiLU, so it differs from ReLU)."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> nn.Module:
        self.made += 1
        return nn.SiLU()


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
