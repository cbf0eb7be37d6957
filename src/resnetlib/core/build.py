"""``build(spec)``: the one place where registry names become modules."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TypeVar, get_args, get_origin

from torch import nn
from typing_extensions import Unpack, get_type_hints, is_typeddict

from ..nn.activations import ACTIVATIONS, ActLayer
from ..nn.blocks import BLOCKS, NormLayer, ResidualBlock
from ..nn.drop_path import drop_path_rates
from ..nn.norms import NORMS
from ..nn.shortcuts import SHORTCUTS
from ..nn.stems import STEMS
from .model import ResNet
from .spec import JSONScalar, ResNetSpec

__all__ = ["build"]

# Arguments that build() passes to every block, and those it passes only when a spec asks
# for them; none is settable through block_options.
ALWAYS_PASSED = ("in_channels", "width", "stride", "downsample", "residual", "norm_layer")
_BUILD_ARGUMENTS = frozenset((*ALWAYS_PASSED, "act_layer", "drop_path", "dilation"))
_DEFAULT_ACT = "relu"
_STEM_ARGUMENTS = "in_channels, out_channels, norm_layer, and act_layer for an act other than relu"
M = TypeVar("M", bound=nn.Module)


def build(spec: ResNetSpec) -> ResNet:
    """Build and initialize the network a spec describes, without a forward pass; no partly
    built model is ever returned.

    Returns:
        A new model in training mode; ``model.spec`` is ``spec``.

    Raises:
        TypeError: ``spec`` is not a [`ResNetSpec`][resnetlib.ResNetSpec]; a block's or stem's
            constructor raised one (the message names it, the error is its cause).
        KeyError: an unknown block, shortcut, stem, norm or activation name (an
            [`UnknownNameError`][resnetlib.registry.UnknownNameError] naming the close matches).
        ValueError: a block option the block does not take, a block or stem that does not
            take the keyword arguments ``build`` passes, or a shape the shortcut cannot produce.

    Examples:
        >>> import dataclasses, resnetlib as rl
        >>> spec = dataclasses.replace(rl.cifar_spec(20), shortcut="B", num_classes=100)
        >>> rl.build(spec).fc.out_features
        100
    """
    return build_model(spec, None)


def build_model(spec: ResNetSpec, origin: Callable[[str], str | None] | None) -> ResNet:
    """[`build`][resnetlib.build]; ``origin(option)`` says who set a refused block option."""
    if not isinstance(spec, ResNetSpec):
        raise TypeError(f"build() takes a ResNetSpec; got {type(spec).__name__}")
    block_cls = BLOCKS[spec.block]
    strategy = SHORTCUTS[spec.shortcut]()
    stem_cls = STEMS[spec.stem.type]
    norm_layer: NormLayer = NORMS[spec.norm]
    act_layer: ActLayer = ACTIVATIONS[spec.act]
    if spec.block_options:
        check_block_options(spec.block, block_cls, spec.block_options, origin)
    rate = spec.drop_path_rate
    if spec.zero_init_residual and not strategy.adds_shortcut:
        raise ValueError(
            f"zero_init_residual=True needs a shortcut; with shortcut={spec.shortcut!r} "
            "(no addition) every block would output zeros"
        )
    if rate > 0.0 and not strategy.adds_shortcut:
        raise ValueError(
            f"drop_path_rate={rate} needs a shortcut; with shortcut={spec.shortcut!r} "
            "(no addition) dropping a branch drops the signal"
        )
    # Options other than the defaults reach stems and blocks only when the spec asks for
    # them, so a type written without them still builds every spec it can serve.
    act_option = {} if spec.act == _DEFAULT_ACT else {"act_layer": act_layer}
    if act_option:
        _check_accepts("stem", spec.stem.type, stem_cls, "act_layer", f"act={spec.act!r}")
        _check_accepts("block", spec.block, block_cls, "act_layer", f"act={spec.act!r}")
    for stage in spec.stages:
        if stage.dilation > 1:
            _check_accepts("block", spec.block, block_cls, "dilation", "a stage dilation > 1")
            break
    rates = None
    if rate > 0.0:
        _check_accepts("block", spec.block, block_cls, "drop_path", f"drop_path_rate={rate}")
        rates = iter(drop_path_rates(rate, spec.num_blocks))
    stem_arguments = dict(
        in_channels=spec.in_channels,
        out_channels=spec.stem.out_channels,
        norm_layer=norm_layer,
        **act_option,
    )
    stem = _construct("stem", spec.stem.type, stem_cls, stem_arguments, _STEM_ARGUMENTS)
    block_arguments = f"{', '.join(ALWAYS_PASSED)}, and the spec's options"
    channels = spec.stem.out_channels
    previous_dilation = 1
    stages: list[nn.Sequential] = []
    for stage_index, stage in enumerate(spec.stages, start=1):
        blocks: list[ResidualBlock] = []
        out_channels = stage.width * block_cls.expansion
        for block_index in range(stage.num_blocks):
            # As torchvision: a dilated stage's first block keeps the previous dilation.
            stride = stage.stride if block_index == 0 else 1
            dilation = previous_dilation if block_index == 0 else stage.dilation
            options: dict[str, object] = dict(act_option)
            if dilation > 1:
                options["dilation"] = dilation
            if rates is not None:
                options["drop_path"] = next(rates)
            try:
                downsample = strategy.make(
                    in_channels=channels,
                    out_channels=out_channels,
                    stride=stride,
                    norm_layer=norm_layer,
                )
            except ValueError as error:
                where = f"layer{stage_index}.{block_index}"
                raise ValueError(f"{where}: shortcut {spec.shortcut!r}: {error}") from None
            arguments = dict(
                in_channels=channels,
                width=stage.width,
                stride=stride,
                downsample=downsample,
                residual=strategy.adds_shortcut,
                norm_layer=norm_layer,
                **options,
                **spec.block_options,
            )
            block = _construct("block", spec.block, block_cls, arguments, block_arguments)
            if block.out_channels != out_channels:
                raise ValueError(
                    f"layer{stage_index}.{block_index}: block {spec.block!r} reports "
                    f"out_channels={block.out_channels}, but width {stage.width} x expansion "
                    f"{block_cls.expansion} = {out_channels}"
                )
            if "downsample" in block._modules:  # after the branch, where torchvision has it
                block._modules["downsample"] = block._modules.pop("downsample")
            blocks.append(block)
            channels = out_channels
        previous_dilation = stage.dilation
        stages.append(nn.Sequential(*blocks))

    final = block_cls.final_layers(channels, norm_layer=norm_layer, act_layer=act_layer)
    model = ResNet(stem=stem, stages=stages, final=final, num_classes=spec.num_classes, spec=spec)
    model.init_weights(zero_init_residual=spec.zero_init_residual)
    return model


def _construct(
    kind: str, name: str, cls: type[M], arguments: Mapping[str, object], passed: str
) -> M:
    """``cls(**arguments)``, the ``kind`` registered as ``name``; ``passed`` says which
    arguments build() passes.

    Raises:
        ValueError: the arguments do not fit ``cls``'s signature.
        TypeError: the constructor itself raised one (chained as the cause).
    """
    try:
        return cls(**arguments)
    except TypeError as error:
        label = f"{kind} {name!r} ({cls.__name__})"
        try:
            inspect.signature(cls).bind(**arguments)
        except TypeError:
            raise ValueError(
                f"{label} cannot be built with the keyword arguments build() passes ({passed}): "
                f"{error}; resnetlib.testing.check_{kind} checks a {kind} (docs/extending.md)"
            ) from error
        raise TypeError(f"{label} raised TypeError while being built: {error}") from error


def keywords_of(cls: type) -> frozenset[str] | None:
    """The keyword arguments ``cls`` takes; ``None`` when it takes any (``**kwargs``, unless
    typed ``Unpack[SomeTypedDict]``: then its keys)."""
    parameters = inspect.signature(cls).parameters
    names = {name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if len(names) == len(parameters):
        return frozenset(names)
    (kwargs,) = parameters.keys() - names
    try:
        hints = get_type_hints(cls.__init__, include_extras=True)  # type: ignore[misc]
    except Exception:  # an annotation that does not resolve: take any keyword
        return None
    hint = hints.get(kwargs)
    if get_origin(hint) is not Unpack:
        return None
    (typed,) = get_args(hint)
    return frozenset(names | typed.__annotations__.keys()) if is_typeddict(typed) else None


def takes_keyword(cls: type, keyword: str) -> bool:
    """Whether ``cls(**{keyword: ...})`` is accepted by its signature."""
    keywords = keywords_of(cls)
    return keywords is None or keyword in keywords


def block_options_of(block_cls: type) -> list[str] | None:
    """The block options ``block_cls`` takes, sorted; ``None`` when it takes any."""
    keywords = keywords_of(block_cls)
    return None if keywords is None else sorted(keywords - _BUILD_ARGUMENTS)


def check_block_options(
    name: str,
    block_cls: type[ResidualBlock],
    options: Mapping[str, JSONScalar],
    origin: Callable[[str], str | None] | None = None,
) -> None:
    """Refuse an option block ``name`` cannot take; ``origin(option)`` says who set it."""
    accepted = block_options_of(block_cls) if options else None
    for option in options:
        where = origin(option) if origin is not None else None
        came = f". {where}" if where else ""
        if option in _BUILD_ARGUMENTS:
            raise ValueError(
                f"block_options[{option!r}] is set by build() from the spec; remove it{came}"
            )
        if accepted is not None and option not in accepted:
            raise ValueError(
                f"block {name!r} ({block_cls.__name__}) does not accept option {option!r}; "
                f"it accepts: {', '.join(accepted) or '(no options)'}{came}"
            )


def _check_accepts(kind: str, name: str, cls: type, option: str, reason: str) -> None:
    if not takes_keyword(cls, option):
        raise ValueError(
            f"{kind} {name!r} ({cls.__name__}) does not take {option!r}, which the spec "
            f"needs for {reason}; add a keyword-only {option!r} argument (see docs/extending.md)"
        )
