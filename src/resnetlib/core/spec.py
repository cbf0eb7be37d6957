"""Model descriptions as plain, validated, JSON-serializable data; registry names in them
are resolved only by :func:`resnetlib.build`, so a spec can name a type registered later."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from typing_extensions import Self

from ..files import parse_json
from ..limits import (
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIDE,
    MAX_STAGES,
    MAX_STRIDE,
)
from ..validate import check_int, check_keys, is_real

JSONScalar = str | int | float | bool | None

__all__ = [
    "MAX_BLOCKS",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_IMAGE_SIDE",
    "MAX_STAGES",
    "MAX_STRIDE",
    "JSONScalar",
    "ResNetSpec",
    "StageSpec",
    "StemSpec",
]


_BOUND = "resnetlib's size limit, see resnetlib.limits"


def _check_stage_count(count: int) -> None:
    if count > MAX_STAGES:
        raise ValueError(
            f"ResNetSpec.stages must hold <= {MAX_STAGES} stages ({_BOUND}); got {count}"
        )


def _check_name(owner: str, name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{owner}.{name} must be a non-empty registry name; got {value!r}")


_ADDED_SINCE_0_1 = frozenset({"dilation", "norm", "act", "drop_path_rate"})


def _checked_fields(cls: type, data: object) -> dict[str, Any]:
    """``data`` as a dict of ``cls``'s fields: none unknown, none missing but those added
    since 0.1.0 (a dropped key is an error, never a default that builds another network)."""
    names = [f.name for f in fields(cls)]
    required = [name for name in names if name not in _ADDED_SINCE_0_1]
    return check_keys(cls.__name__, data, names, required)


class _Flat:
    """``to_dict``/``from_dict`` of a spec dataclass whose fields are JSON scalars."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload,no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**_checked_fields(cls, data))


@dataclass(frozen=True)
class StemSpec(_Flat):
    """The layers before the first stage: a registered stem ``type`` and its width."""

    type: str = "imagenet"
    out_channels: int = 64

    def __post_init__(self) -> None:
        _check_name("StemSpec", "type", self.type)
        check_int("StemSpec.out_channels", self.out_channels, 1, MAX_CHANNELS, bound=_BOUND)


@dataclass(frozen=True)
class StageSpec(_Flat):
    """One stage: ``num_blocks`` blocks of ``width`` (times the block's ``expansion`` out);
    the first one has ``stride`` and, as in torchvision, the previous stage's ``dilation``."""

    num_blocks: int
    width: int
    stride: int = 1
    dilation: int = 1

    def __post_init__(self) -> None:
        check_int("StageSpec.num_blocks", self.num_blocks, 1, MAX_BLOCKS, bound=_BOUND)
        check_int("StageSpec.width", self.width, 1, MAX_CHANNELS, bound=_BOUND)
        check_int("StageSpec.stride", self.stride, 1, MAX_STRIDE, bound=_BOUND)
        check_int("StageSpec.dilation", self.dilation, 1, MAX_STRIDE, bound=_BOUND)


