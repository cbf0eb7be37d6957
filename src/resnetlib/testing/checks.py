"""The machinery the conformance checks share: the report types, the runner, seeded inputs
and the properties every subject is held to (gradients, serialization, batch independence,
a spec round trip)."""

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


class _CountingAct:
    """An ``act_layer`` that counts the modules it makes (SiLU, so it differs from ReLU)."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> nn.Module:
        self.made += 1
        return nn.SiLU()


def _resolve(registry: Registry[type[S]], kind: str, item: str | type[S]) -> tuple[type[S], str]:
    if isinstance(item, str):
        cls = registry.get(item)
        return cls, f"{kind} {item!r} ({cls.__name__})"
    if not isinstance(item, type):
        raise TypeError(f"expected a {kind} class or a registered {kind} name; got {item!r}")
    name = registry.name_of(item)
    label = f"{kind} {name!r} ({item.__name__})" if name else f"{kind} {item.__name__}"
    return item, label
