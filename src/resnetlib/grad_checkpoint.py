"""Activation (gradient) checkpointing of one block, without double-counted norm statistics.

``torch.utils.checkpoint`` runs a block's forward a second time during backward to rebuild
the activations it did not keep. In training mode that second run would update every
batch norm's running statistics (and ``num_batches_tracked``) again. Here the block's
batch-norm buffers are put back after the recomputation as they were before it (the
recomputation normalizes with the batch's statistics, as the first run did, so its
outputs are the same; and it saves the same tensors, as checkpoint requires). The torch
RNG state is restored before the recomputation (``preserve_rng_state``, on by default), so
stochastic depth drops the same samples twice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_modules", "no_running_stat_updates"]


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
