"""Parameter and multiply-add counts, and a per-stage summary table."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .common import evaluating
from .core.features import ResNetFeatures
from .core.model import ResNet
from .validate import check_input_size, is_int

__all__ = ["ModelSummary", "SummaryRow", "count_flops", "count_parameters", "summary"]

_T = TypeVar("_T")
_M = TypeVar("_M", bound=nn.Module)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameter elements (shared parameters counted once); with
    ``trainable_only``, of those that require gradients.

    Raises:
        ValueError: an int8 model (its weights are packed buffers: count the float model).

    Examples:
        >>> import resnetlib as rl
        >>> rl.count_parameters(rl.resnet56())  # the paper's 0.85M
        853018
    """
    _check_float(model, "count_parameters()")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_float(model: nn.Module, caller: str) -> None:
    """Refuse an int8 model: its weights are packed buffers (its parameters are its float
    biases alone) and oneDNN's int8 convolutions escape torch's FLOP counter."""
    if any(t.dtype == torch.int8 or str(t.layout) == "torch._mkldnn" for t in model.buffers()):
        raise ValueError(
            f"{caller}: an int8 model packs its weights for oneDNN, so its count would miss "
            "them; count the float model it was quantized from (the same parameters and "
            "multiply-adds)"
        )


def _example_input(
    model: nn.Module, input_size: torch.Tensor | Sequence[int] | None, caller: str
) -> torch.Tensor:
    """One all-zero ``(1, C, H, W)`` sample on the model's device and in its dtype."""
    if input_size is None:
        input_size = getattr(model, "default_input_size", None)
        if input_size is None:
            raise ValueError(
                f"{caller}: {type(model).__name__} has no default_input_size (resnetlib models "
                "do); give the input as (C, H, W), (N, C, H, W) or an example tensor"
            )
    if isinstance(input_size, torch.Tensor):
        size = tuple(input_size.shape)
        given = f"a tensor of shape {size}"  # its shape, never its contents
    else:
        sequence = isinstance(input_size, Sequence) and not isinstance(input_size, (str, bytes))
        size = tuple(input_size) if sequence else ()
        given = repr(input_size)
    size = size[1:] if len(size) == 4 else size
    if len(size) != 3 or any(not is_int(s) or s < 1 for s in size):
        raise ValueError(
            f"{caller}: the input must be (C, H, W) or (N, C, H, W) of ints >= 1, or a "
            f"tensor of that shape; got {given}"
        )
    spec = getattr(model, "spec", None)  # a resnetlib model knows its channels
    channels = None if spec is None else spec.in_channels
    check_input_size(size, name=f"{caller}: the input", in_channels=channels)
    reference = next(model.parameters(), torch.empty(0, device="cpu", dtype=torch.float32))
    return torch.zeros((1, *size), device=reference.device, dtype=reference.dtype)


def _shapes_only(model: _M, x: torch.Tensor, run: Callable[[_M, torch.Tensor], _T]) -> _T:
    """``run(model, x)`` in eval mode on meta copies of both (shapes only, no arithmetic); on
    the model itself where it cannot be copied or an operation has no meta kernel."""

    def measured(module: _M, example: torch.Tensor) -> _T:
        with evaluating(module):
            return run(module, example)

    if x.device.type != "meta":
        memo: dict[int, object] = {}  # each parameter and buffer, once, as a meta tensor
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if id(tensor) not in memo:
                twin = torch.empty_like(tensor, device="meta")
                if isinstance(tensor, nn.Parameter):
                    twin = nn.Parameter(twin, requires_grad=tensor.requires_grad)
                memo[id(tensor)] = twin
        try:
            copied = copy.deepcopy(model, memo)
        except Exception:  # a module that refuses to be copied is measured as it is
            return measured(model, x)
        try:
            return measured(copied, torch.empty_like(x, device="meta"))
        except (NotImplementedError, RuntimeError):  # an op without a meta kernel
            pass
    return measured(model, x)


def _measure(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, int]:
    with FlopCounterMode(display=False) as counter:
        out = fn(x)
    return out, counter.get_total_flops() // 2  # FLOPs: two per multiply-add


