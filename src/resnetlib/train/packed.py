"""K networks of one spec as one network of grouped convolutions (:func:`pack`): model k reads
input channels ``k*C .. (k+1)*C`` and writes logits ``[:, k]``, exactly as it computes alone, in
one launch per layer; :meth:`PackedResNet.unpack` gives the K models back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..core.model import ResNet
from ..nn.shortcuts import ZeroPadShortcut

__all__ = ["PackedLinear", "PackedResNet", "PerModel", "pack"]

_STATELESS = (nn.ReLU, nn.AdaptiveAvgPool2d, nn.Identity)


class PackedLinear(nn.Module):
    """K linear maps side by side: ``(N, K * in)`` -> ``(N, K * out)``."""

    def __init__(self, count: int, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.count, self.in_features, self.out_features = count, in_features, out_features
        self.weight = nn.Parameter(torch.empty(count, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(count, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.count, self.in_features)
        y = torch.einsum("nki,koi->nko", x, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(x.shape[0], self.count * self.out_features)


class PerModel(nn.Module):
    """A channel-mixing module (option A's shortcut) applied to each model's channels."""

    def __init__(self, count: int, inner: nn.Module) -> None:
        super().__init__()
        self.count, self.inner = count, inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y: torch.Tensor = self.inner(x.reshape(n * self.count, c // self.count, h, w))
        return y.reshape(n, -1, *y.shape[2:])


def _packed(module: nn.Module, count: int) -> nn.Module:
    """An empty module of K times ``module``'s channels (the weights are loaded after)."""
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            count * module.in_channels,
            count * module.out_channels,
            module.kernel_size,  # type: ignore[arg-type]
            stride=module.stride,  # type: ignore[arg-type]
            padding=module.padding,  # type: ignore[arg-type]
            dilation=module.dilation,  # type: ignore[arg-type]
            groups=count * module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            count * module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    if isinstance(module, nn.Linear):
        return PackedLinear(count, module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, ZeroPadShortcut):
        return PerModel(count, copy.deepcopy(module))
    if isinstance(module, _STATELESS):
        return copy.deepcopy(module)
    children = list(module.named_children())
    if not children or any(True for _ in module.parameters(recurse=False)):
        raise ValueError(
            f"pack: {type(module).__name__} cannot be packed (convolutions, batch norm, ReLU, "
            "average pooling, option A/B shortcuts and a linear head can)"
        )
    for name, child in children:
        setattr(module, name, _packed(child, count))
    return module


class PackedResNet(nn.Module):
    """K models as one (from :func:`pack`): input ``(N, K * C, H, W)``, logits ``(N, K, n)``."""

    def __init__(self, body: ResNet, count: int, template: ResNet) -> None:
        super().__init__()
        self.body, self.count = body, count
        self._template = [template]  # a list: not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.body(x)
        return logits.reshape(x.shape[0], self.count, -1)

    @staticmethod
    def join(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each model's batch ``(N, C, H, W)`` side by side: ``(N, K * C, H, W)``."""
        return torch.cat(list(inputs), dim=1)

    def unpack(self) -> list[ResNet]:
        """The K models, each a new :class:`ResNet` holding its share of the weights."""
        packed = self.body.state_dict()
        models = []
        for k in range(self.count):
            model = copy.deepcopy(self._template[0])
            state = {
                key: _share(packed[key], value, k, self.count)
                for key, value in model.state_dict().items()
            }
            model.load_state_dict(state)
            models.append(model)
        return models


def _share(packed: torch.Tensor, like: torch.Tensor, k: int, count: int) -> torch.Tensor:
    if packed.shape == like.shape:  # num_batches_tracked: shared
        return packed.clone()
    if packed.dim() == like.dim() + 1:  # PackedLinear: stacked
        return packed[k].clone()
    return packed.chunk(count, dim=0)[k].clone()


def pack(models: Sequence[ResNet]) -> PackedResNet:
    """One :class:`PackedResNet` computing what ``models`` (two or more, one spec) compute;
    ``ValueError`` for different specs, a module that cannot be packed, or unequal batch counts."""
    if len(models) < 2:
        raise ValueError(f"pack needs at least two models; got {len(models)}")
    first = models[0]
    for i, model in enumerate(models[1:], start=1):
        if model.spec != first.spec or model.num_classes != first.num_classes:
            raise ValueError(f"pack needs models of one spec; model {i} differs from model 0")
    count = len(models)
    template = copy.deepcopy(first).cpu()
    body = _packed(copy.deepcopy(first), count)
    assert isinstance(body, ResNet)
    states = [model.state_dict() for model in models]
    packed: dict[str, torch.Tensor] = {}
    for key, target in body.state_dict().items():
        parts = [state[key] for state in states]
        if key.endswith("num_batches_tracked"):
            if any(not torch.equal(part, parts[0]) for part in parts):
                raise ValueError(f"pack: {key} differs between the models")
            packed[key] = parts[0]
        elif target.dim() == parts[0].dim() + 1:
            packed[key] = torch.stack(parts)
        else:
            packed[key] = torch.cat(parts)
    body.load_state_dict(packed)
    return PackedResNet(body, count, template)
