"""The inference fast path in one call: fold batch norms, channels_last, optionally compile;
or int8."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .fuse import fuse_bn

__all__ = ["optimize_for_inference"]


def _to_channels_last(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        arg.contiguous(memory_format=torch.channels_last)
        if isinstance(arg, torch.Tensor) and arg.dim() == 4
        else arg
        for arg in args
    )


def optimize_for_inference(
    model: nn.Module,
    *,
    channels_last: bool = True,
    compile: bool = False,
    example_input: torch.Tensor | None = None,
    int8: bool = False,
    calibration: Iterable[Any] | None = None,
) -> nn.Module:
    """An inference-only copy of ``model``: batch norms folded (:func:`fuse_bn`), weights
    and 4-d inputs in ``torch.channels_last``, and, with ``compile=True``, ``torch.compile``
    with inductor's freezing. Call it under ``torch.no_grad()`` or
    ``torch.inference_mode()``: it refuses backward. ``example_input`` (with
    ``compile=True``) is run once here so that compilation happens now. ``model`` itself is
    never changed.

    ``int8=True`` returns :func:`resnetlib.deploy.quantize`'s int8 model instead (CPU,
    calibrated on ``calibration``, an iterable of input batches; ``channels_last`` does not
    apply).
    """
    if int8:
        from .quantize import quantize

        if calibration is None:
            raise ValueError("int8=True needs calibration: an iterable of typical input batches")
        fast: nn.Module = quantize(model, calibration, compile=compile)
    elif calibration is not None:
        raise ValueError("calibration is used only with int8=True; pass int8=True or drop it")
    else:
        fast = fuse_bn(model)
        if channels_last:
            # torch 2.13's stubs need this ignore, 2.14's do not (hence unused-ignore)
            fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload, unused-ignore]
            fast.register_forward_pre_hook(_to_channels_last)
        if compile:
            fast = torch.compile(fast, options={"freezing": True})  # type: ignore[assignment]
    if compile and example_input is not None:
        with torch.no_grad():
            fast(example_input)
    return fast