def count_flops(model: nn.Module, input_size: torch.Tensor | Sequence[int] | None = None) -> int:
    """Multiply-adds (not FLOPs, about twice as many) of one forward pass on one sample, as
    the paper counts: convolutions and the classifier; norms, activations, additions and
    pooling are free. ``input_size`` is ``(C, H, W)`` or ``(N, C, H, W)`` (counted per
    sample), an example tensor of such a shape, or by default the model's
    ``default_input_size``. Runs in eval mode on a meta-device copy (shapes only).

    Raises:
        ValueError: ``input_size`` is not (C, H, W), (N, C, H, W) or a tensor of such a shape,
            or has other channels than the model's ``in_channels``; an int8 model.

    Examples:
        >>> import torch, resnetlib as rl
        >>> with torch.device("meta"):
        ...     model = rl.resnet50()
        >>> rl.count_flops(model, (3, 224, 224))
        4089184256
    """
    _check_float(model, "count_flops()")
    x = _example_input(model, input_size, "count_flops()")
    return _shapes_only(model, x, lambda module, example: _measure(module, example)[1])


@dataclass(frozen=True)
class SummaryRow:
    """One row of a [`ModelSummary`][resnetlib.analysis.ModelSummary]: a stem, stage or head."""

    name: str
    output_shape: tuple[int, ...]
    parameters: int
    mult_adds: int


@dataclass(frozen=True)
class ModelSummary:
    """A per-stage table; ``str()`` renders it."""

    input_size: tuple[int, ...]
    rows: tuple[SummaryRow, ...]
    title: str = ""

    @property
    def total_parameters(self) -> int:
        return sum(row.parameters for row in self.rows)

    @property
    def total_mult_adds(self) -> int:
        return sum(row.mult_adds for row in self.rows)

    def __str__(self) -> str:
        header = ("stage", "output", "params", "mult-adds")
        body = [
            (r.name, "x".join(map(str, r.output_shape)), f"{r.parameters:,}", f"{r.mult_adds:,}")
            for r in self.rows
        ]
        total = ("total", "", f"{self.total_parameters:,}", f"{self.total_mult_adds:,}")
        table = [header, *body, total]
        widths = [max(len(line[i]) for line in table) for i in range(4)]

        def render(line: tuple[str, str, str, str]) -> str:
            return "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()

        rule = "-" * len(render(header))
        lines = [self.title] if self.title else []
        lines.append(f"input: {'x'.join(map(str, self.input_size))}")
        lines += [render(header), rule, *map(render, body), rule, render(total)]
        lines.append(
            f"{self.total_parameters / 1e6:.3f} M parameters, "
            f"{self.total_mult_adds / 1e9:.3f} G multiply-adds"
        )
        return "\n".join(lines)


def summary(
    model: ResNet | ResNetFeatures,
    input_size: torch.Tensor | Sequence[int] | None = None,
    title: str = "",
) -> ModelSummary:
    """Output shape, parameters and multiply-adds of the stem, each stage and the head (none
    for a :class:`ResNetFeatures` backbone), as a table that ``str()`` renders.
    ``input_size`` is as :func:`count_flops` takes it.

    Raises:
        TypeError: ``model`` is neither a ResNet nor a features-only backbone.
        ValueError: ``input_size`` is not a valid input size.

    Examples:
        >>> import resnetlib as rl
        >>> table = rl.analysis.summary(rl.resnet56())
        >>> [row.name for row in table.rows], table.total_parameters
        (['stem', 'layer1', 'layer2', 'layer3', 'head'], 853018)
    """
    if not isinstance(model, (ResNet, ResNetFeatures)):
        raise TypeError(
            f"summary() takes a resnetlib ResNet or features-only backbone, whose stem and "
            f"stages make its rows; got {type(model).__name__}. For any float module, "
            "count_parameters(model) and count_flops(model, (C, H, W)) work"
        )
    if not isinstance(title, str):
        raise TypeError(f"summary() title must be text; got {type(title).__name__}")
    example = _example_input(model, input_size, "summary()")
    rows = _shapes_only(model, example, _summary_rows)
    return ModelSummary(input_size=tuple(example.shape[1:]), rows=rows, title=title)


def _summary_rows(model: ResNet | ResNetFeatures, x: torch.Tensor) -> tuple[SummaryRow, ...]:
    rows: list[SummaryRow] = []

    def add(
        name: str, modules: Sequence[nn.Module], fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        nonlocal x
        x, macs = _measure(fn, x)
        params = sum(count_parameters(m) for m in modules)
        rows.append(SummaryRow(name, tuple(x.shape[1:]), params, macs))

    stem = nn.Sequential(*(model.get_submodule(n) for n in model.stem_names))
    add("stem", list(stem), model.forward_stem if isinstance(model, ResNet) else stem)
    for name in (*model.stage_names, *model.final_names):
        module = model.get_submodule(name)
        add(name, [module], module)
    if isinstance(model, ResNet):
        add("head", [model.avgpool, model.fc], model.forward_head)
    return tuple(rows)
