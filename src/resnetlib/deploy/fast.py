"""The inference fast path in one call: folded, channels_last, optionally compiled; or int8."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .fuse import fuse_bn
from .quantize import quantize

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
    """An inference-only copy of ``model`` (it refuses backward): batch norms folded
    (:func:`fuse_bn`), weights and 4-d inputs in ``torch.channels_last``, with
    ``compile=True`` compiled with inductor's freezing, now if ``example_input`` is given.
    ``int8=True``: :func:`resnetlib.deploy.quantize`'s model instead, calibrated on
    ``calibration``. ``model`` itself is never changed.
    """
    if int8:
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
