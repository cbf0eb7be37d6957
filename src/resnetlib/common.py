"""What every layer shares (the bottom layer, beside :mod:`resnetlib.validate`: it imports
nothing from resnetlib)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TypeAlias

import torch
from torch import nn

__all__ = [
    "PathLike",
    "check_finite_outputs",
    "evaluating",
    "first_line",
    "installed_version",
    "listing",
    "optional_import",
    "printable",
    "resolve_device",
    "warn_caller",
    "weights_not_finite",
]

PathLike: TypeAlias = str | os.PathLike[str]
"""A file path as ``open`` takes it: a ``str`` or a ``pathlib.Path`` (any ``os.PathLike``)."""


def optional_import(module: str, needs: str, extra: str) -> ModuleType:
    """Import ``module`` from an optional dependency, or raise ``ModuleNotFoundError``:
    ``'<needs>: pip install "resnetlib[<extra>]"'``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ModuleNotFoundError(
            f'{needs}: pip install "resnetlib[{extra}]"', name=module.partition(".")[0]
        ) from error


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The device to run on: ``None`` is the GPU when there is one, else the CPU; ``"cuda"``
    without an index is this process's GPU (``LOCAL_RANK`` under ``torchrun``, else 0).

    Raises:
        ValueError: not a device name, the meta device, or a device not available here (CUDA
        where there is none, an index past the last GPU, mps on a torch built without it).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{device!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if resolved.type == "meta":
        raise ValueError(f"{device} holds no values; use cpu or cuda")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{device}: no CUDA device is available here")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{device}: not available here (torch.backends.mps.is_available() is False)"
        )
    if resolved.type != "cpu":
        try:  # an empty tensor there: what torch would refuse at the first use
            torch.empty(0, device=resolved)
        except Exception as error:  # RuntimeError, or an ImportError for a backend not built
            reason = first_line(error).split(". ")[0][:200]  # torch's first sentence
            raise ValueError(f"{device}: not available here ({reason})") from None
    return resolved


_UNPRINTED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: object) -> str:
    """``str(text)`` safe to print on one line of a terminal: control and format characters,
    line separators and lone surrogates written as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        _escaped(ord(char)) if unicodedata.category(char) in _UNPRINTED else char for char in text
    )


def listing(items: Sequence[object], limit: int, separator: str = ", ") -> str:
    """The first ``limit`` items for a one-line message (each :func:`printable`, cut to 100
    characters), then how many more."""
    shown = separator.join(printable(str(item)[:100]) for item in items[:limit])
    return shown + (f"{separator}... ({len(items) - limit} more)" if len(items) > limit else "")


def installed_version() -> str:
    """resnetlib's installed version, as runs and exports record it (or ``unknown``)."""
    try:
        return importlib.metadata.version("resnetlib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of ``error``'s message for a one-line report (:func:`printable`, cut
    at ``limit`` characters), or its type's name where the message is empty."""
    lines = str(error).strip().splitlines()
    return printable(lines[0][:limit]) if lines else type(error).__name__


def _escaped(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the duration; ``module``'s own mode (which ``train(mode)``
    sets on every submodule) is restored after, also when the body raises."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


def weights_not_finite(module: nn.Module) -> str:
    """``"hold NaN or inf (NAMES): ..."``, what a refusal says of ``module``'s floating-point
    parameters and buffers that hold NaN or inf, or ``""`` where none does (one device sync
    for those on the first one's device)."""
    named = (*module.named_parameters(), *module.named_buffers())
    floating = [(name, t) for name, t in named if t.is_floating_point()]
    if not floating:
        return ""
    device = floating[0][1].device
    finite = torch.stack([t.isfinite().all().to(device) for _, t in floating]).tolist()
    bad = [name for (name, _), ok in zip(floating, finite, strict=True) if not ok]
    if not bad:
        return ""
    return (
        f"hold NaN or inf ({listing(bad, 3)}): the checkpoint is damaged or its training diverged"
    )


def check_finite_outputs(model: nn.Module, outputs: torch.Tensor) -> None:
    """Refuse a model's ``outputs`` (or a sum of them, in float64) that hold NaN or inf, as
    ``evaluate`` and ``predict`` both do: a ``ValueError`` that says whether its weights do.
    A model without parameters (an ONNX runtime's) is not looked into."""
    if bool(outputs.isfinite().all()):
        return
    if weights := weights_not_finite(model):
        why = f"its weights {weights}"
    elif any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
        why = "its weights are finite: its half-precision activations overflow (run it in fp32)"
    elif next(model.parameters(), None) is not None:
        why = (
            "its weights are finite, yet a layer computes NaN or inf on these inputs (a batch "
            "norm's negative running_var, say)"
        )
    else:
        why = "no class can be ranked by them"
    raise ValueError(f"the model's outputs are not finite (NaN or inf); {why}")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message: str) -> None:
    """A ``FutureWarning`` attributed to the first caller outside resnetlib (the user's line)."""
    frame = sys._getframe(1)
    level = 2  # warn_caller's caller
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, FutureWarning, stacklevel=level)
