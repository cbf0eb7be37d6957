"""Residual blocks: the block interface, the paper's basic and bottleneck blocks, and the small
layer constructors blocks, shortcuts and stems share."""

from __future__ import annotations

import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import Required, TypedDict, Unpack

from ..common import first_line
from ..limits import MAX_CHANNELS
from ..registry import Registry, subclass_of
from ..validate import check_int, is_int
from .activations import ActLayer, relu
from .drop_path import DropPath

__all__ = [
    "BLOCKS",
    "BasicBlock",
    "BlockArgs",
    "Bottleneck",
    "NormLayer",
    "ResidualBlock",
    "conv1x1",
    "conv3x3",
    "grouped_widths",
    "register_block",
    "zero_norm_weight",
]

NormLayer = Callable[[int], nn.Module]
"""Builds a normalization layer for a number of channels (``nn.BatchNorm2d`` by default)."""


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, *, dilation: int = 1, groups: int = 1
) -> nn.Conv2d:
    """3x3 convolution without bias, padded so that only ``stride`` changes the size."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, dilation, dilation, groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def zero_norm_weight(norm: nn.Module) -> None:
    """Zero a norm layer's scale, so that its output starts at its (zero) bias; raises
    ``TypeError`` for a norm without an affine weight."""
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(
            f"cannot zero-init {type(norm).__name__}: it has no affine weight "
            "(build norms with affine=True to use zero_init_residual)"
        )
    nn.init.zeros_(weight)


class BlockArgs(TypedDict, total=False):
    """What :func:`resnetlib.build` may pass to every block, as ``**args: Unpack[BlockArgs]``
    or spelled out (``build`` reads either signature)."""

    in_channels: Required[int]
    width: Required[int]
    stride: int
    downsample: nn.Module | None
    residual: bool
    norm_layer: NormLayer
    act_layer: ActLayer
    drop_path: float
    dilation: int


class ResidualBlock(nn.Module, ABC):
    """Base of every block: a residual branch joined to a shortcut by :meth:`add_shortcut`.

    Subclasses set ``expansion`` (output channels = ``width * expansion``) and
    ``weighted_layers`` (for the paper's depth), build their branch after
    ``super().__init__`` and implement :meth:`zero_init_last`. ``build`` passes
    ``act_layer``, ``dilation`` and ``drop_path`` only where the spec asks for them.
    """

    expansion: ClassVar[int] = 1
    weighted_layers: ClassVar[int] = 2
    layers: ClassVar[int] = 2
    """Deprecated: ``weighted_layers``' old name (kept equal to it)."""
    activates_after_add: ClassVar[bool] = True
    """Whether the activation follows the addition (false for pre-activation blocks): a
    zero branch computes ``act(forward_shortcut(x))`` if true, else ``forward_shortcut(x)``."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "layers" in cls.__dict__ and "weighted_layers" not in cls.__dict__:
            warnings.warn(
                f"{cls.__name__}.layers is deprecated: name the weighted layers on the "
                "branch weighted_layers (layers means blocks per stage, as in timm)",
                FutureWarning,
                stacklevel=2,
            )
            cls.weighted_layers = cls.layers
        cls.layers = cls.weighted_layers

    def __init__(self, **args: Unpack[BlockArgs]) -> None:
        """Store the shape arguments. Defaults: ``stride=1``, ``downsample=None``,
        ``residual=True``, ``drop_path=0.0``, ``dilation=1``."""
        super().__init__()
        self.in_channels = args["in_channels"]
        self.width = args["width"]
        self.out_channels = self.width * self.expansion
        self.stride = args.get("stride", 1)
        self.dilation = args.get("dilation", 1)
        self.residual = args.get("residual", True)
        self.downsample = args.get("downsample")
        drop_path = args.get("drop_path", 0.0)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else None

    @staticmethod
    def layer_makers(args: BlockArgs) -> tuple[NormLayer, ActLayer]:
        """``args``' ``norm_layer`` and ``act_layer``, defaulting to batch norm and ReLU."""
        return args.get("norm_layer", nn.BatchNorm2d), args.get("act_layer", relu)

    def add_shortcut(
        self, out: torch.Tensor, x: torch.Tensor, inplace: bool = False
    ) -> torch.Tensor:
        """Add ``downsample(x)`` (or ``x``) to the branch output ``out``, dropping the branch
        per sample under drop path. ``inplace=True`` adds into ``out``; it is safe unless
        the branch's last operation keeps its output for backward (a sigmoid does)."""
        if not self.residual:
            return out
        identity = x if self.downsample is None else self.downsample(x)
        if self.drop_path is not None:
            out = self.drop_path(out)
        return out.add_(identity) if inplace else out + identity

    def forward_shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """What the shortcut adds for block input ``x``: ``x``, or ``downsample(x)``; blocks
        that project something else (pre-activation blocks) override it."""
        return x if self.downsample is None else self.downsample(x)

    @abstractmethod
    def zero_init_last(self) -> None:
        """Make the branch start as zero, so that the block starts as its shortcut."""

    def init_weights(self) -> None:
        """Called after the model-wide init: override to give the block's own layers (a gate, a
        scale) another start. Does nothing by default."""

    @classmethod
    def final_layers(
        cls, channels: int, *, norm_layer: NormLayer, act_layer: ActLayer
    ) -> nn.Module | None:
        """Layers after the last block, before pooling (the model's ``norm``); ``None`` here."""
        return None


def grouped_widths(
    block: ResidualBlock, stride_in_1x1: bool, groups: int, width_per_group: int
) -> tuple[int, int, int]:
    """A bottleneck's inner width (torchvision's rule) and its 1x1 and 3x3 strides; a
    ``ValueError`` for an inner width of 0 or above ``MAX_CHANNELS``, or a non-bool
    ``stride_in_1x1`` (``"no"`` would place the stride as ``True`` does)."""
    owner, width = type(block).__name__, block.width
    if not isinstance(stride_in_1x1, bool):
        raise ValueError(f"{owner} stride_in_1x1 must be true or false; got {stride_in_1x1!r}")
    for option, value in (("groups", groups), ("width_per_group", width_per_group)):
        check_int(f"{owner} {option}", value, 1, MAX_CHANNELS, bound="resnetlib's size limit")
    inner = int(width * (width_per_group / 64.0)) * groups
    if not 1 <= inner <= MAX_CHANNELS:
        formula = f"{owner} inner width int({width} * {width_per_group} / 64) * {groups}"
        raise ValueError(
            f"{formula} is 0; raise width or width_per_group"
            if inner < 1
            else f"{formula} is {inner}; it must be <= {MAX_CHANNELS:,} (resnetlib's size limit)"
        )
    return (inner, block.stride, 1) if stride_in_1x1 else (inner, 1, block.stride)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (paper Fig. 2 left); the stride is on the first."""

    def __init__(self, **args: Unpack[BlockArgs]) -> None:
        super().__init__(**args)
        norm_layer, act_layer = self.layer_makers(args)
        width, dilation = self.width, self.dilation
        self.conv1 = conv3x3(self.in_channels, width, self.stride, dilation=dilation)
        self.bn1 = norm_layer(width)
        self.relu = act_layer()
        self.conv2 = conv3x3(width, width, dilation=dilation)
        self.bn2 = norm_layer(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(self.add_shortcut(out, x, inplace=True))
        return out

    def zero_init_last(self) -> None:
        zero_norm_weight(self.bn2)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand by 4 (paper Fig. 5 right).

    The stride sits on the 3x3 ("ResNet v1.5") unless ``stride_in_1x1=True`` (the paper).
    The inner width is ``int(width * width_per_group / 64) * groups``: ``groups=32,
    width_per_group=4`` is ResNeXt-50 32x4d, ``width_per_group=128`` Wide ResNet-50-2.
    """

    expansion: ClassVar[int] = 4
    weighted_layers: ClassVar[int] = 3

    def __init__(
        self,
        *,
        stride_in_1x1: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        **args: Unpack[BlockArgs],
    ) -> None:
        super().__init__(**args)
        norm_layer, act_layer = self.layer_makers(args)
        inner, stride_1x1, stride_3x3 = grouped_widths(self, stride_in_1x1, groups, width_per_group)
        self.stride_in_1x1, self.groups, self.inner_width = stride_in_1x1, groups, inner
        self.conv1 = conv1x1(self.in_channels, inner, stride_1x1)
        self.bn1 = norm_layer(inner)
        self.conv2 = conv3x3(inner, inner, stride_3x3, dilation=self.dilation, groups=groups)
        self.bn2 = norm_layer(inner)
        self.conv3 = conv1x1(inner, self.out_channels)
        self.bn3 = norm_layer(self.out_channels)
        self.relu = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(self.add_shortcut(out, x, inplace=True))
        return out

    def zero_init_last(self) -> None:
        zero_norm_weight(self.bn3)


def validate_block(name: str, item: type[ResidualBlock], *, run: bool = True) -> None:
    """The registration check of a block type: a concrete :class:`ResidualBlock` with an int
    ``expansion >= 1`` (else ``TypeError``) and, with ``run``, ``width * expansion`` output
    channels when built with its defaults and run on a 4x4 CPU input, once with as many input
    channels and once with twice as many and a projection shortcut (else ``ValueError``), so
    that ``build()`` runs no forward pass. The run keeps the random state;
    resnetlib's own blocks and blocks that need options skip it (``check_block`` runs both).
    """
    subclass_of(ResidualBlock, "block")(name, item)
    who = f"block {name!r} ({item.__name__})"
    if inspect.isabstract(item):
        missing = sorted(getattr(item, "__abstractmethods__", ()))
        raise TypeError(f"{who} leaves abstract methods {missing}")
    expansion = item.expansion
    if not is_int(expansion) or expansion < 1:
        raise TypeError(f"{who} must set expansion to an int >= 1; got {expansion!r}")
    if not run or item.__module__.startswith(__package__ + "."):
        return
    width, expected = 4, 4 * expansion
    rule = f"width {width} x expansion {expansion} = {expected}"
    # in == out, then in != out with a projection shortcut: an output whose channels follow
    # in_channels passes the first only
    for in_channels in (expected, 2 * expected):
        with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
            projection = conv1x1(in_channels, expected) if in_channels != expected else None
            try:
                block = item(in_channels=in_channels, width=width, downsample=projection)
            except TypeError:  # a required block option: nothing to build it with here
                return
            if block.out_channels != expected:
                raise ValueError(f"{who} reports out_channels={block.out_channels}, but {rule}")
            x = torch.zeros(1, in_channels, 4, 4)
            built = f"in_channels={in_channels}, width={width}"
            try:
                out = block.eval()(x)
            except Exception as error:
                raise ValueError(
                    f"{who} built with {built} failed on a {tuple(x.shape)} input while its "
                    f"registration checked its output ({rule} channels, whatever in_channels "
                    f"is): {first_line(error, 300)}"
                ) from error
        if out.ndim != 4 or out.shape[1] != expected:
            got = out.shape[1] if out.ndim > 1 else tuple(out.shape)
            raise ValueError(
                f"{who} outputs {got} channels; it must output out_channels = {rule} (built "
                f"with {built}: build the branch's last layer with self.out_channels channels)"
            )


BLOCKS: Registry[type[ResidualBlock]] = Registry("block", validate_block)
"""Residual block types by name (``ResNetSpec.block``): ``"basic"``, ``"bottleneck"``, ..."""
register_block = BLOCKS.register
"""Register a :class:`ResidualBlock` subclass: ``@register_block("se_basic")``."""

register_block("basic", BasicBlock)
register_block("bottleneck", Bottleneck)
