"""Model factories: the paper's ImageNet and CIFAR families, their plain twins, custom layouts,
each registered by name (``create_model("resnet56", num_classes=100)``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, Protocol, overload

import torch
from torch import nn
from typing_extensions import Unpack

from ..common import PathLike
from ..core.build import build_model, check_block_options
from ..core.data_config import set_data_config
from ..core.features import ResNetFeatures, features
from ..core.model import ResNet
from ..core.overrides import ModelOverrides, overridden_spec
from ..core.spec import JSONScalar, ResNetSpec, StageSpec, StemSpec
from ..nn import preact  # noqa: F401  (registers the pre-activation blocks, stems, shortcut)
from ..nn.blocks import BLOCKS
from ..registry import Registry, natural_key
from ..validate import check_int, check_keys, check_patterns, is_int, is_real
from .from_file import adapted_model, model_from_file
from .pretrained import load_pretrained
from .share import SHARED_PREFIXES, load_shared
from .weights import PretrainedWeights, get_weights

__all__ = [
    "MODELS",
    "ModelFactory",
    "cifar_resnet",
    "cifar_spec",
    "create_model",
    "imagenet_spec",
    "list_models",
    "model_spec",
    "plain18",
    "plain20",
    "plain32",
    "plain34",
    "plain44",
    "plain56",
    "plain110",
    "plain1202",
    "preact_cifar_resnet",
    "preact_resnet18",
    "preact_resnet34",
    "preact_resnet50",
    "preact_resnet101",
    "preact_resnet110",
    "preact_resnet152",
    "preact_resnet164",
    "preact_resnet1001",
    "register_model",
    "resnet",
    "resnet18",
    "resnet18d",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet34d",
    "resnet44",
    "resnet50",
    "resnet50d",
    "resnet56",
    "resnet101",
    "resnet101d",
    "resnet110",
    "resnet152",
    "resnet152d",
    "resnet1202",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]


class ModelFactory(Protocol):
    """A registered model builder: keyword overrides in, a fresh model out."""

    __name__: str

    def __call__(self, **overrides: Unpack[ModelOverrides]) -> ResNet: ...


def _validate_factory(name: str, item: object) -> None:
    if not callable(item):
        raise TypeError(f"model {name!r} must be a callable returning a ResNet; got {item!r}")


MODELS: Registry[Callable[..., ResNet]] = Registry("model", _validate_factory)
"""Model factories by name, as :func:`create_model` and :func:`list_models` see them."""
register_model = MODELS.register
"""Register a model factory: ``@register_model("my_resnet")`` on a function returning a ResNet."""


_FEATURE_CLASSES = (None, "list", "getter", "hook", "fx", "cls")
_OVERLAY_KEYS = frozenset(
    {"file", "input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode", "pool_size"}
)


@overload
def create_model(
    name: str,
    pretrained: bool | str = False,
    *,
    features_only: Literal[False] = False,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    in_chans: int | None = None,
    global_pool: str | None = None,
    drop_rate: float = 0.0,
    checkpoint_path: PathLike | None = None,
    checkpoint_source: str = "auto",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> ResNet: ...


@overload
def create_model(
    name: str,
    pretrained: bool | str = False,
    *,
    features_only: Literal[True],
    out_indices: int | Sequence[int] | None = None,
    feature_cls: str | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    in_chans: int | None = None,
    global_pool: str | None = None,
    drop_rate: float = 0.0,
    checkpoint_path: PathLike | None = None,
    checkpoint_source: str = "auto",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> ResNetFeatures: ...


def create_model(
    name: str,
    pretrained: bool | str = False,
    *,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    feature_cls: str | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    in_chans: int | None = None,
    global_pool: str | None = None,
    drop_rate: float = 0.0,
    checkpoint_path: PathLike | None = None,
    checkpoint_source: str = "auto",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> ResNet | ResNetFeatures:
    """Build the registered model ``name``, in training mode, with keyword overrides (timm's
    arguments too); with ``features_only``, its ``ResNetFeatures``.

    ``pretrained=True`` loads the default weights, ``pretrained="<tag>"`` (or
    ``name="model.tag"``) named ones (:func:`~resnetlib.list_pretrained`), downloaded into
    torch.hub's or huggingface_hub's cache and checksum-checked; ``"model.tag"`` alone gives
    that tag's ``pretrained_cfg`` with random weights, as in timm. ``pretrained_cfg_overlay``
    changes that configuration; its ``file`` loads the weights from a local file instead.

    timm's arguments: ``in_chans`` (``in_channels``), ``global_pool`` (``"avg"``, ``"max"``,
    ``"avgmax"``, ``"catavgmax"``, or ``""``: none, with ``num_classes=0``; loaded weights keep
    their classifier, so a pool of another width needs ``num_classes``), ``drop_rate``
    (dropout before ``fc``),
    ``features_only`` (:func:`~resnetlib.core.features`; ``out_indices`` 0 is the stem),
    ``feature_cls`` (any but ``"dict"``: the list of maps), ``device`` and ``dtype``
    (``"meta"``: no memory). ``overrides``: :class:`ModelOverrides` and the factory's own.

    ``checkpoint_path`` loads a :func:`~resnetlib.save` checkpoint or a state-dict file in
    layout ``checkpoint_source`` (``"auto"`` detects it; akamaster's weights get their
    shortcut unless ``shortcut`` is given). ``"local-dir:FOLDER"`` and
    ``"hf-hub:ORG/NAME[@REVISION]"`` (the ``hub`` extra) load a Hugging Face model folder
    (``save_pretrained``'s or timm's), ``pretrained`` or not. Weights of another
    ``num_classes`` or ``in_channels`` load with a new head or an adapted stem.

    Raises:
        KeyError: an unknown model, registry name or pretrained tag (the message lists close
            matches).
        TypeError: an unknown keyword argument; a registered factory that returns no ResNet.
        ValueError: an override out of range, naming the field and what is allowed; a
            ``name`` that is not a str.
        PretrainedError: pretrained weights that cannot be downloaded or fail their
            checksum.
        CheckpointError: a ``checkpoint_path`` that is not an intact checkpoint.
        WeightsMismatchError: weights that do not fit the model.

    Examples:
        >>> import torch, resnetlib as rl
        >>> rl.create_model("resnet56", num_classes=100).fc.out_features
        100
        >>> backbone = rl.create_model("resnet50", features_only=True, out_indices=(3, 4))
        >>> [feature_map.shape[1] for feature_map in backbone(torch.randn(1, 3, 64, 64))]
        [1024, 2048]
    """
    if not isinstance(name, str):
        raise ValueError(f"the model name must be a str such as 'resnet50'; got {name!r:.100}")
    if feature_cls not in _FEATURE_CLASSES:
        raise ValueError(
            f"feature_cls must be one of {', '.join(map(repr, _FEATURE_CLASSES))} (each gives "
            f"resnetlib's list of feature maps); got {feature_cls!r}"
        )
    if not isinstance(features_only, bool):
        raise ValueError(f"features_only must be True or False; got {features_only!r:.100}")
    for option, value in (("out_indices", out_indices), ("feature_cls", feature_cls)):
        if value is not None and not features_only:
            raise ValueError(f"{option} is for features_only=True; got features_only=False")
    if in_chans is not None:
        if overrides.get("in_channels", in_chans) != in_chans:
            raise ValueError(
                f"in_chans={in_chans} and in_channels={overrides['in_channels']} disagree; "
                "give one (in_chans is timm's name for in_channels)"
            )
        overrides["in_channels"] = in_chans
    new_head = "num_classes" in overrides  # else the loaded classifier is the model's
    overlay = check_keys("pretrained_cfg_overlay", pretrained_cfg_overlay or {}, _OVERLAY_KEYS)
    if not isinstance(pretrained, (bool, str)) or pretrained == "":
        raise ValueError(f"pretrained must be a bool or a tag; got {pretrained!r}")
    entry: PretrainedWeights | None = None
    if name.startswith(SHARED_PREFIXES):
        if isinstance(pretrained, str) or checkpoint_path is not None or "file" in overlay:
            raise ValueError(
                f"{name[:200]} loads its folder's weights; a pretrained tag, checkpoint_path and "
                "pretrained_cfg_overlay's file do not apply"
            )
        model = _shared_model(name, overrides)
        if device is not None:
            model.to(device)
    else:
        tag: str | None = pretrained if isinstance(pretrained, str) else None
        if "." in name:
            name, name_tag = name.split(".", 1)
            if tag is not None and tag != name_tag:
                raise ValueError(f"pretrained={tag!r} disagrees with the tag in {name}.{name_tag}")
            tag = name_tag
        factory = partial(_call_factory, MODELS.get(name), name)
        if pretrained and checkpoint_path is not None:
            raise ValueError("give pretrained or checkpoint_path, not both")
        if tag is not None or pretrained:
            entry = get_weights(name, tag)
            overrides = {"num_classes": entry.num_classes, **entry.overrides, **overrides}
        with torch.device(device) if device is not None else contextlib.nullcontext():
            if checkpoint_path is None:
                model = factory(**overrides)
            else:
                model = model_from_file(
                    factory, checkpoint_path, source=checkpoint_source, overrides=overrides
                )
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
        model.to(dtype=dtype)
    if not is_real(drop_rate) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be a float in [0, 1); got {drop_rate!r}")
    model.drop_rate = float(drop_rate)
    loaded = checkpoint_path is not None or name.startswith(SHARED_PREFIXES)
    if entry is not None:
        if pretrained is not False or "file" in overlay:
            load_pretrained(model, entry, file=overlay.get("file"))
            loaded = True
        else:
            set_data_config(model, entry.pretrained_cfg)
    if global_pool is not None and global_pool != model.global_pool:
        _set_pool(model, global_pool, keep=loaded and not new_head)
    if "file" in overlay and entry is None:
        raise ValueError(
            "pretrained_cfg_overlay=dict(file=...) needs pretrained weights to say the file's "
            "layout (pretrained=True or a tag); for any file use checkpoint_path="
        )
    if changes := {key: value for key, value in overlay.items() if key != "file"}:
        set_data_config(model, {**model.pretrained_cfg, **changes})  # checked like any other
    return features(model, out_indices=out_indices) if features_only else model


def _set_pool(model: ResNet, global_pool: str, *, keep: bool) -> None:
    """timm's ``global_pool`` on a built model; ``keep``: its classifier holds loaded weights,
    kept where the pool's width is the same, refused where it is not."""
    head = model.fc
    model.reset_classifier(model.num_classes, global_pool=global_pool)
    if keep and isinstance(head, nn.Linear):
        if head.weight.shape != model.fc.weight.shape:
            raise ValueError(
                f"global_pool={global_pool!r} gives the classifier {model.fc.in_features} "
                f"features, and the loaded one takes {head.in_features}: pass num_classes for a "
                "new classifier, or another pool"
            )
        model.fc = head


