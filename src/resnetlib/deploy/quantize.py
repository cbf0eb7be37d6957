"""Static int8 post-training quantization for CPUs by torchao's PT2E flow: batch norms folded,
``X86InductorQuantizer`` (int8 activations per tensor, weights per output channel), lowered to
oneDNN's int8 kernels. Needs torch >= 2.8 and torchao (``pip install "resnetlib[quantize]"``).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.torch_version import TorchVersion

from ..core.data_config import set_data_config
from ..nn.norms import FrozenBatchNorm2d
from ..validate import check_input_size, check_int
from .export import capturing, dynamic_shapes, in_channels, quiet, require
from .fuse import fuse_bn, replace_module, running_statistics, unfoldable
from .preprocess import normalizing

__all__ = [
    "MIN_TORCH",
    "Int8Model",
    "QuantizeReport",
    "calibration_batches",
    "check_quantize_support",
    "quantize",
]

MIN_TORCH = "2.8"
"""The oldest torch :func:`quantize` accepts (torchao's PT2E quantization needs it)."""

# Ops that only move or view data: neither int8 compute nor float compute.
_LAYOUT_OPS = {
    "getitem",
    "view",
    "_unsafe_view",
    "reshape",
    "flatten",
    "permute",
    "t",
    "expand",
    "squeeze",
    "unsqueeze",
    "clone",
    "contiguous",
    "alias",
    "detach",
    "_to_copy",
    "sym_size",
}


def check_quantize_support() -> None:
    """Raise unless :func:`quantize` can run here: torch >= ``MIN_TORCH`` (``RuntimeError``)
    and torchao installed (``MissingDependencyError``)."""
    if TorchVersion(torch.__version__) < MIN_TORCH:
        raise RuntimeError(
            f"int8 quantization needs torch >= {MIN_TORCH} (torchao's PT2E "
            f"quantization); this is torch {torch.__version__}: upgrade torch"
        )
    require(("torchao",), "int8 quantization", extra="quantize")


@dataclass(frozen=True)
class QuantizeReport:
    """What :func:`quantize` made int8: ``quantized`` names the modules whose convolution or
    linear layer runs on int8 kernels; ``float`` gives (module, float ops) for the rest."""

    quantized: tuple[str, ...]
    float: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        lines = [f"{len(self.quantized)} convolutions and linear layers run in int8"]
        if self.float:
            lines.append(f"{len(self.float)} modules left in float:")
            lines.extend(f"  {name or '(model)'}: {ops}" for name, ops in self.float)
        return "\n".join(lines)


class Int8Model(nn.Module):
    """An int8 model made by :func:`quantize`, called like the float model it came from
    (inference only; its ``spec``, ``pretrained_cfg`` and ``default_input_size`` kept).
    ``graph`` is the lowered (or compiled) program; ``report`` says what stayed float."""

    def __init__(
        self,
        graph: nn.Module,
        report: QuantizeReport,
        source: nn.Module,
        *,
        freezing: bool = False,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.report = report
        self.freezing = freezing
        self.traced_size = size  # the traced (height, width); None: any the export allows
        for name in ("spec", "default_input_size", "num_classes"):
            if hasattr(source, name):
                object.__setattr__(self, name, getattr(source, name))
        config = getattr(source, "pretrained_cfg", None)
        if isinstance(config, Mapping):
            set_data_config(self, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.traced_size
        if size is not None and tuple(x.shape[-2:]) != size:
            raise ValueError(
                f"this int8 model takes {size[0]}x{size[1]} images (its calibration's size); "
                f"got {x.shape[-2]}x{x.shape[-1]}: resize them, or quantize with dynamic_size=True"
            )
        if not self.freezing:
            out: torch.Tensor = self.graph(x)
            return out
        from torch._inductor import config  # compiled: inductor lowers int8 only with freezing

        with config.patch(freezing=True), warnings.catch_warnings():
            # inductor's int8 lowering warns about its own tensor copies on compiling
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._inductor")
            out = self.graph(x)
        return out


def as_batches(calibration: Iterable[Any]) -> list[torch.Tensor]:
    """The calibration batches as float CPU tensors (of ``(images, labels)`` pairs, the images)."""
    if isinstance(calibration, torch.Tensor):
        raise ValueError(
            "calibration must be an iterable of input batches, not one tensor; pass [batch]"
        )
    batches = []
    for item in calibration:
        batch = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
            raise ValueError(
                "calibration batches must be 4-d (N, C, H, W) tensors or (images, labels) "
                f"pairs; got {type(batch).__name__}"
                + (f" of shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else "")
            )
        batches.append(batch.detach().to("cpu", torch.float32))
    if not batches:
        raise ValueError("calibration is empty; pass at least one batch of typical inputs")
    return batches


class _ScaleShift(nn.Module):
    """An eval-mode batch norm as the per-channel ``x * scale + shift`` it computes."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        mean, var, eps, weight, bias = running_statistics(norm)
        scale = (1.0 if weight is None else weight) / torch.sqrt(var + eps)
        shift = (0.0 if bias is None else bias) - mean * scale
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", scale.detach().clone().view(-1, 1, 1))
        self.register_buffer("shift", shift.detach().clone().view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _float_model(model: nn.Module) -> nn.Module:
    """An eval float32 CPU copy, batch norms folded or else (for torchao's speed) scale-shifts;
    in the default memory format (a channels-last model, as ``fit`` trains on the CPU, would
    trace strides that tie a dynamic size to the calibration's)."""
    folded: nn.Module = fuse_bn(model)
    for name, module in list(folded.named_modules()):
        norm = isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d))
        if norm and unfoldable(module) is None:  # else it runs in float as written
            replace_module(folded, name, _ScaleShift(module))
    folded = folded.to("cpu", torch.float32)
    for parameter in folded.parameters():  # Module.to's memory_format is not in its types
        parameter.data = parameter.data.contiguous()
    return folded


def prepare_and_convert(
    model: nn.Module, calibration: Iterable[Any], *, dynamic_size: bool = False
) -> tuple[fx.GraphModule, torch.Tensor]:
    """PT2E up to the converted (QDQ) graph, and the example input it was captured with."""
    batches = as_batches(calibration)
    channels, first = in_channels(model), batches[0]
    for batch in batches:  # the model's channels; one size unless any size is asked for
        if channels is not None and batch.shape[1] != channels:
            raise ValueError(
                f"calibration batches have {batch.shape[1]} channels; the model takes {channels}"
            )
        if not dynamic_size and batch.shape[2:] != first.shape[2:]:
            sizes = "x".join(map(str, first.shape[2:])), "x".join(map(str, batch.shape[2:]))
            raise ValueError(
                f"calibration batches must share one size, at which the int8 graph is traced "
                f"(the first is {sizes[0]}, another {sizes[1]}); resize them, or pass "
                "dynamic_size=True"
            )
    check_quantize_support()
    folded = _float_model(model)
    # a batch of at least two: export would specialize a batch of one
    example = (first if first.shape[0] > 1 else torch.cat([first, first])).contiguous()
    reduce_range = not getattr(torch.cpu, "_is_vnni_supported", lambda: True)()
    with quiet(), torch.no_grad():
        try:  # torchao's PT2E utilities, flow and x86 quantizer
            pt2e = importlib.import_module("torchao.quantization.pt2e")
            flow = importlib.import_module("torchao.quantization.pt2e.quantize_pt2e")
            x86 = importlib.import_module(
                "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer"
            )
        except ImportError as error:
            raise RuntimeError(
                f"this torchao has no PT2E x86 quantizer ({error}); upgrade torchao: "
                'pip install "resnetlib[quantize]"'
            ) from error
        with capturing("quantize: torch.export cannot capture this model"):
            exported = torch.export.export(
                folded, (example,), dynamic_shapes=dynamic_shapes(dynamic_size), strict=True
            ).module()
        config = x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
        prepared = flow.prepare_pt2e(exported, x86.X86InductorQuantizer().set_global(config))
        for batch in batches:
            prepared(batch)
        converted = flow.convert_pt2e(prepared)
        norms = [n.meta.get("nn_module_stack") for n in _norm_nodes(converted)]
        pt2e.move_exported_model_to_eval(converted)
        for node, stack in zip(_norm_nodes(converted), norms, strict=False):
            if stack and not _module_name(node):  # the rewrite to eval dropped it
                node.meta["nn_module_stack"] = stack
    return converted, example


def _norm_nodes(graph_module: fx.GraphModule) -> list[fx.Node]:
    return [
        node
        for node in graph_module.graph.nodes
        if node.op == "call_function" and "batch_norm" in _op_name(node)
    ]


def _lower(converted: fx.GraphModule, example: torch.Tensor, dynamic_size: bool) -> fx.GraphModule:
    """torchao's ``lower_pt2e_quantized_to_x86``, keeping the batch (and size) dynamic."""
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    table = torch.export.default_decompositions()  # post-autograd: the CIA ops only
    decompositions = {op: table[op] for op in list(table) if torch._export.utils._is_cia_op(op)}
    with quiet(), torch.no_grad():
        lowered: fx.GraphModule = (
            torch.export.export(
                converted, (example,), dynamic_shapes=dynamic_shapes(dynamic_size), strict=True
            )
            .run_decompositions(decompositions)
            .module()
        )
        graph = lowered.graph
        for node in list(graph.nodes):
            if node.target == torch.ops.aten.t.default:
                with graph.inserting_before(node):
                    permuted = graph.call_function(
                        torch.ops.aten.permute.default, args=(node.args[0], [1, 0])
                    )
                node.replace_all_uses_with(permuted)
                graph.erase_node(node)
        lowered.recompile()
        freezing_passes(lowered, (example,))
        constant_fold(lowered)
        _dense_padded_sums(lowered)
    return lowered


def _dense_padded_sums(lowered: fx.GraphModule) -> None:
    """Make option A's shortcut (subsampled, zero-padded) channels-last before a convolution
    adds it: oneDNN's fused sum refuses the layout padding gives it at some sizes (30x30)."""
    binary = torch.ops.onednn.qconv2d_pointwise.binary
    graph = lowered.graph
    for node in list(graph.nodes):
        accum = node.args[6] if node.target == binary else None
        source = accum
        while isinstance(source, fx.Node) and _op_name(source).partition("_per_")[0] in (
            "quantize",
            "dequantize",
        ):
            source = source.args[0]
        if isinstance(source, fx.Node) and _op_name(source) == "constant_pad_nd":
            with graph.inserting_before(node):
                dense = graph.call_function(
                    torch.ops.aten.clone.default,
                    (accum,),
                    {"memory_format": torch.channels_last},
                )
            node.update_arg(6, dense)
    lowered.recompile()


def _op_name(node: fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _module_name(node: fx.Node, origins: dict[str, fx.Node] | None = None) -> str:
    """The qualified name of the module ``node`` came from; through its ``from_node``
    provenance into ``origins`` (name: node) where decompositions dropped it."""
    stack = node.meta.get("nn_module_stack")
    if stack and (name := str(list(stack.values())[-1][0])):
        return name
    sources = list(node.meta.get("from_node") or ())
    while origins and sources:
        source = sources.pop()
        origin = origins.get(str(getattr(source, "name", "")))
        if origin is not None and origin.meta.get("nn_module_stack"):
            return _module_name(origin)
        sources.extend(getattr(source, "from_node", None) or ())
    return ""


def _quantized(converted: fx.GraphModule) -> tuple[str, ...]:
    """Modules whose convolution or linear layer reads int8 weights (per channel)."""
    names: list[str] = []
    for node in converted.graph.nodes:
        if node.op != "call_function" or _op_name(node) not in ("conv2d", "linear"):
            continue
        weight = node.args[1] if len(node.args) > 1 else None
        if isinstance(weight, fx.Node) and _op_name(weight) == "dequantize_per_channel":
            names.append(_module_name(node))
    return tuple(names)


def _report(
    converted: fx.GraphModule, lowered: fx.GraphModule, source: nn.Module
) -> QuantizeReport:
    leftovers: dict[str, list[str]] = {}
    kinds = {n: type(m).__name__ for n, m in source.named_modules(remove_duplicate=False) if n}
    origins = {node.name: node for node in converted.graph.nodes}
    for node in lowered.graph.nodes:
        if node.op != "call_function" or str(node.target).startswith("onednn."):
            continue
        op = _op_name(node)
        value = node.meta.get("val")
        if isinstance(value, (tuple, list)) and value:
            value = value[0]  # norms return (output, statistics...)
        if (
            op in _LAYOUT_OPS
            or op.partition("_per_")[0] in ("quantize", "dequantize")  # QDQ: per tensor, channel
            or not isinstance(value, torch.Tensor)
            or not value.is_floating_point()
        ):
            continue  # int8 data (max pooling, slicing) or shapes
        ops = leftovers.setdefault(_module_name(node, origins), [])
        if op not in ops:
            ops.append(op)
    return QuantizeReport(
        quantized=_quantized(converted),
        float=tuple(  # ("layer1.0.bn1", "BatchNorm2d (mul, add)"): the module's type, its ops
            (name, f"{kinds[name]} ({', '.join(ops)})" if name in kinds else ", ".join(ops))
            for name, ops in leftovers.items()
        ),
    )


def quantize(
    model: nn.Module,
    calibration: Iterable[Any],
    *,
    compile: bool = False,
    dynamic_size: bool = False,
) -> Int8Model:
    """An int8 copy of ``model`` for CPU inference (static post-training quantization).

    ``calibration`` is an iterable of input batches (float ``(N, C, H, W)`` tensors,
    normalized as the model expects, or ``(images, labels)`` pairs): a few hundred typical
    images. The copy takes any batch size at the calibration's height and width (with
    ``dynamic_size=True``, any its export allows); ``compile=True`` compiles it with inductor's
    freezing, here and for each new input shape. Its ``report`` says what stayed float.
    ``model`` itself is never changed.
    """
    converted, example = prepare_and_convert(model, calibration, dynamic_size=dynamic_size)
    lowered = _lower(converted, example, dynamic_size)
    summary = _report(converted, lowered, model)
    size = None if dynamic_size else (int(example.shape[2]), int(example.shape[3]))
    if not compile:
        return Int8Model(lowered, summary, model, size=size)
    compiled: nn.Module = torch.compile(converted)  # type: ignore[assignment]
    int8 = Int8Model(compiled, summary, model, freezing=True, size=size)
    with torch.no_grad():
        int8(example)  # compile now, not on the first real call
    return int8


def calibration_batches(
    images: torch.Tensor,
    model: nn.Module,
    *,
    size: int = 512,
    batch_size: int = 64,
    input_size: tuple[int, int, int] | None = None,
) -> list[torch.Tensor]:
    """The first ``size`` of ``images`` (uint8, or float in [0, 1]) as calibration batches for
    ``model``: resized to ``input_size`` (default: its ``pretrained_cfg``'s, the size the
    int8 graph is then traced at) and normalized by its ``pretrained_cfg``."""
    check_int("calibration size", size)
    check_int("calibration batch_size", batch_size)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not len(images):
        raise ValueError("calibration images must be a non-empty (N, C, H, W) tensor")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = cfg.get("input_size") or (images.shape[1], 0, 0)
    if input_size is not None:
        channels, height, width = check_input_size(input_size, in_channels=in_channels(model))
    chosen = images[:size].to(torch.float32)
    if images.dtype == torch.uint8:
        chosen = chosen / 255.0
    if chosen.shape[1] == 3 and channels == 1:
        chosen = chosen.mean(dim=1, keepdim=True)
    elif chosen.shape[1] != channels:
        raise ValueError(
            f"calibration images have {chosen.shape[1]} channels, the model takes "
            f"{channels}; give a data set of {channels}-channel images"
        )
    if height and (chosen.shape[-2], chosen.shape[-1]) != (height, width):
        chosen = nn.functional.interpolate(
            chosen, size=(height, width), mode="bilinear", align_corners=False
        )
    if "mean" in cfg or "std" in cfg:  # else a module that states no normalization
        mean, inverse_std = normalizing(cfg, channels)
        chosen = (chosen - mean) * inverse_std
    return list(torch.split(chosen, batch_size))
