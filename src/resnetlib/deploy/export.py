"""Export with a dynamic batch dimension (``dynamic_size=True``: height and width too, or
the export is refused): ``torch.export`` programs (``.pt2``) and ONNX (torch's dynamo
exporter, ``pip install "resnetlib[export]"``). Models are traced in eval mode on a batch of two.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..common import PathLike, evaluating, first_line
from ..core.features import ResNetFeatures
from ..files import atomic_path
from ..limits import MAX_IMAGE_SIDE
from ..validate import check_input_size, is_int
from .contract import export_metadata

if TYPE_CHECKING:
    from torch.export import ExportedProgram

__all__ = ["MissingDependencyError", "export_onnx", "export_program", "export_pt2", "trace_size"]

ONNX_PACKAGES = ("onnx", "onnxscript")


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(packages: tuple[str, ...], purpose: str, extra: str = "export") -> None:
    """Raise :class:`MissingDependencyError` unless every package in ``packages`` is installed."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f'{purpose} needs {", ".join(missing)}: pip install "resnetlib[{extra}]"'
        )


_QUIET_LOGGERS = (
    "torchao",
    "torch.utils._pytree",
    "torch.onnx._internal.exporter._registration",
    "torch.fx.experimental.symbolic_shapes",  # a failed capture's graph, dumped whole
)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence what torch's exporters and torchao log and warn while they run."""
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def capturing(what: str) -> Iterator[None]:
    """A failure of torch's exporters as one line: a ``ValueError`` saying ``what`` could not
    be done, with the first cause's type and first line (not the partial graph torch prints
    to stderr, nor the ONNX exporter's wrapping of the cause)."""
    try:
        with redirect_stderr(io.StringIO()):
            yield
    except Exception as error:
        cause: BaseException = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ValueError(
            f"cannot {what} ({type(cause).__name__}: {first_line(cause, 300)})"
        ) from error


def dynamic_shapes(dynamic_size: bool = False) -> tuple[dict[int, object]]:
    """The batch dimension symbolic; with ``dynamic_size``, height and width too."""
    dims: dict[int, object] = {0: torch.export.Dim("batch", min=1)}
    if dynamic_size:
        dims.update({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO})
    return (dims,)


def _reduction(model: nn.Module) -> int:
    """How many times smaller the deepest features are than the input (32 when no module says)."""
    for module in model.modules():
        info = getattr(module, "feature_info", None)
        if isinstance(info, (list, tuple)) and info:
            return max(int(item["reduction"]) for item in info)
    return 32


def trace_size(
    model: nn.Module, input_size: tuple[int, int, int] | None = None, *, dynamic_size: bool
) -> tuple[int, int, int]:
    """``input_size`` (default: the model's ``default_input_size``), with ``dynamic_size``
    each side at least twice the model's reduction (a 1-pixel feature map fixes the size).

    Raises:
        ValueError: no size to trace at, or one ``resnetlib.validate.check_input_size``
            refuses for the model's ``in_channels`` (the CLI's ``--input`` check too).
    """
    size = input_size if input_size is not None else getattr(model, "default_input_size", None)
    if size is None:
        raise ValueError("this model has no default_input_size; pass input_size=(C, H, W)")
    channels, height, width = check_input_size(size, in_channels=in_channels(model))
    least = min(2 * _reduction(model), MAX_IMAGE_SIDE) if dynamic_size else 0
    return channels, max(height, least), max(width, least)


def in_channels(model: nn.Module) -> int | None:
    """The channels ``model`` takes: its spec's, else its ``default_input_size``'s, else None."""
    channels = getattr(getattr(model, "spec", None), "in_channels", None)
    if is_int(channels):
        return channels
    default = getattr(model, "default_input_size", None) or (None,)
    return default[0] if isinstance(default, (tuple, list)) and is_int(default[0]) else None


def smallest_side(model: nn.Module) -> int:
    """The smallest side a ``dynamic_size`` export takes (every feature map wider than 1)."""
    return _reduction(model) + 1


def _example(model: nn.Module, size: tuple[int, int, int]) -> torch.Tensor:
    parameter = next(model.parameters(), torch.empty(0, device="cpu", dtype=torch.float32))
    return torch.randn(2, *size, device=parameter.device, dtype=parameter.dtype)


