"""Batch-norm folding into the preceding convolutions, in an inference-only copy. The pairs
are read from each ``forward`` traced by ``torch.fx`` (user blocks fold too); a folded norm
becomes ``nn.Identity``, so ``spec``, ``forward_features`` and ``feature_info`` still work.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.utils import _pytree as pytree

from ..nn.norms import FrozenBatchNorm2d

__all__ = ["FuseReport", "fuse_bn", "is_fused"]

M = TypeVar("M", bound=nn.Module)

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d, FrozenBatchNorm2d)
_FUSED_FLAG = "_resnetlib_fused"
_TRAIN_MESSAGE = (
    "this model is an inference-only copy made by resnetlib.deploy.fuse_bn (its batch norms are "
    "folded into the convolutions); train the unfused model and fuse it again"
)


@dataclass(frozen=True)
class FuseReport:
    """What :func:`fuse_bn` did: ``fused`` (convolution, norm) name pairs, and ``unfused``
    (norm, reason) for those left in place (a pre-activation block's input norm, say)."""

    fused: tuple[tuple[str, str], ...]
    unfused: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        lines = [f"folded {len(self.fused)} norms into convolutions"]
        if self.unfused:
            lines.append(f"left {len(self.unfused)} norms unfolded:")
            lines.extend(f"  {name}: {reason}" for name, reason in self.unfused)
        return "\n".join(lines)


class _Tracer(fx.Tracer):  # follows nn.Sequential; every other submodule is one call
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not isinstance(m, nn.Sequential)


# The batch-norm forwards that compute exactly ``x * scale + shift`` in eval mode.
_BATCH_NORM_FORWARDS = (_BatchNorm.forward, nn.SyncBatchNorm.forward, FrozenBatchNorm2d.forward)


def unfoldable(norm: nn.Module) -> str | None:
    """``None`` if eval-mode ``norm`` is a per-channel ``x * scale + shift`` from its running
    statistics (so it folds), else why not. A subclass whose ``forward`` is its own may do
    more than normalize: it does not fold."""
    if not isinstance(norm, (_BatchNorm, FrozenBatchNorm2d)):
        return f"{type(norm).__name__} depends on its input, not on fixed statistics"
    if type(norm).forward not in _BATCH_NORM_FORWARDS:
        return f"{type(norm).__name__} overrides the batch norm's forward: it runs as written"
    if norm.running_mean is None or norm.running_var is None:
        return "a batch norm without running statistics normalizes with batch statistics"
    return None


def _plan(model: nn.Module) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The (conv, norm) pairs to fold, by qualified name, and why other norms stay."""
    names = {id(m): name for name, m in model.named_modules()}
    occurrences = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    shared = {key for key, count in occurrences.items() if count > 1}
    calls: Counter[int] = Counter()
    candidates: list[tuple[nn.Module, nn.Module]] = []
    untraced: dict[int, str] = {}
    for module in model.modules():
        leaf = isinstance(module, nn.Sequential) or not list(module.children())
        if module is not model and leaf:
            continue
        try:
            graph = _Tracer().trace(module)
        except Exception as error:  # any forward that fx cannot trace: report, never fail
            why = f"its forward cannot be traced by torch.fx ({type(error).__name__})"
            for sub in module.modules():
                untraced.setdefault(id(sub), f"{names.get(id(module)) or 'the model'}: {why}")
            continue
        for node in graph.nodes:
            if node.op == "get_attr":  # a parameter read directly: keep its owner
                owner = module.get_submodule(str(node.target).rpartition(".")[0])
                calls[id(owner)] += 2
            if node.op != "call_module":
                continue
            target = module.get_submodule(str(node.target))
            calls[id(target)] += 1
            if not isinstance(target, _NORMS) or len(node.args) != 1 or node.kwargs:
                continue
            source = node.args[0]
            if not isinstance(source, fx.Node) or source.op != "call_module":
                continue
            conv = module.get_submodule(str(source.target))
            if isinstance(conv, _CONVS) and len(source.users) == 1:
                candidates.append((conv, target))
    pairs: list[tuple[str, str]] = []
    paired: set[int] = set()
    for conv, norm in candidates:
        if unfoldable(norm) is None and all(
            calls[id(m)] == 1 and not {id(m)} & (shared | paired | untraced.keys())
            for m in (conv, norm)
        ):
            pairs.append((names[id(conv)], names[id(norm)]))
            paired.update((id(conv), id(norm)))
    unfused: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, _NORMS) and id(module) not in paired:
            reason = untraced.get(id(module)) or unfoldable(module)
            unfused[name] = reason or "its input is not the output of a convolution alone"
    return pairs, unfused


def running_statistics(
    norm: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor | None, torch.Tensor | None]:
    """An eval-mode batch norm's (mean, var, eps, weight or ``None``, bias or ``None``)."""
    mean, var = norm.running_mean, norm.running_var
    if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
        raise TypeError(f"{type(norm).__name__} has no running statistics")
    weight, bias = (p if isinstance(p, torch.Tensor) else None for p in (norm.weight, norm.bias))
    eps: Any = norm.eps
    return mean, var, float(eps), weight, bias


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


class _InferenceOnly(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[None, None]:
        raise RuntimeError(f"backward through a fused model: {_TRAIN_MESSAGE}")


def _guard_backward(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """``output`` with every tensor in it (a feature list's too) refusing backward."""
    if not torch.is_grad_enabled():
        return output

    def guard(tensor: torch.Tensor) -> Any:
        anchor = torch.zeros((), device=tensor.device, requires_grad=True)
        # torch 2.13's stubs need this ignore, 2.14's do not (hence unused-ignore)
        return _InferenceOnly.apply(tensor, anchor)  # type: ignore[no-untyped-call, unused-ignore]

    return pytree.tree_map_only(torch.Tensor, guard, output)


def _train(module: nn.Module, mode: bool = True) -> nn.Module:
    if mode:
        raise RuntimeError(f"train(): {_TRAIN_MESSAGE}")
    return type(module).train(module, False)


def is_fused(model: nn.Module) -> bool:
    """Whether ``model`` is an inference-only copy made by :func:`fuse_bn`."""
    return bool(getattr(model, _FUSED_FLAG, False))


@overload
def fuse_bn(model: M, *, report: Literal[False] = False) -> M: ...


@overload
def fuse_bn(model: M, *, report: Literal[True]) -> tuple[M, FuseReport]: ...


@torch.no_grad()
def fuse_bn(model: M, *, report: bool = False) -> M | tuple[M, FuseReport]:
    """An eval-mode, inference-only copy of ``model`` with its batch norms folded.

    Every convolution whose output goes only to a batch norm (or ``FrozenBatchNorm2d``)
    becomes one convolution with a bias, the norm an ``nn.Identity``. Norms that cannot fold
    stay (group norms, pre-activation input norms, batch-norm subclasses that override
    ``forward``, forwards ``torch.fx`` cannot trace);
    ``report=True`` also returns a :class:`FuseReport` naming them. The copy refuses
    ``train()`` and backward with a ``RuntimeError``; its parameters do not require grad.
    ``model`` itself is never changed.
    """
    fused = copy.deepcopy(model).eval()
    pairs, unfused = _plan(fused)
    for conv_name, norm_name in pairs:  # folded in place: the copy's own modules
        conv = fused.get_submodule(conv_name)
        if not isinstance(conv, _CONVS):
            raise TypeError(f"expected a convolution; got {type(conv).__name__}")
        statistics = running_statistics(fused.get_submodule(norm_name))
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, *statistics)
        replace_module(fused, norm_name, nn.Identity())
    fused.requires_grad_(False)
    fused.register_forward_hook(_guard_backward)
    object.__setattr__(fused, "train", functools.partial(_train, fused))
    object.__setattr__(fused, _FUSED_FLAG, True)
    if report:
        return fused, FuseReport(fused=tuple(pairs), unfused=tuple(unfused.items()))
    return fused
