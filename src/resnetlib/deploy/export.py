"""Export with a dynamic batch dimension: ``torch.export`` programs (``.pt2``) and ONNX.

Both trace the model in eval mode (its own mode is restored afterwards) with an example
batch of two, and keep the batch dimension symbolic, so one file serves every batch size.
ONNX goes through torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), which
needs ``onnx`` and ``onnxscript``: ``pip install "resnetlib[export]"``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from torch.export import ExportedProgram

__all__ = ["MissingDependencyError", "example_input", "export_onnx", "export_program", "export_pt2"]

PathLike = str | os.PathLike[str]
ONNX_PACKAGES = ("onnx", "onnxscript")


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(packages: tuple[str, ...], purpose: str) -> None:
    """Raise :class:`MissingDependencyError` unless every package in ``packages`` imports."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f'{purpose} needs {", ".join(missing)}: pip install "resnetlib[export]"'
        )


def example_input(
    model: nn.Module, input_size: tuple[int, int, int] | None = None, batch: int = 2
) -> torch.Tensor:
    """A random ``(batch, C, H, W)`` input on the model's device; the size defaults to the
    model's ``default_input_size`` (what its stem was designed for).
    """
    if input_size is None:
        default = getattr(model, "default_input_size", None)
        if default is None:
            raise ValueError("this model has no default_input_size; pass input_size=(C, H, W)")
        channels, height, width = default
        input_size = (int(channels), int(height), int(width))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    return torch.randn(batch, *input_size, device=device, dtype=dtype)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _dynamic_batch(x: torch.Tensor) -> tuple[dict[int, object]]:
    return ({0: torch.export.Dim("batch", min=1)},)


def export_program(
    model: nn.Module, input_size: tuple[int, int, int] | None = None
) -> ExportedProgram:
    """``torch.export.export`` of ``model`` in eval mode, the batch dimension dynamic."""
    x = example_input(model, input_size)
    with _eval(model):
        return torch.export.export(model, (x,), dynamic_shapes=_dynamic_batch(x))


def export_pt2(
    model: nn.Module, path: PathLike, input_size: tuple[int, int, int] | None = None
) -> None:
    """Write :func:`export_program`'s program to ``path`` (load it with
    ``torch.export.load(path).module()``).
    """
    torch.export.save(export_program(model, input_size), os.fspath(path))


def export_onnx(
    model: nn.Module,
    path: PathLike,
    input_size: tuple[int, int, int] | None = None,
    *,
    output_names: Sequence[str] = ("output",),
) -> None:
    """Write ``model`` in eval mode as ONNX to ``path``: input ``"input"``, outputs
    ``output_names``, the batch dimension dynamic. Needs the ``export`` extra.
    """
    require(ONNX_PACKAGES, "ONNX export")
    x = example_input(model, input_size)
    with _eval(model):
        program = torch.onnx.export(
            model,
            (x,),
            input_names=["input"],
            output_names=list(output_names),
            dynamic_shapes=_dynamic_batch(x),
            dynamo=True,
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(os.fspath(path))
