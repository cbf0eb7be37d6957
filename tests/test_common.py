"""The bottom layer's shared helpers: optional imports, the inference context, block keywords."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from typing_extensions import Unpack

import resnetlib as rl
from resnetlib.common import evaluating, optional_import, resolve_device
from resnetlib.core.build import block_options_of, keywords_of
from resnetlib.nn.blocks import BlockArgs


def test_a_missing_optional_module_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert optional_import("json", "never", "none").dumps(1) == "1"
    for name in ("matplotlib", "matplotlib.pyplot"):  # also when another test imported it
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(ModuleNotFoundError) as error:
        optional_import("matplotlib.pyplot", "plotting needs matplotlib", "train")
    assert str(error.value) == 'plotting needs matplotlib: pip install "resnetlib[train]"'
    assert error.value.name == "matplotlib"


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_restores_the_mode_also_after_an_error(training: bool) -> None:
    model = rl.cifar_resnet(8, widths=(4, 8, 16)).train(training)
    with evaluating(model) as inside:
        assert inside is model
        assert not any(m.training for m in model.modules())
        assert not torch.is_grad_enabled()
    assert all(m.training is training for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        raise RuntimeError("boom")
    assert model.training is training
    assert torch.is_grad_enabled()


class _Spelled(rl.ResidualBlock):
    def __init__(self, *, in_channels: int, width: int, gain: float = 1.0) -> None:
        super().__init__(in_channels=in_channels, width=width)

    def zero_init_last(self) -> None: ...


class _Unpacked(rl.ResidualBlock):
    def __init__(self, *, gain: float = 1.0, **args: Unpack[BlockArgs]) -> None:
        super().__init__(**args)

    def zero_init_last(self) -> None: ...


class _Open(rl.ResidualBlock):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(in_channels=kwargs["in_channels"], width=kwargs["width"])

    def zero_init_last(self) -> None: ...


def test_build_reads_spelled_out_and_unpacked_block_keywords() -> None:
    assert keywords_of(_Spelled) == {"in_channels", "width", "gain"}
    assert keywords_of(_Unpacked) == {"gain", *BlockArgs.__annotations__}
    assert keywords_of(_Open) is None  # **kwargs without a TypedDict: any keyword
    assert block_options_of(_Unpacked) == ["gain"]
    assert block_options_of(rl.Bottleneck) == ["groups", "stride_in_1x1", "width_per_group"]
    assert block_options_of(rl.BasicBlock) == []


def test_block_defaults_are_the_documented_ones() -> None:
    block = rl.BasicBlock(in_channels=4, width=4)
    assert (block.stride, block.dilation, block.residual) == (1, 1, True)
    assert block.downsample is None
    assert block.drop_path is None
    assert isinstance(block.bn1, nn.BatchNorm2d)
    assert isinstance(block.relu, nn.ReLU)
    wide = rl.Bottleneck(in_channels=8, width=4, stride=2, groups=2, width_per_group=64)
    assert (wide.inner_width, wide.conv2.stride, wide.out_channels) == (8, (2, 2), 16)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an mps device")
def test_a_device_this_torch_cannot_use_is_refused_when_resolved(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--device mps on a torch built without it passed resolve_device and failed later with
    torch's raw "PyTorch is not linked with support for mps devices", after train had made
    its run directory (a .lock left behind)."""
    from resnetlib.cli import main

    with pytest.raises(ValueError, match=r"^mps: not available here \("):
        resolve_device("mps")
    with pytest.raises(ValueError, match=r"^hpu: not available here \("):  # not an ImportError
        resolve_device("hpu")
    assert resolve_device("cpu") == torch.device("cpu")
    out = tmp_path / "run"
    assert (
        main(["train", "resnet20", "--device", "mps", "--iterations", "1", "--out", str(out)]) == 2
    )
    assert "--device mps: not available here" in capsys.readouterr().err
    assert not out.exists()
