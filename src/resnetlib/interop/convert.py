"""Weights from elsewhere: other libraries' state-dict layouts, and loading them into a model.

A *layout* (``source=``, ``target=``) names a ResNet's state-dict keys: ``"resnetlib"``,
``"torchvision"`` and ``"timm"`` use the same names; ``"akamaster"`` (pytorch_resnet_cifar10)
``linear.*`` for ``fc.*`` and ``*.shortcut.*`` for ``*.downsample.*`` (its option A pads on both
sides: ``shortcut="A_both"``); ``"mmpretrain"`` ``backbone.*`` and ``head.fc.*`` (its
``ResNet``, ``ResNet_CIFAR``, ``ResNeXt``, ``ResNetV1c``/``V1d``). ``"auto"`` (``source`` only)
is mmpretrain for ``backbone.``/``head.`` keys, akamaster for ``linear.``, ``compressible_`` or
``.shortcut.`` ones, else resnetlib. Weights are first unwrapped from a ``"state_dict"`` or
``"model"`` entry and from a ``module.`` or ``_orig_mod.`` prefix that every key carries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn

from ..common import listing
from ..core.model import ResNet
from ..limits import MAX_CHANNELS
from ..nn.blocks import ResidualBlock
from ..nn.shortcuts import ZeroPadShortcut
from ..validate import check_int

__all__ = [
    "LAYOUTS",
    "STATE_DICT_LAYOUTS",
    "LoadReport",
    "ShapeMismatch",
    "WeightsMismatchError",
    "adapt_input_channels",
    "convert_state_dict",
    "detect_source",
    "layout_options",
    "load_weights",
    "to_torchvision",
    "unwrap_state_dict",
]

StateDict = dict[str, torch.Tensor]

_WRAPPER_KEYS = ("state_dict", "model")
_PREFIX = re.compile(r"module\.|_orig_mod\.")  # DataParallel's, torch.compile's
_HEAD = "fc"


def _rename(rename: Callable[[str], str], state: StateDict) -> StateDict:
    return {rename(key): value for key, value in state.items()}


def _akamaster_key_to_ours(key: str) -> str:
    key = key.replace("compressible_", "")  # a later revision's names for the same modules
    return re.sub(r"^linear\.", "fc.", key).replace(".shortcut.", ".downsample.")


def _ours_key_to_akamaster(key: str) -> str:
    return re.sub(r"^fc\.", "linear.", key).replace(".downsample.", ".shortcut.")


# mmpretrain's names and ours, as (theirs, ours, when) prefixes; the first that applies wins,
# both ways. ``{b}`` is a block (``layer2.0``). ``when``: "deep" only for a deep stem;
# "unpooled" only for ResNetV1d's stride-1 projections (no pool there, an Identity here).
_MMPRETRAIN_NAMES: tuple[tuple[str, str, str], ...] = (
    ("head.fc.", "fc.", ""),
    ("backbone.stem.0.conv.", "conv1.0.", ""),
    ("backbone.stem.0.bn.", "conv1.1.", ""),
    ("backbone.stem.1.conv.", "conv1.3.", ""),
    ("backbone.stem.1.bn.", "conv1.4.", ""),
    ("backbone.stem.2.conv.", "conv1.6.", ""),
    ("backbone.stem.2.bn.", "bn1.", "deep"),
    ("backbone.{b}.downsample.0.", "{b}.downsample.1.", "unpooled"),
    ("backbone.{b}.downsample.1.", "{b}.downsample.2.", "unpooled"),
    ("backbone.", "", ""),
)
_BLOCK = r"(?P<b>layer\d+\.\d+)"
_PROJECTION = re.compile(rf"(?:backbone\.)?{_BLOCK}\.downsample\.(?P<index>\d+)\.")


def _convert_mmpretrain(state: StateDict, *, to_ours: bool) -> StateDict:
    """Rename by ``_MMPRETRAIN_NAMES``. To ours, an ``avg_down`` net is one with a pooled
    projection (index 2), and its others are "unpooled"; from ours, the first stage's option-D
    projections are taken as the stride-1 (unpooled) ones, as mmpretrain's default strides
    make them (a dilated net's later stride-1 ones are not known from the names)."""
    projections: dict[str, set[str]] = {}  # a block's projection module indices
    for projection in filter(None, map(_PROJECTION.match, state)):
        projections.setdefault(projection["b"], set()).add(projection["index"])
    deep = any(key.startswith("backbone.stem." if to_ours else "conv1.0.") for key in state)
    if to_ours:
        avg_down = any("2" in indices for indices in projections.values())
        unpooled = {b for b, indices in projections.items() if avg_down and "2" not in indices}
    else:
        unpooled = {b for b in projections if "0" not in projections[b] and b.startswith("layer1.")}
    renamed: StateDict = {}
    for key, value in state.items():
        new = key
        for theirs, ours, when in _MMPRETRAIN_NAMES:
            old, replacement = (theirs, ours) if to_ours else (ours, theirs)
            match = re.match(re.escape(old).replace(re.escape("{b}"), _BLOCK), key)
            if match is None:
                continue
            block = match.groupdict().get("b")
            if (when == "deep" and not deep) or (when == "unpooled" and block not in unpooled):
                continue
            new = replacement.replace("{b}", block or "") + key[match.end() :]
            break
        renamed[new] = value
    return renamed


_BN = r"bn[1-3]\.(?:weight|bias|running_mean|running_var|num_batches_tracked)"
_TORCHVISION_KEY = re.compile(
    r"conv1\.weight|bn1\.\w+|fc\.(?:weight|bias)"
    rf"|layer[1-4]\.\d+\.(?:conv[1-3]\.weight|{_BN}|downsample\.0\.weight"
    r"|downsample\.1\.(?:weight|bias|running_mean|running_var|num_batches_tracked))"
)


def _ours_to_torchvision(state: StateDict) -> StateDict:
    foreign = [key for key in state if not _TORCHVISION_KEY.fullmatch(key)]
    if foreign:
        raise ValueError(
            f"torchvision's ResNet has no entries named {listing(foreign, 12)}; this model's "
            "layout (its stem, shortcuts, blocks or number of stages) has no torchvision "
            "equivalent"
        )
    return dict(state)


@dataclass(frozen=True)
class _Layout:
    to_resnetlib: Callable[[StateDict], StateDict]
    from_resnetlib: Callable[[StateDict], StateDict]
    model_options: Callable[[StateDict], dict[str, Any]] = lambda state: {}
    """Model overrides that weights in this layout need to compute what they computed."""


STATE_DICT_LAYOUTS: Mapping[str, _Layout] = {
    "resnetlib": _Layout(dict, dict),
    "torchvision": _Layout(dict, _ours_to_torchvision),
    "timm": _Layout(dict, dict),
    "akamaster": _Layout(
        partial(_rename, _akamaster_key_to_ours),
        partial(_rename, _ours_key_to_akamaster),
        # akamaster's option A pads on both sides; their option B has shortcut.* weights.
        lambda state: {"shortcut": "B" if any(".shortcut." in k for k in state) else "A_both"},
    ),
    "mmpretrain": _Layout(
        partial(_convert_mmpretrain, to_ours=True), partial(_convert_mmpretrain, to_ours=False)
    ),
}
LAYOUTS = STATE_DICT_LAYOUTS
"""``STATE_DICT_LAYOUTS`` by its former name."""


def _check_layout(argument: str, name: object, allow_auto: bool) -> None:
    allowed = (["auto"] if allow_auto else []) + list(STATE_DICT_LAYOUTS)
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"{argument} must be one of {', '.join(allowed)}; got {name!r}")


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> StateDict:
    """The flat ``{name: tensor}`` dict inside a checkpoint (see the module docstring)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a state dict must be a dict of tensors; got {type(checkpoint).__name__}")
    wrapped = [checkpoint[key] for key in _WRAPPER_KEYS if isinstance(checkpoint.get(key), Mapping)]
    state: Mapping[str, Any] = wrapped[0] if wrapped else checkpoint
    not_tensors = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"a state dict holds only tensors; these entries are not: {listing(not_tensors, 12)}"
        )
    flat: StateDict = dict(state)
    named = [repr(key) for key in flat if not isinstance(key, str)]
    if named:
        raise ValueError(
            f"a state dict's keys are parameter names (text); got {listing(named, 12)}"
        )
    if not flat:
        return flat
    # The prefixes every key shares are those of the first and last key in sorted order.
    low, high = min(flat), max(flat)
    start = 0
    while (prefix := _PREFIX.match(low, start)) and high.startswith(prefix[0], start):
        start = prefix.end()
    return {key[start:]: value for key, value in flat.items()}


def _source(source: str, state_dict: Mapping[str, Any]) -> tuple[str, StateDict]:
    """The checked layout name (``"auto"`` resolved) and the unwrapped weights."""
    _check_layout("source", source, allow_auto=True)
    flat = unwrap_state_dict(state_dict)
    return detect_source(flat) if source == "auto" else source, flat


def layout_options(source: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The model overrides weights in layout ``source`` need (akamaster's: their shortcut)."""
    _check_layout("source", source, allow_auto=False)
    return STATE_DICT_LAYOUTS[source].model_options(unwrap_state_dict(state_dict))