@dataclass(frozen=True)
class ResNetSpec:
    """A whole network: stem, stages of one block type, a shortcut strategy and a head.

    ``block_options`` are extra keyword arguments for the block (``{"stride_in_1x1": True}``
    for :class:`~resnetlib.Bottleneck`), checked against its signature by ``build``.
    ``norm`` and ``act`` name a registered norm and activation. Block ``l`` of ``L`` drops
    its branch with probability ``drop_path_rate * l / L``. ``num_classes=0``: no
    classifier, the model outputs pooled features. Sizes beyond :mod:`resnetlib.limits` (far
    above any real network) are refused here, before anything is allocated.
    """

    stages: tuple[StageSpec, ...]
    block: str = "basic"
    shortcut: str = "B"
    stem: StemSpec = field(default_factory=StemSpec)
    in_channels: int = 3
    num_classes: int = 1000
    zero_init_residual: bool = False
    block_options: Mapping[str, JSONScalar] = field(default_factory=dict)
    norm: str = "batchnorm"
    act: str = "relu"
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, list):
            stages = tuple(stages)
            object.__setattr__(self, "stages", stages)
        if not isinstance(stages, tuple) or not stages:
            raise ValueError(
                f"ResNetSpec.stages must be a non-empty tuple of StageSpec; got {stages!r}"
            )
        _check_stage_count(len(stages))
        blocks = 0
        for i, stage in enumerate(stages):
            if not isinstance(stage, StageSpec):
                raise ValueError(
                    f"ResNetSpec.stages[{i}] must be a StageSpec; got {type(stage).__name__}"
                )
            blocks += stage.num_blocks
        if blocks > MAX_BLOCKS:
            raise ValueError(
                f"ResNetSpec.stages must hold <= {MAX_BLOCKS} blocks in all ({_BOUND}); "
                f"got {blocks}"
            )
        _check_name("ResNetSpec", "block", self.block)
        _check_name("ResNetSpec", "shortcut", self.shortcut)
        if not isinstance(self.stem, StemSpec):
            raise ValueError(f"ResNetSpec.stem must be a StemSpec; got {type(self.stem).__name__}")
        check_int("ResNetSpec.in_channels", self.in_channels, 1, MAX_CHANNELS, bound=_BOUND)
        check_int("ResNetSpec.num_classes", self.num_classes, 0, MAX_CLASSES, bound=_BOUND)
        if not isinstance(self.zero_init_residual, bool):
            raise ValueError(
                f"ResNetSpec.zero_init_residual must be a bool; got {self.zero_init_residual!r}"
            )
        if not isinstance(self.block_options, Mapping):
            raise ValueError(
                f"ResNetSpec.block_options must be a dict; got {type(self.block_options).__name__}"
            )
        for key, value in self.block_options.items():
            if not isinstance(key, str):
                raise ValueError(f"ResNetSpec.block_options keys must be strings; got {key!r}")
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise ValueError(
                    f"ResNetSpec.block_options[{key!r}] must be a JSON scalar "
                    f"(str, int, float, bool or None); got {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):  # JSON holds no NaN
                raise ValueError(f"ResNetSpec.block_options[{key!r}] must be finite; got {value}")
        # Read-only, as the spec is frozen: a model's spec keeps describing the model.
        object.__setattr__(self, "block_options", MappingProxyType(dict(self.block_options)))
        _check_name("ResNetSpec", "norm", self.norm)
        _check_name("ResNetSpec", "act", self.act)
        rate = self.drop_path_rate
        if not is_real(rate) or not 0.0 <= rate < 1.0:
            raise ValueError(f"ResNetSpec.drop_path_rate must be a number in [0, 1); got {rate!r}")
        object.__setattr__(self, "drop_path_rate", float(rate))

    def __eq__(self, other: object) -> bool:
        # By the JSON, as the hash: block options True and 1 (or 1.0) are other specs.
        if not isinstance(other, ResNetSpec):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Copies and pickles go through JSON: the read-only block_options do not pickle.
        return ResNetSpec.from_json, (self.to_json(),)

    @property
    def num_blocks(self) -> int:
        """Blocks in all stages."""
        return sum(stage.num_blocks for stage in self.stages)

    @property
    def depth(self) -> int:
        """Deprecated: the number of blocks; use :attr:`num_blocks` (or ``paper_depth``)."""
        warnings.warn(
            "ResNetSpec.depth counts blocks and is deprecated: use spec.num_blocks, or "
            "resnetlib.core.paper_depth(spec) for the paper's depth (weighted layers)",
            FutureWarning,
            stacklevel=2,
        )
        return self.num_blocks

    def to_dict(self) -> dict[str, Any]:
        """A dict of JSON types only; ``from_dict`` inverts it exactly."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(stages=[s.to_dict() for s in self.stages], stem=self.stem.to_dict())
        return values | {"block_options": dict(self.block_options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetSpec:
        """Rebuild a spec from :meth:`to_dict` output; unknown or missing keys raise (but
        0.1.0's files lack ``norm``, ``act``, ``drop_path_rate`` and ``dilation``: defaults)."""
        values = _checked_fields(cls, data)
        raw_stages = values["stages"]
        if not isinstance(raw_stages, (list, tuple)):
            raise ValueError(
                f"ResNetSpec.stages must be a list of stage dicts; got {type(raw_stages).__name__}"
            )
        _check_stage_count(len(raw_stages))  # before reading each one
        values["stages"] = tuple(StageSpec.from_dict(stage) for stage in raw_stages)
        values["stem"] = StemSpec.from_dict(values["stem"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ResNetSpec:
        """A spec from JSON text (``resnetlib.files.parse_json``), checked as by ``from_dict``."""
        return cls.from_dict(parse_json(text, where="ResNetSpec JSON"))