def _call_factory(factory: Callable[..., ResNet], name: str, **overrides: Any) -> ResNet:
    """``factory(**overrides)`` for the factory registered as ``name``: every call of a
    registered factory goes through here, which refuses (``TypeError``) what is not a ResNet."""
    model: object = factory(**overrides)
    if not isinstance(model, ResNet):
        got = "None" if model is None else f"a {type(model).__name__}"
        raise TypeError(
            f"model factory {name!r} returned {got}; a registered factory must return a "
            "resnetlib ResNet (rl.build(spec) makes one)"
        )
    return model


def _shared_model(name: str, overrides: dict[str, Any]) -> ResNet:
    """The model of a ``local-dir:`` or ``hf-hub:`` folder; ``num_classes`` gives it a new head
    and ``in_channels`` an adapted stem, as for a checkpoint."""
    adapt: dict[str, Any] = {
        k: overrides.pop(k) for k in ("num_classes", "in_channels") if k in overrides
    }
    if overrides:
        raise ValueError(
            f"{name[:200]} builds the folder's model as saved; {', '.join(sorted(overrides))} "
            "do not apply (num_classes gives a new head, in_chans an adapted stem)"
        )
    model = load_shared(name)
    if any(value != getattr(model.spec, key) for key, value in adapt.items()):
        saved = next(model.parameters()).dtype  # kept, as without a new head
        model = adapted_model(model.spec, model.state_dict(), model.pretrained_cfg, adapt)
        model = model.to(saved)
    return model