def detect_source(state_dict: Mapping[str, Any]) -> str:
    """The layout of a (flat or wrapped) state dict, from its key names."""
    keys = list(unwrap_state_dict(state_dict))
    if any(key.startswith(("backbone.", "head.")) for key in keys):
        return "mmpretrain"
    if any(key.startswith(("linear.", "compressible_")) for key in keys):
        return "akamaster"
    # akamaster's head is "linear": with an "fc", a ".shortcut." is a user block's own module
    if any(".shortcut." in key for key in keys) and not any(k.startswith("fc.") for k in keys):
        return "akamaster"
    return "resnetlib"


def convert_state_dict(
    state_dict: Mapping[str, Any], *, source: str = "auto", target: str = "resnetlib"
) -> StateDict:
    """Rename a state dict from the ``source`` layout to the ``target`` one (see the module
    docstring), in a new ``dict``; tensors are shared, not copied, and a mismatch of shapes
    shows when the result is loaded.

    Raises:
        ValueError: an unknown layout name, an entry that is not a tensor, or keys that
            have no equivalent in the ``target`` layout.

    Examples:
        >>> import resnetlib as rl
        >>> weights = rl.interop.convert_state_dict(rl.resnet20().state_dict(), target="mmpretrain")
        >>> next(iter(weights))
        'backbone.conv1.weight'
    """
    source, flat = _source(source, state_dict)
    _check_layout("target", target, allow_auto=False)
    return STATE_DICT_LAYOUTS[target].from_resnetlib(STATE_DICT_LAYOUTS[source].to_resnetlib(flat))


