"""The ResNet module: stem -> stages -> global average pool -> fully connected."""

# No ``from __future__ import annotations``: torch.fx copies forward's annotations into the
# code it generates, where TorchScript cannot resolve postponed (string) ones.
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal, SupportsIndex, overload

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.utils import _pair
from typing_extensions import Self, TypedDict

from ..nn.blocks import BLOCKS, ResidualBlock
from ..nn.stems import Stem
from ..validate import is_int
from .data_config import data_config, set_data_config
from .grad_checkpoint import DEFAULT_SEGMENT, checkpoint_modules, checkpoint_segments
from .spec import ResNetSpec

__all__ = ["FeatureInfo", "FeatureInfoList", "ResNet", "feature_take_indices", "paper_depth"]


def paper_depth(spec: ResNetSpec) -> int:
    """The paper's depth: weighted layers of the stem (one, even deep, as timm's ``resnet50d``),
    the blocks and the classifier. ``cifar_spec(depth)`` inverts it.

    Raises:
        KeyError: the spec's block type is not registered.

    Examples:
        >>> import resnetlib as rl
        >>> from resnetlib.core import paper_depth
        >>> paper_depth(rl.model_spec("resnet110")), paper_depth(rl.model_spec("resnet50"))
        (110, 50)
    """
    return 2 + spec.num_blocks * BLOCKS.get(spec.block).weighted_layers


class FeatureInfo(TypedDict):
    """One feature map a backbone offers (timm's keys): channels, total stride, module name."""

    num_chs: int
    reduction: int
    module: str