def list_models(pattern: str | Sequence[str] = "*") -> list[str]:
    """Registered model names matching a shell pattern (or any of several, as timm's
    ``list_models`` takes them), numbers sorted as numbers.

    Raises:
        ValueError: a pattern that is not a str, nor an iterable of them (a list, tuple, set).

    Examples:
        >>> import resnetlib as rl
        >>> rl.list_models("resnet1*")[:4]
        ['resnet18', 'resnet18d', 'resnet101', 'resnet101d']
    """
    patterns = check_patterns("model name", pattern)
    return sorted({name for each in patterns for name in MODELS.names(each)}, key=natural_key)


_SPECS: dict[Callable[..., ResNet], Callable[[], ResNetSpec]] = {}
"""The built-in factories' spec makers (a name re-registered by a user has its own factory)."""


def model_spec(name: str, **overrides: Any) -> ResNetSpec:
    """The spec ``create_model(name, **overrides)`` builds (a user's factory on the meta device).
    No model is built for a registered spec, so what only a build decides (a part's registered
    name, a shortcut that cannot change the width, ``zero_init_residual`` on a plain net) is
    refused by :func:`build`, not here.

    Raises:
        KeyError: an unknown model name (the message lists close matches).
        TypeError, ValueError: as :func:`create_model` for the overrides and the factory.

    Examples:
        >>> import resnetlib as rl
        >>> rl.model_spec("resnet110", num_classes=100).num_classes
        100
    """
    factory = MODELS.get(name)
    make_spec = _SPECS.get(factory)
    if make_spec is None:
        with torch.device("meta"):
            return _call_factory(factory, name, **overrides).spec
    spec, origin = overridden_spec(make_spec(), overrides, name)
    if spec.block_options and spec.block in BLOCKS:  # else build() names the unknown block
        check_block_options(spec.block, BLOCKS[spec.block], spec.block_options, origin)
    return spec


