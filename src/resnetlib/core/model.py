"""The ResNet module: stem -> stages -> global average pool -> fully connected."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any, Literal, overload

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from typing_extensions import Self, TypedDict

from ..nn.blocks import ResidualBlock
from ..nn.stems import Stem
from .data_config import data_config
from .grad_checkpoint import checkpoint_modules
from .spec import ResNetSpec

__all__ = ["FeatureInfo", "ResNet", "feature_take_indices"]


class FeatureInfo(TypedDict):
    """One feature map a backbone offers (timm's keys): channels, total stride, module name."""

    num_chs: int
    reduction: int
    module: str


def feature_take_indices(
    num_features: int, indices: int | Sequence[int] | None = None
) -> tuple[list[int], int]:
    """timm's index rule: ``None`` takes all, an int ``n`` the last ``n``, a sequence those
    (negative ones count from the end). Returns the sorted-as-given indices and the largest.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= num_features:
            raise ValueError(f"indices as an int must be in 1..{num_features}; got {indices}")
        take = list(range(num_features - indices, num_features))
    elif isinstance(indices, Sequence) and not isinstance(indices, (str, bytes)) and indices:
        take = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"indices must be ints; got {index!r}")
            if not -num_features <= index < num_features:
                raise ValueError(
                    f"feature index {index} is out of range; this model has {num_features} "
                    f"feature maps (0 = stem, 1..{num_features - 1} = stages; negatives count "
                    "from the end)"
                )
            take.append(index % num_features)
    else:
        raise ValueError(f"indices must be None, an int or a non-empty sequence; got {indices!r}")
    return take, max(take)


_POOLS = ("avg", "max", "")


def _global_pool(global_pool: str) -> nn.Module:
    if global_pool not in _POOLS:
        raise ValueError(
            f"global_pool must be one of 'avg', 'max' or '' (no pooling); got {global_pool!r}"
        )
    if global_pool == "avg":
        return nn.AdaptiveAvgPool2d(1)
    return nn.AdaptiveMaxPool2d(1) if global_pool == "max" else nn.Identity()


def _classifier(in_features: int, num_classes: int, like: nn.Parameter | None) -> nn.Module:
    if num_classes == 0:
        return nn.Identity()
    if like is None:
        return nn.Linear(in_features, num_classes)
    return nn.Linear(in_features, num_classes, device=like.device, dtype=like.dtype)


class _StagedNet(nn.Module):
    """A net of stem modules (``stem_names``) and stages (``stage_names``) whose
    ``train()`` keeps parts in eval mode: the stem and the first ``frozen_stages`` stages
    whole (norm statistics and stochastic depth both stop), when that is ``>= 0``; and, with
    ``norm_eval``, every norm layer with running statistics. ``pretrained_cfg`` (alias
    ``default_cfg``) is its data configuration, timm's (``resnetlib.core.data_config``).
    """

    stem_names: tuple[str, ...]
    stage_names: tuple[str, ...]

    def __init__(self) -> None:
        super().__init__()
        self.norm_eval: bool = False
        self.frozen_stages: int = -1
        self.pretrained_cfg: dict[str, Any] = {}

    @property
    def default_cfg(self) -> dict[str, Any]:
        """``pretrained_cfg`` by timm's older name."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, value: dict[str, Any]) -> None:
        self.pretrained_cfg = value

    def train(self, mode: bool = True) -> Self:
        """``nn.Module.train``, then eval mode again for what ``frozen_stages`` and
        ``norm_eval`` hold.
        """
        super().train(mode)
        if mode:
            for module in self._held_modules():
                module.eval()
        return self

    def _collect(
        self,
        x: torch.Tensor,
        take: Collection[int],
        stages: Sequence[str],
        tail: Sequence[str],
        norm_last: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stem, ``stages`` and ``tail`` on ``x``; return the output and the maps
        whose index is in ``take`` (0: the stem's, ``i``: stage ``i``'s). With
        ``norm_last``, the tail's output stands in for the last stage's map when taken.
        """
        maps: list[torch.Tensor] = []
        for name in self.stem_names:
            x = self._modules[name](x)  # type: ignore[misc]
        if 0 in take:
            maps.append(x)
        for index, name in enumerate(stages, start=1):
            x = self._modules[name](x)  # type: ignore[misc]
            if index in take:
                maps.append(x)
        for name in tail:
            x = self._modules[name](x)  # type: ignore[misc]
        if norm_last and tail and len(stages) in take:
            maps[-1] = x
        return x, maps

    def _held_modules(self) -> Iterator[nn.Module]:
        if self.frozen_stages >= 0:
            for name in self.stem_names + self.stage_names[: self.frozen_stages]:
                yield self.get_submodule(name)
        if self.norm_eval:
            for module in self.modules():
                if isinstance(module, _NormBase):
                    yield module


class ResNet(_StagedNet):
    """A residual (or plain) network. Build it with :func:`resnetlib.build` or a factory.

    Module names follow torchvision: the stem's children (``conv1``, ``bn1``, ...), then
    ``layer1`` .. ``layerN`` (``nn.Sequential`` of blocks), ``avgpool`` and ``fc``.
    ``final`` (pre-activation nets: a norm and an activation after the last block) is
    registered as ``norm`` and belongs to the features.
    ``model.spec`` is the :class:`~resnetlib.ResNetSpec` it was built from.

    Backbone interface (timm's names): ``feature_info`` lists the stem's output (index 0)
    and each stage's (indices 1..N); ``forward_intermediates`` returns them.
    ``get_classifier``/``reset_classifier`` swap the head (0 classes: ``nn.Identity``).
    timm's attributes: ``num_classes``, ``num_features``, ``head_hidden_size``,
    ``global_pool`` (``avgpool`` holds the pool), ``drop_rate`` (dropout before ``fc``) and
    ``pretrained_cfg`` (alias ``default_cfg``; see ``resnetlib.core.data_config``).
    ``norm_eval = True`` keeps every norm layer in eval mode under ``train()``; norms of the
    stem and the first ``frozen_stages`` stages always stay in eval (see
    :func:`resnetlib.freeze`).
    """

    def __init__(
        self,
        *,
        stem: Stem,
        stages: Sequence[nn.Sequential],
        num_classes: int,
        spec: ResNetSpec,
        final: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("ResNet needs at least one stage")
        if len(stages) != len(spec.stages):
            raise ValueError(
                f"ResNet got {len(stages)} stages but its spec describes {len(spec.stages)}"
            )
        reserved = {f"layer{i}" for i in range(1, len(stages) + 1)} | {"avgpool", "fc", "norm"}
        for name, child in stem.named_children():
            if name in reserved:
                raise ValueError(f"stem child name {name!r} clashes with the model's own {name!r}")
            self.add_module(name, child)
        self.stem_names: tuple[str, ...] = tuple(name for name, _ in stem.named_children())
        for index, stage in enumerate(stages, start=1):
            self.add_module(f"layer{index}", stage)
        self.stage_names: tuple[str, ...] = tuple(f"layer{i}" for i in range(1, len(stages) + 1))
        last_block = stages[-1][-1]
        if not isinstance(last_block, ResidualBlock):
            raise TypeError(f"stages must hold ResidualBlocks; got {type(last_block).__name__}")
        self.num_features: int = last_block.out_channels
        self.final_names: tuple[str, ...] = ()
        if final is not None:
            self.norm = final
            self.final_names = ("norm",)
        self.head_hidden_size: int = self.num_features
        self.global_pool: str = "avg"
        self.drop_rate: float = 0.0
        self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.fc = _classifier(self.num_features, num_classes, None)
        self.spec = spec
        self.grad_checkpointing = False
        self.default_input_size: tuple[int, int, int] = (
            stem.in_channels,
            stem.default_image_size,
            stem.default_image_size,
        )
        self._feature_names = self.stem_names + self.stage_names + self.final_names
        reduction = stem.reduction
        self.feature_info: list[FeatureInfo] = [
            FeatureInfo(num_chs=stem.out_channels, reduction=reduction, module=self.stem_names[-1])
        ]
        for name, stage, stage_spec in zip(self.stage_names, stages, spec.stages, strict=True):
            reduction *= stage_spec.stride
            block = stage[-1]
            if not isinstance(block, ResidualBlock):
                raise TypeError(f"stages must hold ResidualBlocks; got {type(block).__name__}")
            self.feature_info.append(
                FeatureInfo(num_chs=block.out_channels, reduction=reduction, module=name)
            )
        first_conv = next(
            name for name, module in self.named_modules() if isinstance(module, nn.Conv2d)
        )
        self.pretrained_cfg: dict[str, Any] = data_config(
            num_classes=num_classes,
            input_size=self.default_input_size,
            reduction=reduction,
            first_conv=first_conv,
        )

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stem_names:
            x = self._modules[name](x)  # type: ignore[misc]
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages (and ``norm`` if any): the last feature map, before pooling."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return self._checkpointed_features(x)
        for name in self._feature_names:
            x = self._modules[name](x)  # type: ignore[misc]
        return x

    def _checkpointed_features(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_features`, checkpointing the stem as one unit and every block."""
        x = checkpoint_modules([self.get_submodule(name) for name in self.stem_names], x)
        for name in self.stage_names:
            for block in self.get_submodule(name).children():
                x = checkpoint_modules([block], x)
        for name in self.final_names:
            x = self._modules[name](x)  # type: ignore[misc]
        return x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the stem's and each block's activations in backward instead of keeping
        them (timm's name): far less memory for about one more forward pass per step. Gradients,
        batch-norm statistics (updated once) and stochastic-depth masks are those of the
        plain step. Applies to :meth:`forward_features` and :meth:`forward` while grad is
        enabled.
        """
        self.grad_checkpointing = bool(enable)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool a feature map (``global_pool``), apply dropout (``drop_rate``, in training)
        and classify it; ``pre_logits=True`` stops before ``fc``.
        """
        x = self.avgpool(x)
        if self.global_pool != "":
            x = torch.flatten(x, 1)
        if self.drop_rate > 0.0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch: :meth:`forward_head` of :meth:`forward_features`."""
        return self.forward_head(self.forward_features(x))

    @overload
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: Literal[False] = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    @overload
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: Literal[True],
    ) -> list[torch.Tensor]: ...

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """The feature maps ``indices`` picks (see :func:`feature_take_indices`; index 0 is
        the stem's output, ``i`` stage ``i``'s), and, unless ``intermediates_only``, the
        last feature map as :meth:`forward_features` returns it.

        ``stop_early`` skips the stages after the last index taken (the returned final map is
        then that stage's). ``norm`` applies a final norm, on nets that have one after the
        last stage, to the last stage's map too. Only ``output_fmt="NCHW"`` exists.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW'; got {output_fmt!r}")
        take, last = feature_take_indices(len(self.feature_info), indices)
        names = self.stage_names[:last] if stop_early else self.stage_names
        tail = self.final_names if len(names) == len(self.stage_names) else ()
        x, intermediates = self._collect(x, take, names, tail, norm_last=norm)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self,
        indices: int | Sequence[int] = 1,
        *,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Delete the stages after the last index ``indices`` takes (and the head, unless
        ``prune_head=False``); return the indices. ``model.spec`` and ``feature_info`` follow.

        A net with layers after its last stage (pre-activation nets' ``norm``) cannot lose
        them and still be what its spec builds, so pruning them is refused: take its
        feature maps with :func:`resnetlib.features` instead.
        """
        take, last = feature_take_indices(len(self.feature_info), indices)
        if last == 0:
            raise ValueError("prune_intermediate_layers must keep at least one stage; got index 0")
        stages_go = last < len(self.stage_names)
        if self.final_names and (stages_go or prune_norm):
            raise ValueError(
                f"pruning would drop {', '.join(self.final_names)} (the layers after the last "
                f"stage of a {self.spec.block!r} net), which its spec rebuilds; use "
                "resnetlib.features(model, out_indices=...) to take earlier feature maps"
            )
        if stages_go and not prune_head and self.spec.num_classes:
            raise ValueError(
                "prune_head=False keeps fc, which needs the last stage's channels; "
                "pruning stages needs prune_head=True or a model without a classifier"
            )
        for name in self.stage_names[last:]:
            delattr(self, name)
        self.stage_names = self.stage_names[:last]
        self._feature_names = self.stem_names + self.stage_names + self.final_names
        self.feature_info = self.feature_info[: last + 1]
        self.num_features = self.feature_info[-1]["num_chs"]
        self.spec = replace(self.spec, stages=self.spec.stages[:last])
        if prune_head:
            self.reset_classifier(0)
        return take

    def get_classifier(self) -> nn.Module:
        """The head's final layer: ``fc`` (an ``nn.Identity`` when there are no classes)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace ``fc`` with a fresh ``num_classes``-way one (``0``: ``nn.Identity``, the
        model then outputs pooled features) on the model's device and dtype.

        ``global_pool`` (timm's): ``"avg"``, ``"max"`` or ``""`` (no pooling: the model
        outputs the last feature map; needs ``num_classes=0``); ``None`` keeps the pool.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(
                f"num_classes must be an int >= 0 (0 removes the classifier); got {num_classes!r}"
            )
        if global_pool is not None:
            pool = _global_pool(global_pool)
            if global_pool == "" and num_classes:
                raise ValueError(
                    "global_pool='' (no pooling) needs num_classes=0: a linear classifier "
                    f"needs pooled features; got num_classes={num_classes}"
                )
            self.avgpool, self.global_pool = pool, global_pool
        elif not self.global_pool and num_classes:
            raise ValueError(
                "this model has no pooling (global_pool=''), so its classifier must stay "
                f"removed; pass global_pool='avg' with num_classes={num_classes}"
            )
        spec = replace(self.spec, num_classes=num_classes)
        self.fc = _classifier(self.num_features, num_classes, next(self.parameters(), None))
        self.spec = spec

    def blocks(self) -> list[ResidualBlock]:
        """Every residual block, stage by stage."""
        return [
            block
            for name in self.stage_names
            for block in self.get_submodule(name).children()
            if isinstance(block, ResidualBlock)
        ]

    @torch.no_grad()
    def init_weights(self, zero_init_residual: bool = False) -> None:
        """He normal (fan_out) convolutions, unit-weight zero-bias norms, as in the paper.

        The classifier keeps PyTorch's default ``nn.Linear`` init, as torchvision's does.
        Each block's own :meth:`~resnetlib.ResidualBlock.init_weights` runs next; then, with
        ``zero_init_residual``, every block's
        :meth:`~resnetlib.ResidualBlock.zero_init_last` zeroes its branch (the last norm's
        weight, or a pre-activation block's last convolution), so each block starts as
        its shortcut. A model on the meta device (shapes only) has no values to set.
        """
        if any(parameter.is_meta for parameter in self.parameters()):
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks():
            block.init_weights()
            if zero_init_residual:
                block.zero_init_last()