class FeatureInfoList(list[FeatureInfo]):
    """A list of :class:`FeatureInfo` with timm's ``FeatureInfo`` accessors (slices too)."""

    @overload
    def get(self, key: str, idx: int) -> Any: ...

    @overload
    def get(self, key: str, idx: Sequence[int] | None = None) -> list[Any]: ...

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """Entry ``idx``'s ``key`` (an int ``idx``), or the list of them (all by default)."""
        dicts = self.get_dicts((key,), idx)
        return dicts[key] if isinstance(dicts, dict) else [entry[key] for entry in dicts]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channel counts (``num_chs``)."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Total strides (``reduction``)."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Names of the modules whose output the map is (``module``)."""
        return self.get("module", idx)

    def get_dicts(
        self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None
    ) -> Any:
        """The entries (``idx`` as in :meth:`get`) as dicts, limited to ``keys`` if given;
        ``idx`` an int (a numpy int too) gives one dict, ``[]`` none (as timm's)."""
        one = hasattr(idx, "__index__")
        chosen: Any = [operator.index(idx)] if one else range(len(self)) if idx is None else idx  # type: ignore[arg-type]
        dicts = [{k: v for k, v in self[i].items() if keys is None or k in keys} for i in chosen]
        return dicts[0] if one else dicts

    @overload
    def __getitem__(self, index: SupportsIndex) -> FeatureInfo: ...

    @overload
    def __getitem__(self, index: slice) -> "FeatureInfoList": ...

    def __getitem__(self, index: SupportsIndex | slice) -> "FeatureInfo | FeatureInfoList":
        if isinstance(index, slice):
            return FeatureInfoList(super().__getitem__(index))
        return super().__getitem__(index)


_POOL_LAYERS = (nn.MaxPool2d, nn.AvgPool2d)


def feature_take_indices(
    num_features: int, indices: int | Sequence[int] | None = None
) -> tuple[list[int], int]:
    """timm's index rule: ``None`` takes all, an int ``n`` the last ``n``, a sequence those
    (negative ones count from the end). Returns the indices, as given, and the largest."""
    if indices is None:
        indices = num_features
    if is_int(indices):
        if not 0 < indices <= num_features:
            raise ValueError(f"indices as an int must be in 1..{num_features}; got {indices}")
        take = list(range(num_features - indices, num_features))
    elif isinstance(indices, Sequence) and not isinstance(indices, (str, bytes)) and indices:
        take = []
        for index in indices:
            if not is_int(index):
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


def feature_plan(
    model: "ResNet", indices: int | Sequence[int] | None, *, stop_early: bool, norm: bool
) -> tuple[list[int], tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """The indices taken, the stages and final layers run, and which child's output is which
    map: the one rule of ``forward_intermediates`` and ``ResNetFeatures``."""
    take, last = feature_take_indices(len(model.feature_info), indices)
    stages = model.stage_names[:last] if stop_early else model.stage_names
    tail = model.final_names if len(stages) == len(model.stage_names) else ()
    points = {model.stem_feature_name: 0} | {name: i for i, name in enumerate(stages, 1)}
    if norm and tail:
        points[tail[-1]] = points.pop(stages[-1])
    return take, stages, tail, points


class _AvgMaxPool(nn.Module):
    """timm's ``"avgmax"``: the mean of global average and global max pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1))


class _CatAvgMaxPool(nn.Module):
    """timm's ``"catavgmax"``: global average and max pooling side by side (2x channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)), dim=1)


_POOLS: dict[str, Callable[[], nn.Module]] = {
    "avg": lambda: nn.AdaptiveAvgPool2d(1),
    "max": lambda: nn.AdaptiveMaxPool2d(1),
    "avgmax": _AvgMaxPool,
    "catavgmax": _CatAvgMaxPool,
    "": nn.Identity,
}


class StagedNet(nn.Module):
    """The base of :class:`ResNet` and ``ResNetFeatures``: named stem and stage modules, a data
    configuration and the eval-mode holds of ``train()``."""

    stem_names: tuple[str, ...]
    stage_names: tuple[str, ...]
    # Python-side bookkeeping, in types TorchScript lacks (variable-length tuples, mixed dicts).
    __jit_ignored_attributes__: ClassVar[list[str]] = [
        "stem_names",
        "stage_names",
        "_pretrained_cfg",
        "_cfg_at_build",
    ]
    __jit_unused_properties__: ClassVar[list[str]] = [
        "pretrained_cfg",
        "default_cfg",
        "num_classes",
        "in_chans",
        "depth",
    ]

    def __init__(self) -> None:
        super().__init__()
        self.norm_eval: bool = False
        self.frozen_stages: int = -1
        self._pretrained_cfg: dict[str, Any] | None = None

    def set_grad_checkpointing(
        self, enable: bool = True, *, segment: int | None = None, last_stage: bool | None = None
    ) -> None:
        """Recompute activations in backward (timm's name) while grad is enabled: blocks in runs
        of ``segment`` (default 4), the last stage only with ``last_stage=True``; both settings
        are kept. Gradients, norm statistics and drop-path masks are the plain step's."""
        if segment is not None:
            if not is_int(segment) or segment < 1:
                raise ValueError(
                    f"segment must be a positive int (blocks per checkpoint); got {segment!r}"
                )
            self.grad_checkpointing_segment = segment
        if last_stage is not None:
            self.grad_checkpointing_last_stage = bool(last_stage)
        self.grad_checkpointing = bool(enable)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """The data configuration (timm's); a new model's default is made on first use."""
        if self._pretrained_cfg is None:
            self._pretrained_cfg = self._default_cfg()
        return self._pretrained_cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: dict[str, Any]) -> None:
        self._pretrained_cfg = value

    def _default_cfg(self) -> dict[str, Any]:
        return {}

    default_cfg = pretrained_cfg
    """``pretrained_cfg`` by timm's older name."""

    def train(self, mode: bool = True) -> Self:
        """``nn.Module.train``; in training mode, the stem and the first ``frozen_stages`` stages
        (when ``>= 0``) and, with ``norm_eval``, every norm layer stay in eval."""
        super().train(mode)
        if mode and self.frozen_stages >= 0:
            for name in self.stem_names + self.stage_names[: self.frozen_stages]:
                self.get_submodule(name).eval()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _NormBase):
                    module.eval()
        return self

    def _run(
        self, x: torch.Tensor, names: list[str], points: dict[str, int], take: list[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the children in ``names`` on ``x``, in registration order (a loop TorchScript
        unrolls); return the output and those of the children ``points`` maps into ``take``."""
        maps: list[torch.Tensor] = []
        for name, module in self.named_children():
            if name in names:
                x = module(x)
                if name in points and points[name] in take:
                    maps.append(x)
        return x, maps

    def _checkpointed(
        self, x: torch.Tensor, names: list[str], points: dict[str, int], take: list[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`_run`, the blocks checkpointed in segments and the other modules in runs that
        end where a map is taken (an in-place activation stays inside its run)."""
        maps: list[torch.Tensor] = []
        pending: list[nn.Module] = []
        stages = list(self.stage_names)
        if not self.grad_checkpointing_last_stage and len(stages) > 1:
            stages.pop()
        for name in names:
            module = self.get_submodule(name)
            staged = name in self.stage_names
            if not staged:
                pending.append(module)
            if pending and (staged or name == names[-1] or points.get(name, -1) in take):
                x, pending = checkpoint_modules(pending, x), []
            if name in stages:
                x = checkpoint_segments(list(module.children()), x, self.grad_checkpointing_segment)
            elif staged:
                x = module(x)
            if points.get(name, -1) in take:
                maps.append(x)
        return x, maps


class ResNet(StagedNet):
    """A residual (or plain) network, built by :func:`resnetlib.build` from ``model.spec``.

    Module names follow torchvision (a pre-activation net's final layers are ``norm``), and
    ``feature_info`` and the head's attributes timm (``drop_rate``: dropout before ``fc``).
    ``norm_eval`` and ``frozen_stages`` hold parts in eval mode under ``train()`` (see
    :func:`resnetlib.interop.freeze`). It scripts with ``torch.jit.script``.
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
        clashes = stem_name_clashes(dict(stem.named_children()), len(stages))
        if clashes:
            raise ValueError(
                f"stem {spec.stem.type!r} ({type(stem).__name__}): child names {clashes} clash "
                "with the ResNet's own modules or attributes; rename them "
                "(resnetlib.testing.check_stem checks a stem)"
            )
        self.stage_names: tuple[str, ...] = tuple(map("layer{}".format, range(1, len(stages) + 1)))
        stem_names = []
        for name, child in stem.named_children():
            self.add_module(name, child)
            stem_names.append(name)
        self.stem_names: tuple[str, ...] = tuple(stem_names)
        # Index 0 is the stem's map before a trailing pool (timm's ``act1``, at stride 2).
        pool = stem[-1] if len(stem) > 1 and isinstance(stem[-1], _POOL_LAYERS) else None
        feature = self.stem_names[-2 if pool is not None else -1]
        self.stem_feature_name: str = feature
        at_map = stem.reduction // (1 if pool is None else _pair(pool.stride)[0])
        stem_map = FeatureInfo(num_chs=stem.out_channels, reduction=at_map, module=feature)
        self.feature_info = FeatureInfoList([stem_map])
        reduction = stem.reduction
        for name, stage, stage_spec in zip(self.stage_names, stages, spec.stages, strict=True):
            self.add_module(name, stage)
            reduction *= stage_spec.stride
            block = stage[-1]
            if not isinstance(block, ResidualBlock):
                raise TypeError(f"stages must hold ResidualBlocks; got {type(block).__name__}")
            self.num_features: int = block.out_channels  # in the end, the last stage's
            self.feature_info.append(
                FeatureInfo(num_chs=self.num_features, reduction=reduction, module=name)
            )
        self.final_names: tuple[str, ...] = ()
        if final is not None:
            self.norm = final
            self.final_names = ("norm",)
        self.head_hidden_size: int = self.num_features
        self.global_pool: str = "avg"
        self.drop_rate: float = 0.0
        self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = (
            nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        )
        self.spec = spec
        self.grad_checkpointing = False
        self.grad_checkpointing_segment: int = DEFAULT_SEGMENT
        self.grad_checkpointing_last_stage: bool = False
        side = stem.default_image_size
        self.default_input_size: tuple[int, int, int] = (stem.in_channels, side, side)
        self._feature_names = [*self.stem_names, *self.stage_names, *self.final_names]
        self._cfg_at_build = (num_classes, reduction)

    def _default_cfg(self) -> dict[str, Any]:
        num_classes, reduction = self._cfg_at_build
        convs = (name for name, module in self.named_modules() if isinstance(module, nn.Conv2d))
        return data_config(
            num_classes=num_classes,
            input_size=self.default_input_size,
            reduction=reduction,
            first_conv=next(convs, ""),
        )

    def __setattr__(self, name: str, value: Any) -> None:
        """``nn.Module``'s; ``model.fc = nn.Linear(width, n)`` (torchvision's way to a new
        head) or ``nn.Identity()`` also sets ``num_classes`` in the spec and data config."""
        super().__setattr__(name, value)
        if name != "fc" or "spec" not in self.__dict__:  # not while building
            return
        linear = isinstance(value, nn.Linear) and bool(self.global_pool)  # a pooled model's
        if linear and value.in_features == self.head_hidden_size:
            num_classes = value.out_features
        elif isinstance(value, nn.Identity):
            num_classes = 0
        else:
            return
        if num_classes != self.spec.num_classes:
            self.spec = replace(self.spec, num_classes=num_classes)
            set_data_config(self, self.pretrained_cfg)  # its num_classes, no other labels

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def in_chans(self) -> int:
        """The input channels (timm's name)."""
        return self.spec.in_channels

    @property
    def depth(self) -> int:
        """The paper's depth: weighted layers (56 for ResNet-56); see :func:`paper_depth`."""
        return paper_depth(self.spec)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem, max-pool included."""
        return self._run(x, list(self.stem_names), {}, [])[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages (and ``norm`` if any): the last feature map, before pooling."""
        # The checkpointed path is Python only; TorchScript leaves it out.
        is_scripting = torch.jit.is_scripting  # type: ignore[attr-defined]
        if not is_scripting() and self.grad_checkpointing and torch.is_grad_enabled():
            return self._checkpointed(x, self._feature_names, {}, [])[0]
        for name, module in self.named_children():
            if name in self._feature_names:
                x = module(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, drop out (``drop_rate``, in training), classify; ``pre_logits`` stops before fc."""
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
        """The feature maps ``indices`` picks (:func:`feature_take_indices`) and, unless
        ``intermediates_only``, the last map as :meth:`forward_features` returns it.
        ``stop_early`` skips the stages after the last index taken; ``norm`` applies a final
        norm, where the net has one, to the last stage's map too. Only ``"NCHW"`` exists.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW'; got {output_fmt!r}")
        take, stages, tail, points = feature_plan(self, indices, stop_early=stop_early, norm=norm)
        x, intermediates = self._run(x, [*self.stem_names, *stages, *tail], points, take)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, *, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Delete what the maps ``indices`` takes do not need, as timm does; return the indices.
        Stages after the last index go (at index 0, the stem's pool too), and with them, or with
        ``prune_head``, the head; a final ``norm`` with the stages or ``prune_norm``.
        ``model.spec`` follows (``resnetlib.save`` refuses a stem alone or a norm-less preact).
        """
        take, last = feature_take_indices(len(self.feature_info), indices)
        stages_go = last < len(self.stage_names)
        gone = list(self.stage_names[last:])
        if self.final_names and (stages_go or prune_norm):
            gone += self.final_names
            self.final_names = ()
        if last == 0:
            keep = self.stem_names.index(self.stem_feature_name) + 1
            gone += self.stem_names[keep:]
            self.stem_names = self.stem_names[:keep]
        for name in gone:
            delattr(self, name)
        self.stage_names = self.stage_names[:last]
        self._feature_names = [*self.stem_names, *self.stage_names, *self.final_names]
        self.feature_info = self.feature_info[: last + 1]
        if last:
            self.spec = replace(self.spec, stages=self.spec.stages[:last])
        if stages_go:
            self.num_features = self.feature_info[-1]["num_chs"]
        if prune_head or stages_go:
            self.reset_classifier(0, global_pool="")
        return take

    def get_classifier(self) -> nn.Module:
        """``fc`` (an ``nn.Identity`` when there are no classes)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh ``num_classes``-way ``fc`` (``0``: ``nn.Identity``) on the model's device and
        dtype, in its mode. ``global_pool``: ``"avg"``, ``"max"``, ``"avgmax"`` (their mean),
        ``"catavgmax"`` (both: twice the width) or ``""`` (none; needs ``num_classes=0``);
        ``None`` keeps the pool, but a classifier on an unpooled model brings back ``"avg"``.
        """
        if not is_int(num_classes) or num_classes < 0:
            raise ValueError(
                f"num_classes must be an int >= 0 (0 removes the classifier); got {num_classes!r}"
            )
        if global_pool is None and num_classes and not self.global_pool:
            global_pool = "avg"
        if global_pool is not None:
            if global_pool not in _POOLS:
                raise ValueError(
                    f"global_pool must be one of {', '.join(map(repr, _POOLS))} ('': no "
                    f"pooling); got {global_pool!r}"
                )
            if global_pool == "" and num_classes:
                raise ValueError(
                    "global_pool='' (no pooling) needs num_classes=0: a linear classifier "
                    f"needs pooled features; got num_classes={num_classes}"
                )
            self.avgpool, self.global_pool = _POOLS[global_pool](), global_pool
        spec = replace(self.spec, num_classes=num_classes)
        width = self.num_features * (2 if self.global_pool == "catavgmax" else 1)
        like = next(self.parameters(), torch.empty(0))  # the new fc's device and dtype
        fc: nn.Module = nn.Identity()
        if num_classes:
            fc = nn.Linear(width, num_classes, device=like.device, dtype=like.dtype)
        fc.train(self.training)
        self.avgpool.train(self.training)
        self.head_hidden_size = width
        self.spec = spec
        self.fc = fc
        set_data_config(self, self.pretrained_cfg)  # its num_classes, no other head's label_names

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
        """He normal (fan_out) convolutions, unit-weight zero-bias norms (``fc`` keeps PyTorch's
        init, as torchvision's), then each block's ``init_weights`` and, with
        ``zero_init_residual``, ``zero_init_last``. A model on the meta device is left as is."""
        for parameter in self.parameters():  # a loop: no generator on every build's path
            if parameter.is_meta:
                return
        blocks = []
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, ResidualBlock):
                blocks.append(module)
        for block in blocks:
            block.init_weights()
            if zero_init_residual:
                block.zero_init_last()


# What ResNet.__init__ sets on the instance besides modules (a test holds it to vars(model)).
_INSTANCE_ATTRIBUTES = frozenset(vars(nn.Module())) | {
    *("stem_names", "stage_names", "final_names", "stem_feature_name", "feature_info", "spec"),
    *("num_features", "head_hidden_size", "global_pool", "drop_rate", "default_input_size"),
    *("grad_checkpointing", "grad_checkpointing_segment", "grad_checkpointing_last_stage"),
    *("norm_eval", "frozen_stages", "_pretrained_cfg", "_cfg_at_build", "_feature_names"),
}
_ANY_STAGE = re.compile(r"layer[1-9][0-9]*")


def stem_name_clashes(names: Iterable[str], num_stages: int | None = None) -> list[str]:
    """The stem child ``names`` a ResNet cannot adopt: its own modules (``layer1`` ..
    ``layerN``, any N when ``num_stages`` is None; ``avgpool``, ``fc``, ``norm``) and the
    attributes of its class or that its ``__init__`` sets."""
    own = {"avgpool", "fc", "norm", *_INSTANCE_ATTRIBUTES}
    if num_stages is not None:
        own.update(map("layer{}".format, range(1, num_stages + 1)))
    return [
        name
        for name in names
        if name in own
        or hasattr(ResNet, name)
        or (num_stages is None and _ANY_STAGE.fullmatch(name))
    ]
