"""What a new user trips over: options that cannot apply, wrong block widths, rough errors."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import nn

import resnetlib as rl


def test_overriding_the_block_keeps_the_specs_options_and_refuses_what_it_cannot_take() -> None:
    with pytest.raises(
        ValueError,
        match=r"resnext50_32x4d\(block='basic'\): block 'basic' "
        r"\(BasicBlock\) does not accept option 'groups', which "
        r"resnext50_32x4d's spec sets",
    ):
        rl.create_model("resnext50_32x4d", block="basic")
    with torch.device("meta"):
        model = rl.create_model("resnext50_32x4d", block="preact_bottleneck")
    assert model.spec.block_options == {"groups": 32, "width_per_group": 4}
    assert model.layer1[0].conv2.groups == 32


def test_an_option_the_user_passed_is_named_as_theirs() -> None:
    with pytest.raises(
        ValueError,
        match=r"resnet18\(block_options=...\): block 'basic' "
        r"\(BasicBlock\) does not accept option 'groups'; it accepts: ",
    ):
        rl.resnet18(block_options={"groups": 2})
    with pytest.raises(
        ValueError,
        match=r"resnet50\(stride_in_1x1=True\): you passed "
        r"stride_in_1x1, but block 'basic' \(BasicBlock\) does not accept",
    ):
        rl.resnet50(stride_in_1x1=True, block="basic")


class NarrowBlock(rl.ResidualBlock):
    """Reports width * expansion channels but outputs half of them."""

    expansion: ClassVar[int] = 1
    layers: ClassVar[int] = 2

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm_layer: rl.NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=False,
        )
        self.conv = rl.conv3x3(in_channels, max(1, width // 2), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv.weight)


def test_build_checks_the_channels_a_block_really_outputs() -> None:
    rl.register_block("test_narrow", NarrowBlock)
    try:
        stages = (rl.StageSpec(1, 8), rl.StageSpec(1, 16, stride=2))
        spec = rl.ResNetSpec(stages=stages, block="test_narrow", shortcut="none")
        with pytest.raises(
            ValueError,
            match=r"layer1\.0: block 'test_narrow' \(NarrowBlock\) "
            r"outputs 4 channels; it must output out_channels = width 8 x "
            r"expansion 1 = 8",
        ):
            rl.build(spec)
    finally:
        rl.BLOCKS.unregister("test_narrow")


def test_the_output_check_leaves_the_model_as_built() -> None:
    model = rl.cifar_resnet(8, widths=(4, 8, 16))
    assert model.training
    assert all(m.training for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 0 for m in norms)
    assert all(not m.running_mean.any() for m in norms)
