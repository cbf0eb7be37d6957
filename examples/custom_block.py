"""A custom residual block, used from a spec and from a registered model factory.

The block is a basic block (two 3x3 convolutions) with a squeeze-and-excitation gate
(Hu et al., 2018, "Squeeze-and-Excitation Networks") on the residual branch: the branch
output is rescaled channel by channel before the shortcut is added.

Run from the repository root::

    python examples/custom_block.py
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import Unpack

import resnetlib as rl


class SqueezeExcitation(nn.Module):
    """Global average pool, FC-ReLU-FC-sigmoid, then scale each channel of the input.

    The two fully connected layers are 1x1 convolutions on the pooled ``N x C x 1 x 1``
    tensor, which is the same computation and needs no reshaping.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"se_reduction must be an int >= 1; got {reduction!r}")
        hidden = max(1, channels // reduction)  # never a zero-width bottleneck
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale: torch.Tensor = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * scale


class SEBasicBlock(rl.ResidualBlock):
    """conv3x3-norm-ReLU, conv3x3-norm, SE gate, + shortcut, ReLU."""

    # Output channels = width * expansion; build() checks the block's out_channels.
    expansion: ClassVar[int] = 1
    # Weighted layers on the branch that count toward depth (the SE FCs are not counted,
    # as in the SE paper); cifar_spec's 6n+2 formula reads this.
    weighted_layers: ClassVar[int] = 2

    def __init__(
        self,
        *,
        # The six arguments build() passes to every block:
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
        # Block options, settable from ResNetSpec.block_options:
        se_reduction: int = 16,
    ) -> None:
        # The base class stores in_channels, width, out_channels, stride, residual and
        # downsample; it does not take norm_layer, which only this block uses.
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=residual,
        )
        self.conv1 = rl.nn.conv3x3(in_channels, width, stride)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = rl.nn.conv3x3(width, self.out_channels)
        self.bn2 = norm_layer(self.out_channels)
        self.se = SqueezeExcitation(self.out_channels, se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        # add_shortcut applies self.downsample (or the identity) and skips the addition
        # altogether when the shortcut strategy is plain ("none").
        out = self.relu(self.add_shortcut(out, x))
        return out

    def zero_init_last(self) -> None:
        # With zero_init_residual=True the branch must start at zero: zero the last
        # norm's scale. The SE gate then multiplies zeros, so the branch output is zero.
        rl.nn.zero_norm_weight(self.bn2)


rl.register_block("se_basic", SEBasicBlock)


def se_resnet20(*, se_reduction: int = 4, **overrides: Unpack[rl.ModelOverrides]) -> rl.ResNet:
    """SE-ResNet-20 for CIFAR: ResNet-20's layout with SE basic blocks.

    Takes the same keyword overrides as the built-in factories, plus ``se_reduction``
    (not a ModelOverrides key, so it is taken out before apply_overrides sees the rest).
    """
    spec = dataclasses.replace(
        rl.cifar_spec(20), block="se_basic", block_options={"se_reduction": se_reduction}
    )
    return rl.build(rl.core.apply_overrides(spec, overrides, "se_resnet20"))


rl.register_model("se_resnet20", se_resnet20)


def check_forward_backward(name: str, model: rl.ResNet, num_classes: int) -> None:
    """One training step's forward and backward pass; raise if anything looks wrong."""
    batch = 4
    model.train()
    x = torch.randn(batch, 3, 32, 32)
    out = model(x)
    expected = (batch, num_classes)
    if tuple(out.shape) != expected:
        raise SystemExit(f"{name}: output shape {tuple(out.shape)}, expected {expected}")
    out.sum().backward()
    for param_name, param in model.named_parameters():
        if param.grad is None:
            raise SystemExit(f"{name}: parameter {param_name} got no gradient")
        if not torch.isfinite(param.grad).all():
            raise SystemExit(f"{name}: parameter {param_name} has a non-finite gradient")
    blocks = model.blocks()
    if not blocks or not all(isinstance(block, SEBasicBlock) for block in blocks):
        raise SystemExit(f"{name}: expected every block to be an SEBasicBlock")
    print(
        f"{name}: {len(blocks)} SE blocks, {rl.count_parameters(model):,} parameters, "
        f"output shape {tuple(out.shape)}"
    )


def last_norm_is_zero(block: SEBasicBlock) -> bool:
    weight = block.bn2.weight  # typed Tensor | Module: norm_layer may build any module
    return isinstance(weight, torch.Tensor) and not bool(weight.any())


def main() -> None:
    torch.manual_seed(0)

    # 1. From a spec: CIFAR ResNet-20's layout with the custom block and a block option.
    #    block_options are checked against SEBasicBlock's signature when built.
    spec = dataclasses.replace(
        rl.cifar_spec(20), block="se_basic", block_options={"se_reduction": 4}
    )
    from_spec = rl.build(spec)
    check_forward_backward("spec se_basic", from_spec, num_classes=10)

    # 2. From the model registry, with an override the built-in factories accept too.
    from_registry = rl.create_model("se_resnet20", num_classes=100)
    check_forward_backward("create_model se_resnet20", from_registry, num_classes=100)

    # Both are ResNet-20 (269,722 parameters) plus the SE layers, with a 100-way head
    # on the second; the spec round-trips through JSON with the block name in it.
    if rl.ResNetSpec.from_json(spec.to_json()) != spec:
        raise SystemExit("spec did not round-trip through JSON")
    plain = rl.count_parameters(rl.create_model("resnet20"))
    print(f"resnet20 without SE: {plain:,} parameters")

    # 3. zero_init_residual=True calls every block's zero_init_last().
    zeroed = rl.create_model("se_resnet20", zero_init_residual=True, se_reduction=8)
    blocks = [block for block in zeroed.blocks() if isinstance(block, SEBasicBlock)]
    if not blocks or not all(last_norm_is_zero(block) for block in blocks):
        raise SystemExit("zero_init_residual did not zero every SE block's last norm")
    print(f"zero_init_residual: last norm zeroed in {len(blocks)} blocks")


if __name__ == "__main__":
    main()
