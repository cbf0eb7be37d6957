"""Activation (gradient) checkpointing of runs of blocks, without double-counted norm
statistics.

``torch.utils.checkpoint`` runs a block's forward a second time during backward to rebuild
the activations it did not keep. In training mode that second run would update every
batch norm's running statistics (and ``num_batches_tracked``) again. Here the block's
batch-norm buffers are put back after the recomputation as they were before it (the
recomputation normalizes with the batch's statistics, as the first run did, so its
outputs are the same; and it saves the same tensors, as checkpoint requires). The torch
RNG state is restored before the recomputation (``preserve_rng_state``, on by default), so
stochastic depth drops the same samples twice.

Blocks are checkpointed in segments (runs) of :data:`DEFAULT_SEGMENT` consecutive blocks
by default: each segment keeps only its input, and ``torch.utils.checkpoint``'s fixed cost
per call (saving the RNG state, packing and checking the saved tensors) is paid once per
segment rather than once per block, which is most of the overhead on deep, thin nets.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["DEFAULT_SEGMENT", "check_segment", "checkpoint_modules", "checkpoint_segments",
           "no_running_stat_updates"]  # fmt: skip

DEFAULT_SEGMENT = 4
"""Blocks per checkpointed segment unless a model is told otherwise (see
docs/benchmarks.md, "Gradient checkpointing", for the measurement that chose it)."""


@contextmanager
def no_running_stat_updates(*modules: nn.Module) -> Iterator[None]:
    """Whatever runs inside leaves the batch norms' running statistics of ``modules`` as
    they were on entry (they are put back on exit); outputs are not affected.
    """
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


def _contexts(
    modules: Sequence[nn.Module],
) -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
    return nullcontext(), no_running_stat_updates(*modules)


def _run(modules: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = module(x)
    return x


def checkpoint_modules(modules: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``modules`` applied in turn to ``x``, keeping only ``x`` for backward and recomputing
    the rest there (non-reentrant ``torch.utils.checkpoint``; norm statistics updated once).
    """
    modules = tuple(modules)
    out: torch.Tensor = checkpoint(
        _run,
        modules,
        x,
        use_reentrant=False,
        context_fn=functools.partial(_contexts, modules),
    )
    return out


def check_segment(segment: int) -> int:
    """``segment`` if it is a positive int, else a ``ValueError``."""
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
        raise ValueError(f"segment must be a positive int (blocks per checkpoint); got {segment!r}")
    return segment


def checkpoint_segments(
    modules: Sequence[nn.Module], x: torch.Tensor, segment: int = DEFAULT_SEGMENT
) -> torch.Tensor:
    """``modules`` applied in turn to ``x``, checkpointed in runs of ``segment`` (the last
    run may be shorter); see :func:`checkpoint_modules`.
    """
    modules = tuple(modules)
    for start in range(0, len(modules), segment):
        x = checkpoint_modules(modules[start : start + segment], x)
    return x
