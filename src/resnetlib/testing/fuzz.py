"""Fuzzing whole networks of a block (:func:`fuzz_block`); needs hypothesis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ..core.build import build, check_block_options
from ..core.spec import JSONScalar
from ..nn.blocks import BLOCKS, ResidualBlock
from ..validate import is_int
from .checks import (
    ConformanceError,
    ViolationError,
    check_batch_independence,
    check_gradients,
    registered_name,
    resolve_subject,
    seeded,
    seeded_randn,
)

if TYPE_CHECKING:
    from .strategies import Case

__all__ = ["FUZZ_PROPERTIES", "fuzz_block"]


FUZZ_PROPERTIES: tuple[str, ...] = ("build", "output_shape", "gradients", "batch_independence")
"""What :func:`fuzz_block` checks on every generated spec: it builds, its output shape is right
in train and eval mode, every parameter gets a finite gradient, eval outputs are per sample."""


class _FuzzFailureError(Exception):
    """A generated case broke a property; ``args``: the property, the reason and the case."""


def _fuzz_case(case: Case, device: torch.device, seed: int) -> None:
    spec, prop = case.spec, "build"
    try:
        torch.manual_seed(seed)
        model = build(spec).to(device)
        size = (case.batch_size, spec.in_channels, case.image_size, case.image_size)
        x = seeded_randn(size, seed + 1, device)
        expected = (case.batch_size, spec.num_classes)
        prop = "output_shape"
        for mode in ("train", "eval"):
            model.train(mode == "train")
            with torch.no_grad():
                shape = tuple(model(x).shape)
            if shape != expected:
                raise ViolationError(f"{mode} mode: output shape {shape}, expected {expected}")
        prop = "gradients"
        check_gradients(model.train(), model(x), "train mode")
        prop = "batch_independence"
        check_batch_independence(model, x, "eval mode")
    except ViolationError as violation:
        raise _FuzzFailureError(prop, str(violation), case) from violation
    except Exception as error:  # the block's own code raised: that is the finding
        raise _FuzzFailureError(prop, f"raised {type(error).__name__}: {error}", case) from error


def fuzz_block(
    block: str | type[ResidualBlock],
    *,
    block_options: Mapping[str, JSONScalar] | None = None,
    max_examples: int = 20,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> int:
    """Check :data:`FUZZ_PROPERTIES` on generated networks of ``block`` (needs hypothesis).

    The specs come from :func:`resnetlib.testing.strategies.cases` with its defaults, and
    ``block_options``, if given, in every spec. Deterministic for a ``seed``, with no example
    database and the caller's random state untouched. Returns how many cases were checked;
    raises :class:`ConformanceError` naming the violated property and the shrunk spec as JSON.
    """
    # First: without hypothesis this raises the ImportError that names the extra.
    from .strategies import cases

    cls, label = resolve_subject(BLOCKS, "block", block)
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Flaky

    if not is_int(max_examples) or max_examples < 1:
        raise ValueError(f"max_examples must be an int >= 1; got {max_examples!r}")
    options = None if block_options is None else dict(block_options)
    if options is not None:
        check_block_options(cls.__name__, cls, options)
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
        # Phase.explain runs after shrinking, and the example raised would be its last one,
        # not the shrunk one.
        phases=[phase for phase in Phase if phase.name != "explain"],
    )
    checked = 0
    name, registered = registered_name(BLOCKS, cls, "_fuzz_block_")
    strategy = cases(blocks=(name,), block_options=options)

    def check(case: Case) -> None:
        nonlocal checked
        _fuzz_case(case, torch_device, seed)
        checked += 1

    run = hypothesis_seed(seed)(run_settings(given(strategy)(check)))
    try:
        with seeded(torch_device):
            run()
    except _FuzzFailureError as failure:
        prop, detail, case = failure.args
        # An unregistered class was fuzzed under a name gone by now: report its own name.
        shown = cls.__name__ if registered else name
        first = f"resnetlib.register_block({shown!r}, {cls.__name__}), then " if registered else ""
        raise ConformanceError(
            f"{label} violates {prop!r} on a generated spec (the smallest failing one found):\n"
            f"  {detail}\n  spec: {replace(case.spec, block=shown).to_json()}\n  input: batch "
            f"{case.batch_size} x {case.spec.in_channels} x {case.image_size} x "
            f"{case.image_size}\nRebuild it with {first}"
            "resnetlib.build(resnetlib.ResNetSpec.from_json(...))."
        ) from failure
    except Flaky as error:
        raise ConformanceError(
            f"{label} failed on a generated spec and then passed when it was replayed: its "
            f"output or gradients are not deterministic for a fixed seed ({error})"
        ) from error
    finally:
        if registered:
            BLOCKS.unregister(name)
    return checked