def to_torchvision(state_dict: Mapping[str, Any]) -> StateDict:
    """``convert_state_dict(state_dict, source="resnetlib", target="torchvision")``."""
    return convert_state_dict(state_dict, source="resnetlib", target="torchvision")


def adapt_input_channels(weight: torch.Tensor, *, in_channels: int) -> torch.Tensor:
    """A first-convolution weight ``(out, c, kh, kw)`` re-shaped for ``in_channels`` inputs, as
    a new tensor: for one, the sum over the ``c`` channels (a gray image gives what its replica
    gave); for more, the channels repeated cyclically and scaled by ``c / in_channels`` (``k``
    copies of an image give what the image gave).

    Raises:
        ValueError: ``weight`` is not a 4-d tensor, or ``in_channels`` is not an int in
            [1, ``MAX_CHANNELS``].

    Examples:
        >>> import torch, resnetlib as rl
        >>> rgb = rl.resnet18().conv1.weight.detach()
        >>> rl.interop.adapt_input_channels(rgb, in_channels=1).shape
        torch.Size([64, 1, 7, 7])
    """
    check_int("in_channels", in_channels, 1, MAX_CHANNELS, bound="resnetlib's size limit")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"expected a conv weight tensor (out, in, kh, kw); got {got}")
    channels = weight.shape[1]
    if in_channels == channels:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / channels)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (channels / in_channels)


class ShapeMismatch(NamedTuple):
    """A key whose tensor has a different shape in the model than in the weights."""

    key: str
    model_shape: tuple[int, ...]
    weights_shape: tuple[int, ...]


