"""Activation checkpointing of runs of blocks: the recomputation in backward leaves the
batch norms' running statistics as they were before it and replays the RNG state (so drop
path drops the same samples twice)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["DEFAULT_SEGMENT", "checkpoint_modules", "checkpoint_segments",
           "no_running_stat_updates"]  # fmt: skip

DEFAULT_SEGMENT = 4
"""Blocks per checkpointed segment (docs/benchmarks.md, "Gradient checkpointing", chose it)."""


@contextmanager
def no_running_stat_updates(*modules: nn.Module) -> Iterator[None]:
    """Put the batch norms' running statistics of ``modules`` back on exit as they were."""
    saved = [
        (buffer, buffer.clone())
        for module in modules
        for norm in module.modules()
        if isinstance(norm, _BatchNorm)
        for buffer in (norm.running_mean, norm.running_var, norm.num_batches_tracked)
        if buffer is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def checkpoint_modules(modules: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``modules`` applied in turn to ``x``, keeping only ``x`` for backward (non-reentrant
    ``torch.utils.checkpoint``; norm statistics updated once). Under ``torch.compile`` the
    recomputation is traced, its buffer updates dropped: no ``context_fn`` (Dynamo takes none
    made here)."""
    run = nn.Sequential(*modules)
    options: dict[str, Any] = {}
    if not torch.compiler.is_compiling():
        options["context_fn"] = lambda: (nullcontext(), no_running_stat_updates(run))
    out: torch.Tensor = checkpoint(run, x, use_reentrant=False, **options)
    return out


def checkpoint_segments(
    modules: Sequence[nn.Module], x: torch.Tensor, segment: int = DEFAULT_SEGMENT
) -> torch.Tensor:
    """``modules`` applied in turn to ``x``, checkpointed in runs of ``segment``."""
    for start in range(0, len(modules), segment):
        x = checkpoint_modules(modules[start : start + segment], x)
    return x