def imagenet_spec(layers: Sequence[int], block: str = "basic") -> ResNetSpec:
    """ImageNet layout (paper Table 1, 1000 classes): 7x7 stem, one stage per entry of
    ``layers`` (widths 64/128/256/512), option B.

    Raises:
        ValueError: ``layers`` is not a non-empty sequence of ints >= 1.
    """
    return _imagenet_layout(layers, block, "B", "imagenet", {})


def _imagenet_layout(
    layers: Sequence[int], block: str, shortcut: str, stem: str, options: Mapping[str, JSONScalar]
) -> ResNetSpec:
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be a non-empty sequence of ints >= 1; got {layers!r}")
    stages = []
    for i, n in enumerate(layers):
        check_int(f"layers[{i}]", n)
        stages.append(StageSpec(num_blocks=n, width=64 * 2**i, stride=1 if i == 0 else 2))
    return ResNetSpec(
        stages=tuple(stages),
        block=block,
        shortcut=shortcut,
        stem=StemSpec(stem, 64),
        num_classes=1000,
        block_options=dict(options),
    )


def cifar_spec(depth: int, block: str = "basic") -> ResNetSpec:
    """CIFAR layout (paper section 4.2, 10 classes): 3x3 stem, three stages of ``n`` blocks at
    16/32/64, option A; ``depth`` is ``3 * n * block.weighted_layers + 2`` (6n+2 for basic blocks).

    Raises:
        KeyError: ``block`` is not a registered block.
        ValueError: ``depth`` does not fit the block (the message lists valid depths).

    Examples:
        >>> import resnetlib as rl
        >>> [stage.num_blocks for stage in rl.cifar_spec(56).stages]
        [9, 9, 9]
    """
    return _cifar_layout(depth, block, "A", "cifar")