def _check_dynamic(program: ExportedProgram, x: torch.Tensor, least: int) -> None:
    """Refuse a program whose height or width ``torch.export`` fixed, bounded or tied to a
    value (``H * W == 4096``): it must run at ``least`` x ``least + 2``."""
    channels, height, width = (int(n) for n in x.shape[1:])
    user = program.graph_signature.user_inputs  # placeholders' names
    shape = next((n.meta["val"].shape for n in program.graph.nodes if n.name in user), None)
    fixed = []
    for axis, name in ((2, "height"), (3, "width")):
        dim = None if shape is None else shape[axis]
        if not isinstance(dim, torch.SymInt):
            fixed.append(f"{name} fixed at {dim}")
            continue
        bounds = program.range_constraints.get(dim.node.expr)
        if bounds is not None and bool(bounds.upper <= MAX_IMAGE_SIDE):
            fixed.append(f"{name} at most {bounds.upper}")
    if not fixed:
        other = torch.zeros(1, channels, least, least + 2, device=x.device, dtype=x.dtype)
        try:
            with torch.no_grad():
                program.module()(other)
        except Exception as failed:  # a runtime assertion on the sizes, as torch words it
            fixed.append(f"a size that fails at {least}x{least + 2} ({first_line(failed, 200)})")
    if fixed:
        raise ValueError(
            f"--dynamic-size: traced at {height}x{width}, torch.export kept {'; '.join(fixed)} "
            "for this model; export without --dynamic-size, or with a larger --input"
        )


def export_program(
    model: nn.Module,
    input_size: tuple[int, int, int] | None = None,
    *,
    dynamic_size: bool = False,
) -> ExportedProgram:
    """``torch.export.export`` of ``model`` in eval mode, traced at ``trace_size()``.

    Raises:
        ValueError: an ``input_size`` ``trace_size`` refuses; with ``dynamic_size``,
            torch.export could not keep height and width dynamic.
    """
    x = _example(model, trace_size(model, input_size, dynamic_size=dynamic_size))
    with evaluating(model), quiet(), capturing("export: torch.export cannot capture this model"):
        program = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes(dynamic_size))
    if dynamic_size:
        _check_dynamic(program, x, smallest_side(model))
    return program


def export_pt2(
    model: nn.Module,
    path: PathLike,
    input_size: tuple[int, int, int] | None = None,
    *,
    dynamic_size: bool = False,
) -> None:
    """Write :func:`export_program`'s program to ``path`` (``torch.export.load(path).module()``
    loads it), the model's contract as extra files (its ``input_size`` the traced one, unless
    ``dynamic_size``); a failed write leaves the previous file.

    Raises:
        ValueError: as :func:`export_program`.
    """
    size = trace_size(model, input_size, dynamic_size=dynamic_size)  # checked first
    metadata = export_metadata(model, None if dynamic_size else size)  # before the trace
    program = export_program(model, input_size, dynamic_size=dynamic_size)
    with atomic_path(path) as partial:
        torch.export.save(program, os.fspath(partial), extra_files=metadata)


def export_onnx(
    model: nn.Module,
    path: PathLike,
    input_size: tuple[int, int, int] | None = None,
    *,
    output_names: Sequence[str] = ("output",),
    dynamic_size: bool = False,
    calibration: Iterable[Any] | None = None,
) -> None:
    """Write ``model`` as ONNX to ``path``, input ``"input"`` (a features-only backbone's
    outputs named by default after the modules whose maps they are), its contract in
    ``metadata_props`` (its ``input_size`` the traced one, unless ``dynamic_size``); a failed
    write leaves the previous file. With ``calibration`` (as
    :func:`resnetlib.deploy.quantize` takes it) the file is int8 in QDQ form, traced at the
    calibration batches' size (an ``input_size`` given must be theirs).

    Raises:
        ValueError: an ``input_size`` ``trace_size`` refuses, or not the calibration's.
    """
    from .quantize import prepare_and_convert

    require(ONNX_PACKAGES, "ONNX export")
    if isinstance(model, ResNetFeatures) and tuple(output_names) == ("output",):
        output_names = model.feature_info.module_name()  # layer2, ...: not "output" for one
    size = trace_size(model, input_size, dynamic_size=dynamic_size)  # checked first
    metadata = export_metadata(model, None if dynamic_size else size)  # before the trace
    exported: nn.Module = model
    if calibration is not None:
        exported, x = prepare_and_convert(model, calibration, dynamic_size=dynamic_size)
        traced = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        if traced != size and not dynamic_size:
            if input_size is not None:
                raise ValueError(
                    f"input_size {size} is not the calibration batches' size {traced}, at which "
                    "the int8 graph is traced: give batches of input_size (calibration_batches("
                    "..., input_size=...)) or leave input_size out"
                )
            metadata = export_metadata(model, traced)
    else:
        x = _example(model, size)
    context = evaluating(model) if calibration is None else torch.no_grad()
    with context, quiet(), capturing("export to ONNX"):
        program = torch.onnx.export(
            exported,
            (x,),
            input_names=["input"],
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes(dynamic_size),
            dynamo=True,
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    if dynamic_size and program.exported_program is not None:
        _check_dynamic(program.exported_program, x, smallest_side(model))
    program.model.metadata_props.update(metadata)
    with atomic_path(path) as partial:
        program.save(os.fspath(partial))
