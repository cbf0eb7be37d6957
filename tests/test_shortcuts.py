"""Option A's zero-padding module, and which module each strategy puts on each block."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

import resnetlib as rl

from .devices import DEVICES


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("c_in", "c_out", "stride"), [(16, 32, 2), (3, 10, 3), (8, 8, 1), (5, 6, 2)]
)
def test_zero_pad_keeps_the_input_and_appends_zeros(
    device: str, c_in: int, c_out: int, stride: int
) -> None:
    x = torch.randn(2, c_in, 7, 9, device=device)
    out = rl.nn.ZeroPadShortcut(c_in, c_out, stride)(x)
    assert out.shape == (2, c_out, -(-7 // stride), -(-9 // stride))
    torch.testing.assert_close(out[:, :c_in], x[:, :, ::stride, ::stride], rtol=0, atol=0)
    assert not out[:, c_in:].any()


def test_zero_pad_both_sides_matches_pytorch_resnet_cifar10() -> None:
    # That code: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)).
    x = torch.randn(2, 16, 8, 8)
    out = rl.nn.ZeroPadShortcut(16, 32, 2, placement="both")(x)
    expected = nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_zero_pad_is_named_picklable_and_scriptable() -> None:
    module = rl.nn.ZeroPadShortcut(4, 8, 2)
    assert list(module.parameters()) == []
    assert repr(module) == "ZeroPadShortcut(4, 8, stride=2, placement='end')"
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(pickle.loads(pickle.dumps(module))(x), module(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated but still used by deployers
        scripted = torch.jit.script(module)
    torch.testing.assert_close(scripted(x), module(x))


def downsample_kinds(shortcut: str) -> list[str]:
    model = rl.resnet((2, 2), shortcut=shortcut, base_channels=4)
    return [type(block.downsample).__name__ for block in model.blocks()]


def test_each_strategy_places_the_papers_shortcuts() -> None:
    assert downsample_kinds("A") == ["NoneType", "NoneType", "ZeroPadShortcut", "NoneType"]
    assert downsample_kinds("B") == ["NoneType", "NoneType", "Sequential", "NoneType"]
    assert downsample_kinds("C") == ["Sequential"] * 4
    assert downsample_kinds("none") == ["NoneType"] * 4
    plain = rl.resnet((2, 2), shortcut="none", base_channels=4)
    assert not any(block.residual for block in plain.blocks())


def test_plain_blocks_add_nothing() -> None:
    block = rl.BasicBlock(in_channels=4, width=4, residual=False).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        torch.testing.assert_close(block(x), torch.relu(branch))


def test_option_a_both_pads_before_and_after() -> None:
    """'A_both' puts the input's channels in the middle, as pytorch_resnet_cifar10 does."""
    model = rl.resnet20(shortcut="A_both")
    assert rl.count_parameters(model) == rl.count_parameters(rl.resnet20())
    shortcut = model.layer2[0].downsample
    assert isinstance(shortcut, rl.nn.ZeroPadShortcut)
    assert shortcut.placement == "both"
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any()
    assert not out[:, 24:].any()
    assert model.layer2[1].downsample is None