def _cifar_layout(depth: int, block: str, shortcut: str, stem: str) -> ResNetSpec:
    step = 3 * BLOCKS.get(block).weighted_layers
    if not is_int(depth) or depth < step + 2 or (depth - 2) % step:
        examples = ", ".join(str(step * n + 2) for n in (3, 5, 7, 9, 18))
        raise ValueError(
            f"CIFAR ResNet depth must be {step}n+2 ({examples}, ...) for {block!r} blocks; "
            f"got {depth!r}"
        )
    n = (depth - 2) // step
    stages = tuple(
        StageSpec(num_blocks=n, width=width, stride=stride)
        for width, stride in ((16, 1), (32, 2), (64, 2))
    )
    return ResNetSpec(
        stages=stages, block=block, shortcut=shortcut, stem=StemSpec(stem, 16), num_classes=10
    )


def resnet(layers: Sequence[int], **overrides: Unpack[ModelOverrides]) -> ResNet:
    """A ResNet on the ImageNet layout with ``layers[i]`` blocks in stage ``i``, of width
    ``64 * 2**i``; all stages but the first halve the resolution.

    Raises:
        TypeError: a keyword that is not an override.
        ValueError: ``layers`` is not a non-empty sequence of ints >= 1, or an override
            is out of range.
        KeyError: an unknown block, shortcut, stem, norm or activation name.

    Examples:
        >>> import torch, resnetlib as rl
        >>> model = rl.resnet((2, 2), block="bottleneck", in_channels=1, num_classes=5)
        >>> model(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 5])
    """
    block = overrides.get("block", "basic")
    return build_model(*overridden_spec(imagenet_spec(layers, block), overrides, "resnet"))


def cifar_resnet(depth: int, **overrides: Unpack[ModelOverrides]) -> ResNet:
    """A CIFAR ResNet of any valid depth (6n+2 for basic blocks), option A by default.

    Raises:
        TypeError: a keyword that is not an override.
        ValueError: ``depth`` does not fit the block (the message lists valid depths), or
            an override is out of range.
        KeyError: an unknown block, shortcut, stem, norm or activation name.

    Examples:
        >>> import resnetlib as rl
        >>> model = rl.cifar_resnet(74)  # 12 blocks a stage: 97,216 * 12 - 21,926 parameters
        >>> rl.count_parameters(model)
        1144666
    """
    block = overrides.get("block", "basic")
    return build_model(*overridden_spec(cifar_spec(depth, block), overrides, "cifar_resnet"))


_FACTORY_SECTIONS = """

Raises:
    TypeError: a keyword that is not an override.
    ValueError: an override out of range, naming the field and what is allowed.
    KeyError: an unknown block, shortcut, stem, norm or activation name.
"""


def _family(name: str, make_spec: Callable[[], ResNetSpec], doc: str) -> ModelFactory:
    def factory(**overrides: Unpack[ModelOverrides]) -> ResNet:
        if not overrides:
            return build_model(make_spec(), None)
        return build_model(*overridden_spec(make_spec(), overrides, name))

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc + _FACTORY_SECTIONS
    register_model(name, factory)
    _SPECS[factory] = make_spec
    return factory


# The paper's ImageNet depths (Table 1): blocks per stage and block type.
_DEPTHS: dict[int, tuple[tuple[int, ...], str]] = {
    18: ((2, 2, 2, 2), "basic"),
    34: ((3, 4, 6, 3), "basic"),
    50: ((3, 4, 6, 3), "bottleneck"),
    101: ((3, 4, 23, 3), "bottleneck"),
    152: ((3, 8, 36, 3), "bottleneck"),
}