class WeightsMismatchError(ValueError):
    """Weights that do not fit a model; the message lists every key that does not."""

    def __init__(
        self,
        *,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[ShapeMismatch],
    ) -> None:
        self.source = source
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        shapes = [
            f"{m.key} (model {list(m.model_shape)}, weights {list(m.weights_shape)})"
            for m in mismatched
        ]
        lines = [f"weights (layout {source!r}) do not fit the model:"]
        for label, keys, limit in (
            ("missing from the weights", missing, 12),
            ("unexpected, not in the model", unexpected, 12),
            ("shape mismatch", shapes, 8),
        ):
            if keys:
                lines.append(f"  {label} ({len(keys)}): {listing(keys, limit)}")
        lines.append(
            "  check the model's spec (depth, widths, block, shortcut) and the layout "
            "(source=...), or pass strict=False to load what fits"
        )
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did. ``adapted``: stem weights changed for another
    ``in_channels``; ``reinitialized``: the head's keys kept as built; ``discarded``: the
    weights' head keys left out; ``missing``, ``unexpected``, ``mismatched``: with
    ``strict=False`` only."""

    source: str
    loaded: tuple[str, ...]
    adapted: tuple[str, ...] = ()
    reinitialized: tuple[str, ...] = ()
    discarded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[ShapeMismatch, ...] = ()


def _stem_conv_key(model: ResNet) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and name.split(".")[0] in model.stem_names:
            return f"{name}.weight"
    return None


def _check_akamaster_model(model: nn.Module) -> None:
    """A ``ResNet`` or a features-only backbone, by its modules."""
    if any(isinstance(m, ResidualBlock) and not m.residual for m in model.modules()):
        raise ValueError(
            "akamaster's weights are for residual networks; this model (shortcut 'none') adds "
            "no shortcuts"
        )
    wrong = [
        name
        for name, module in model.named_modules()
        if isinstance(module, ZeroPadShortcut) and module.placement != "both"
    ]
    if wrong:
        raise ValueError(
            "akamaster's option A pads the new zero channels on both sides, but this model's "
            f"option-A shortcuts ({', '.join(wrong)}) pad at the end, so its outputs would "
            "differ; build the model with "
            "shortcut='A_both' (create_model(..., checkpoint_path=...) does that itself)"
        )


def is_batch_counter(key: str) -> bool:
    """Whether ``key`` is a batch norm's ``num_batches_tracked``: torchvision's files have none,
    so every loader lets a model keep its own."""
    return key.endswith(".num_batches_tracked")


def load_weights(
    model: ResNet,
    state_dict: Mapping[str, Any],
    *,
    source: str = "auto",
    strict: bool = True,
    adapt_stem: bool = True,
    new_head: bool = True,
) -> LoadReport:
    """Load weights in any known layout into ``model`` and report what was done.

    With ``adapt_stem``, a stem convolution for another number of input channels is adapted
    (:func:`adapt_input_channels`); with ``new_head``, a classifier (``fc``) of another
    shape, or none, leaves the model's head as built. Anything else that does not fit is
    skipped and reported with ``strict=False``. Missing BatchNorm batch counters are no error.

    Raises:
        WeightsMismatchError: with ``strict=True``, weights that do not fit (every such key
            listed).
        ValueError: an unknown ``source`` layout, or akamaster's weights into a model whose
            option-A shortcuts do not pad on both sides (use ``shortcut="A_both"``).

    Examples:
        >>> import resnetlib as rl
        >>> from resnetlib.interop import load_weights
        >>> report = load_weights(rl.resnet20(num_classes=100), rl.resnet20().state_dict())
        >>> report.reinitialized
        ('fc.weight', 'fc.bias')
    """
    source, flat = _source(source, state_dict)
    if source == "akamaster":
        _check_akamaster_model(model)
    weights = STATE_DICT_LAYOUTS[source].to_resnetlib(flat)
    own = model.state_dict()

    adapted: list[str] = []
    stem_key = _stem_conv_key(model)
    if adapt_stem and stem_key is not None and stem_key in weights:
        have, want = weights[stem_key], own[stem_key]
        same_kernels = have.shape[:1] + have.shape[2:] == want.shape[:1] + want.shape[2:]
        if have.dim() == 4 and have.shape[1] != want.shape[1] and same_kernels:
            weights[stem_key] = adapt_input_channels(have, in_channels=want.shape[1])
            adapted.append(stem_key)

    # Batch counters the model has no place for (a frozen batch norm keeps none) are noise.
    weights = {
        key: value for key, value in weights.items() if key in own or not is_batch_counter(key)
    }

    reinitialized: list[str] = []
    discarded: list[str] = []
    head_keys = [key for key in own if key.startswith(f"{_HEAD}.")]
    their_head = [key for key in weights if key.startswith(f"{_HEAD}.")]
    if new_head and (
        any(key not in weights or weights[key].shape != own[key].shape for key in head_keys)
        or any(key not in own for key in their_head)  # e.g. a model without a classifier
    ):
        reinitialized, discarded = head_keys, their_head
        weights = {key: value for key, value in weights.items() if key not in their_head}

    missing = [
        k for k in own if k not in weights and k not in reinitialized and not is_batch_counter(k)
    ]
    unexpected = [key for key in weights if key not in own]
    mismatched = [
        ShapeMismatch(key, tuple(own[key].shape), tuple(value.shape))
        for key, value in weights.items()
        if key in own and value.shape != own[key].shape
    ]
    if strict and (missing or unexpected or mismatched):
        raise WeightsMismatchError(
            source=source, missing=missing, unexpected=unexpected, mismatched=mismatched
        )
    skip = {m.key for m in mismatched}
    fitting = {key: value for key, value in weights.items() if key in own and key not in skip}
    loaded = tuple(key for key in own if key in fitting)
    for key in own:  # a counter the weights lack keeps the model's value
        if is_batch_counter(key) and key not in fitting and key not in reinitialized:
            fitting[key] = own[key]
    model.load_state_dict(fitting, strict=False)
    return LoadReport(
        source=source,
        loaded=loaded,
        adapted=tuple(adapted),
        reinitialized=tuple(reinitialized),
        discarded=tuple(discarded),
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        mismatched=tuple(mismatched),
    )
