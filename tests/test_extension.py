"""User-registered blocks, shortcuts, stems and models work like the built-ins."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import resnetlib as rl

from .helpers import assert_every_parameter_has_a_gradient


class ScaledBlock(rl.ResidualBlock):
    """A basic block with a learnable branch scale that starts at 0.5 via init_weights."""

    expansion: ClassVar[int] = 2

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
        start: float = 0.5,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=residual,
        )
        self.start = start
        self.conv1 = rl.nn.conv3x3(in_channels, self.out_channels, stride)
        self.bn1 = norm_layer(self.out_channels)
        self.scale = nn.Parameter(torch.empty(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn1(self.conv1(x)) * self.scale
        return torch.relu(self.add_shortcut(out, x))

    def zero_init_last(self) -> None:
        rl.nn.zero_norm_weight(self.bn1)

    def init_weights(self) -> None:
        nn.init.constant_(self.scale, self.start)


class AvgPoolShortcut(rl.ShortcutStrategy):
    """ResNet-D style: average-pool then project, where the shape changes."""

    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: rl.nn.NormLayer
    ) -> nn.Module | None:
        if stride == 1 and in_channels == out_channels:
            return None
        return nn.Sequential(
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
            rl.nn.conv1x1(in_channels, out_channels),
            norm_layer(out_channels),
        )


class TinyStem(rl.Stem):
    """A 1x1 convolution and a norm."""

    default_image_size: ClassVar[int] = 16

    def __init__(
        self, *, in_channels: int, out_channels: int, norm_layer: rl.nn.NormLayer = nn.BatchNorm2d
    ) -> None:
        layers = OrderedDict(
            conv1=rl.nn.conv1x1(in_channels, out_channels), bn1=norm_layer(out_channels)
        )
        super().__init__(layers, in_channels=in_channels, out_channels=out_channels)


def tiny_scaled(**overrides: Any) -> rl.ResNet:
    spec = rl.ResNetSpec(
        stages=(rl.StageSpec(1, 4), rl.StageSpec(2, 8, 2)),
        block="test_scaled",
        shortcut="test_avgpool",
        stem=rl.StemSpec("test_tiny", 8),
        num_classes=3,
    )
    return rl.build(rl.core.apply_overrides(spec, overrides, "test_tiny_scaled"))


@pytest.fixture
def registered() -> Iterator[None]:
    rl.register_block("test_scaled", ScaledBlock)
    rl.register_shortcut("test_avgpool", AvgPoolShortcut)
    rl.register_stem("test_tiny", TinyStem)
    rl.register_model("test_tiny_scaled", tiny_scaled)
    try:
        yield
    finally:
        rl.nn.BLOCKS.unregister("test_scaled")
        rl.nn.SHORTCUTS.unregister("test_avgpool")
        rl.nn.STEMS.unregister("test_tiny")
        rl.models.MODELS.unregister("test_tiny_scaled")


@pytest.mark.usefixtures("registered")
def test_user_types_build_from_a_spec_and_by_name() -> None:
    model = rl.create_model("test_tiny_scaled", block_options={"start": 0.25})
    assert "test_tiny_scaled" in rl.list_models("test_*")
    assert model.default_input_size == (3, 16, 16)
    assert [name for name, _ in model.named_children()][:2] == ["conv1", "bn1"]
    assert all(block.scale.item() == 0.25 for block in model.blocks())  # type: ignore[operator]
    assert isinstance(model.layer2[0].downsample, nn.Sequential)
    assert model.layer1[0].downsample is None  # stem 8 channels = 4 x expansion 2: identity
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert_every_parameter_has_a_gradient(model)
    again = rl.build(rl.ResNetSpec.from_json(model.spec.to_json()))
    assert again.spec == model.spec


@pytest.mark.usefixtures("registered")
def test_zero_init_and_plain_work_for_user_blocks() -> None:
    model = rl.create_model("test_tiny_scaled", zero_init_residual=True).eval()
    for block in model.blocks():
        assert not block.bn1.weight.any()  # type: ignore[union-attr]
        x = torch.randn(1, block.in_channels, 6, 6)
        shortcut = x if block.downsample is None else block.downsample(x)
        with torch.no_grad():
            torch.testing.assert_close(block(x), torch.relu(shortcut))
    plain = rl.create_model("test_tiny_scaled", shortcut="none")
    assert not any(block.residual or block.downsample is not None for block in plain.blocks())


@pytest.mark.usefixtures("registered")
def test_unknown_block_option_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"ScaledBlock\) does not accept option 'gain'; it accepts: start"
    ):
        rl.create_model("test_tiny_scaled", block_options={"gain": 2.0})


def test_unregistered_names_are_gone_after_the_fixture() -> None:
    assert "test_scaled" not in rl.nn.BLOCKS
    spec = replace(rl.cifar_spec(20), block="test_scaled")
    with pytest.raises(KeyError, match="unknown block 'test_scaled'"):
        rl.build(spec)