def _imagenet(name: str, doc: str, shortcut: str = "B", **options: JSONScalar) -> ModelFactory:
    layers, block = _DEPTHS[int(re.findall(r"\d+", name)[0])]  # the depth its name gives
    stem = "deep" if shortcut == "D" else "imagenet"
    if shortcut == "preact_B":
        block, stem = f"preact_{block}", "imagenet_preact"
    return _family(name, partial(_imagenet_layout, layers, block, shortcut, stem, options), doc)


def _cifar(name: str, depth: int, shortcut: str, doc: str) -> ModelFactory:
    return _family(name, partial(_cifar_layout, depth, "basic", shortcut, "cifar"), doc)


_B = "Option B shortcuts, 1000 classes, torchvision-compatible names and weights."
resnet18 = _imagenet("resnet18", f"ResNet-18: 11,689,512 params, 1.814 G mult-adds. {_B}")
resnet34 = _imagenet("resnet34", f"ResNet-34: 21,797,672 params, 3.664 G mult-adds. {_B}")
resnet50 = _imagenet("resnet50", f"ResNet-50: 25,557,032 params, 4.089 G mult-adds. {_B}")
resnet101 = _imagenet("resnet101", f"ResNet-101: 44,549,160 params, 7.801 G mult-adds. {_B}")
resnet152 = _imagenet("resnet152", f"ResNet-152: 60,192,808 params, 11.514 G mult-adds. {_B}")
_N = "the ResNet of its depth without shortcuts"
plain18 = _imagenet("plain18", f"Plain-18: {_N} (paper Fig. 4 left).", "none")
plain34 = _imagenet("plain34", f"Plain-34: {_N} (paper Fig. 3 middle).", "none")

_W = "Bottleneck inner width int(width * width_per_group / 64) * groups, as torchvision."
_WIDE = f"Twice the inner widths of the ResNet of its depth. {_W}"
_X = f"NxMd: N groups of M channels. {_W}"
wide_resnet50_2 = _imagenet(
    "wide_resnet50_2", f"Wide ResNet-50-2: 68,883,240 params. {_WIDE}", width_per_group=128
)
wide_resnet101_2 = _imagenet(
    "wide_resnet101_2", f"Wide ResNet-101-2: 126,886,696 params. {_WIDE}", width_per_group=128
)
resnext50_32x4d = _imagenet(
    "resnext50_32x4d", f"ResNeXt-50 32x4d: 25,028,904 params. {_X}", groups=32, width_per_group=4
)
resnext101_32x8d = _imagenet(
    "resnext101_32x8d", f"ResNeXt-101 32x8d: 88,791,336 params. {_X}", groups=32, width_per_group=8
)

_D = (
    "Bag of Tricks ResNet-D (He et al., 2019; timm's resnet*d): deep 3x3 stem of widths "
    "32/32/64 and option D shortcuts (average pool, then stride-1 projection); "
    "timm-compatible names and weights."
)
resnet18d = _imagenet("resnet18d", f"ResNet-18-D: 11,708,744 params. {_D}", "D")
resnet34d = _imagenet("resnet34d", f"ResNet-34-D: 21,816,904 params. {_D}", "D")
resnet50d = _imagenet("resnet50d", f"ResNet-50-D: 25,576,264 params. {_D}", "D")
resnet101d = _imagenet("resnet101d", f"ResNet-101-D: 44,568,392 params. {_D}", "D")
resnet152d = _imagenet("resnet152d", f"ResNet-152-D: 60,212,040 params. {_D}", "D")

