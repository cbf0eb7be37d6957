"""A registered model with the weights of a file: a resnetlib checkpoint or a state dict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from ..common import PathLike
from ..core.build import build
from ..core.data_config import set_data_config
from ..core.model import ResNet
from ..core.spec import ResNetSpec
from ..interop.checkpoint import Checkpoint, CheckpointError, read_weights_file
from ..interop.convert import convert_state_dict, detect_source, layout_options, load_weights

__all__ = ["adapted_model", "checkpoint_model", "model_from_file"]

_ADAPTABLE = frozenset({"num_classes", "in_channels"})  # what loading weights may change


def model_from_file(
    factory: Callable[..., ResNet],
    path: PathLike,
    *,
    source: str = "auto",
    overrides: Mapping[str, Any],
) -> ResNet:
    """``factory(**overrides)`` with a file's weights. A resnetlib checkpoint must be the
    network the factory builds, and ``overrides`` agree with it but for ``num_classes`` (a new
    head) and ``in_channels`` (an adapted stem); any other file is a state dict in layout
    ``source``, which adds the overrides its weights need unless ``overrides`` sets them."""
    contents = read_weights_file(path)
    if isinstance(contents, Checkpoint):
        if source not in ("auto", "resnetlib"):
            raise ValueError(
                f"{path} is a resnetlib checkpoint; checkpoint_source={source!r} does not apply"
            )
        with torch.device("meta"):
            default, asked = factory().spec, factory(**overrides).spec
        saved = contents.spec
        theirs, ours = _structure(saved), _structure(asked)
        differ = {key: (theirs[key], ours[key]) for key in theirs if theirs[key] != ours[key]}
        saved_fields, default_fields = saved.to_dict(), default.to_dict()
        for key, value in asked.to_dict().items():  # an override the file does not have
            if key not in _ADAPTABLE and value not in (default_fields[key], saved_fields[key]):
                differ[key] = (saved_fields[key], value)
        if differ:
            details = "; ".join(f"{key}: file {a!r}, model {b!r}" for key, (a, b) in differ.items())
            raise CheckpointError(
                f"{path} holds another network than the one asked for ({details}); load it "
                "with resnetlib.load(path), or name the model it was saved from"
            )
        return _from_checkpoint(
            contents, {key: getattr(asked, key) for key in _ADAPTABLE if key in overrides}
        )
    if source == "auto":
        source = detect_source(contents)
    options = layout_options(source, contents)
    head = convert_state_dict(contents, source=source).get("fc.weight")
    if isinstance(head, torch.Tensor) and head.dim() == 2:  # the file's head kept, not replaced
        options["num_classes"] = head.shape[0]  # by a random one (as a checkpoint's is)
    model = factory(**{**options, **overrides})
    load_weights(model, contents, source=source, strict=True)
    return model


def checkpoint_model(path: PathLike, overrides: Mapping[str, Any]) -> ResNet | None:
    """The network and weights of the resnetlib checkpoint at ``path`` (``None`` for a state
    dict); ``overrides`` other than ``num_classes`` and ``in_channels`` are a ``ValueError``."""
    contents = read_weights_file(path)
    if not isinstance(contents, Checkpoint):
        return None
    fixed = sorted(set(overrides) - _ADAPTABLE)
    if fixed:
        flags = ", ".join("--" + key.replace("_", "-") for key in fixed)
        raise ValueError(
            f"{flags}: the checkpoint {path} keeps the network it was saved as (only "
            "--num-classes and --in-channels adapt it); name the model to change it"
        )
    return _from_checkpoint(contents, overrides)


def _from_checkpoint(contents: Checkpoint, overrides: Mapping[str, Any]) -> ResNet:
    return adapted_model(contents.spec, contents.state_dict, contents.pretrained_cfg, overrides)


def adapted_model(
    spec: ResNetSpec,
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
) -> ResNet:
    """The model of ``spec`` with the weights ``state`` and data config ``config`` (``None``:
    the defaults), ``overrides`` of ``num_classes`` giving it a new head and of
    ``in_channels`` an adapted stem."""
    model = build(replace(spec, **overrides))  # overrides: _ADAPTABLE fields only
    load_weights(model, state, source="resnetlib", strict=True)
    if config is not None:  # fitted to the model's new head and input
        set_data_config(model, config)
    return model


def _structure(spec: ResNetSpec) -> dict[str, Any]:
    return {
        "block": spec.block,
        "stem": spec.stem.type,
        "stages": [(stage.num_blocks, stage.width) for stage in spec.stages],
        "residual": spec.shortcut != "none",
    }