_A = "CIFAR-10 layout, option A shortcuts, 10 classes (paper section 4.2)."
resnet20 = _cifar("resnet20", 20, "A", f"ResNet-20: 269,722 params. {_A}")
resnet32 = _cifar("resnet32", 32, "A", f"ResNet-32: 464,154 params. {_A}")
resnet44 = _cifar("resnet44", 44, "A", f"ResNet-44: 658,586 params. {_A}")
resnet56 = _cifar("resnet56", 56, "A", f"ResNet-56: 853,018 params. {_A}")
resnet110 = _cifar("resnet110", 110, "A", f"ResNet-110: 1,727,962 params. {_A}")
resnet1202 = _cifar("resnet1202", 1202, "A", f"ResNet-1202: 19,421,274 params. {_A}")

_P = "ResNet's CIFAR layout without shortcuts; same parameter count as its option-A twin."
plain20 = _cifar("plain20", 20, "none", f"Plain-20. {_P}")
plain32 = _cifar("plain32", 32, "none", f"Plain-32. {_P}")
plain44 = _cifar("plain44", 44, "none", f"Plain-44. {_P}")
plain56 = _cifar("plain56", 56, "none", f"Plain-56. {_P}")
plain110 = _cifar("plain110", 110, "none", f"Plain-110. {_P}")
plain1202 = _cifar("plain1202", 1202, "none", f"Plain-1202. {_P}")

# Pre-activation family (He et al. 2016, "Identity Mappings in Deep Residual Networks").


def _preact_cifar_spec(depth: int, block: str) -> ResNetSpec:
    shortcut = "A" if BLOCKS.get(block).expansion == 1 else "preact_B"
    return _cifar_layout(depth, block, shortcut, "cifar_preact")


def preact_cifar_resnet(depth: int, **overrides: Unpack[ModelOverrides]) -> ResNet:
    """A pre-activation CIFAR ResNet of any valid depth (He et al. 2016): ``block`` defaults to
    ``"preact_bottleneck"`` (depth 9n+2) with norm-free projections (``"preact_B"``); a block
    that does not expand, such as ``"preact_basic"`` (depth 6n+2), defaults to option A.

    Raises:
        TypeError: a keyword that is not an override.
        ValueError: ``depth`` does not fit the block (the message lists valid depths), or
            an override is out of range.
        KeyError: an unknown block, shortcut, stem, norm or activation name.
    """
    block = overrides.get("block", "preact_bottleneck")
    spec = _preact_cifar_spec(depth, block)
    return build_model(*overridden_spec(spec, overrides, "preact_cifar_resnet"))


_PA = "CIFAR-10 layout, 10 classes, pre-activation units (He et al. 2016)"
preact_resnet110 = _family(
    "preact_resnet110",
    partial(_preact_cifar_spec, 110, "preact_basic"),
    f"Pre-activation ResNet-110: 1,727,962 params (ResNet-110's). {_PA}, option A.",
)
preact_resnet164 = _family(
    "preact_resnet164",
    partial(_preact_cifar_spec, 164, "preact_bottleneck"),
    f"Pre-activation ResNet-164: 1,703,258 params. {_PA}, 1x1 projections.",
)
preact_resnet1001 = _family(
    "preact_resnet1001",
    partial(_preact_cifar_spec, 1001, "preact_bottleneck"),
    f"Pre-activation ResNet-1001: 10,327,706 params. {_PA}, 1x1 projections.",
)

_PI = (
    "ImageNet layout, 1000 classes, pre-activation units (He et al. 2016), "
    "1x1 projections without a norm."
)
preact_resnet18 = _imagenet("preact_resnet18", f"Pre-activation ResNet-18. {_PI}", "preact_B")
preact_resnet34 = _imagenet("preact_resnet34", f"Pre-activation ResNet-34. {_PI}", "preact_B")
preact_resnet50 = _imagenet("preact_resnet50", f"Pre-activation ResNet-50. {_PI}", "preact_B")
preact_resnet101 = _imagenet("preact_resnet101", f"Pre-activation ResNet-101. {_PI}", "preact_B")
preact_resnet152 = _imagenet("preact_resnet152", f"Pre-activation ResNet-152. {_PI}", "preact_B")
