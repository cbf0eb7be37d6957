"""What a new user trips over: options that cannot apply, wrong block widths, rough errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import resnetlib as rl

from .helpers import tiny_cifar

ROOT = Path(__file__).resolve().parent.parent


def test_overriding_the_block_keeps_the_specs_options_and_refuses_what_it_cannot_take() -> None:
    with pytest.raises(
        ValueError,
        match=r"block 'basic' \(BasicBlock\) does not accept option 'groups'; it accepts: "
        r"\(no options\)\. resnext50_32x4d's spec sets it \(block_options=",
    ):
        rl.create_model("resnext50_32x4d", block="basic")
    with torch.device("meta"):
        model = rl.create_model("resnext50_32x4d", block="preact_bottleneck")
    assert model.spec.block_options == {"groups": 32, "width_per_group": 4}
    assert model.layer1[0].conv2.groups == 32


def test_an_option_the_user_passed_is_named_as_theirs() -> None:
    with pytest.raises(
        ValueError,
        match=r"block 'basic' \(BasicBlock\) does not accept option 'groups'; it accepts: "
        r"\(no options\)\. resnet18\(block_options=\{'groups': 2\}\) passed it",
    ):
        rl.resnet18(block_options={"groups": 2})
    with pytest.raises(
        ValueError,
        match=r"block 'basic' \(BasicBlock\) does not accept option 'stride_in_1x1'; .*\. "
        r"resnet50\(stride_in_1x1=True\) passed it; it moves a bottleneck's stride",
    ):
        rl.resnet50(stride_in_1x1=True, block="basic")


class NarrowBlock(rl.ResidualBlock):
    """Reports width * expansion channels but outputs half of them."""

    expansion: ClassVar[int] = 1
    weighted_layers: ClassVar[int] = 2

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=False,
        )
        self.conv = rl.nn.conv3x3(in_channels, max(1, width // 2), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv.weight)


def test_registration_checks_the_channels_a_block_really_outputs() -> None:
    for _ in range(2):  # a failure is never remembered as a pass
        with pytest.raises(
            ValueError,
            match=r"block 'test_narrow' \(NarrowBlock\) outputs 2 channels; it must output "
            r"out_channels = width 4 x expansion 1 = 4",
        ):
            rl.register_block("test_narrow", NarrowBlock)
        assert "test_narrow" not in rl.nn.BLOCKS
    report = rl.testing.check_block(NarrowBlock, only=["shapes"])
    assert not report.ok


class InputWidthBlock(rl.BasicBlock):
    """Broken: its last layers follow in_channels (a typo for the block's out_channels)."""

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.conv2 = rl.nn.conv3x3(self.width, self.in_channels)
        self.bn2 = nn.BatchNorm2d(self.in_channels)


def test_registration_checks_a_block_whose_input_and_output_widths_differ() -> None:
    with pytest.raises(
        ValueError,
        match=r"^block 'test_input_width' \(InputWidthBlock\) built with in_channels=8, "
        r"width=4 failed .*\(width 4 x expansion 1 = 4 channels, whatever in_channels is\)",
    ):
        rl.register_block("test_input_width", InputWidthBlock)
    assert "test_input_width" not in rl.nn.BLOCKS


class NarrowWithOption(NarrowBlock):
    """NarrowBlock with a required block option: registration cannot build it alone."""

    def __init__(self, *, scale: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = scale


def test_build_runs_no_forward_pass() -> None:
    calls: list[str] = []

    def count(module: nn.Module, args: object) -> None:
        calls.append(type(module).__name__)

    handle = nn.modules.module.register_module_forward_pre_hook(count)
    try:
        rl.resnet20()
        rl.resnet50(num_classes=3)
        rl.preact_resnet18()
        # A block that needs an option is not run at registration either; check_block is
        # where its output width is checked.
        rl.register_block("test_narrow_option", NarrowWithOption)
    finally:
        handle.remove()
    try:
        assert calls == []
        report = rl.testing.check_block(
            "test_narrow_option", block_options={"scale": 2}, only=["shapes"]
        )
        assert not report.ok
    finally:
        rl.nn.BLOCKS.unregister("test_narrow_option")


def test_the_output_check_leaves_the_model_as_built() -> None:
    model = tiny_cifar()
    assert model.training
    assert all(m.training for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 0 for m in norms)
    assert all(not m.running_mean.any() for m in norms)


def test_count_flops_takes_a_shape_with_or_without_batch_a_tensor_or_nothing() -> None:
    model = tiny_cifar()
    expected = rl.count_flops(model, (3, 32, 32))
    assert model.default_input_size == (3, 32, 32)
    assert rl.count_flops(model) == expected
    assert rl.count_flops(model, (5, 3, 32, 32)) == expected  # per sample
    assert rl.count_flops(model, torch.randn(2, 3, 32, 32)) == expected
    assert rl.count_flops(model, torch.randn(3, 32, 32)) == expected
    with pytest.raises(ValueError, match=r"got a tensor of shape \(2, 3\)$") as error:
        rl.count_flops(model, torch.randn(2, 3))
    assert "tensor(" not in str(error.value)
    conv = nn.Conv2d(3, 4, 3)
    assert rl.count_flops(conv, (3, 8, 8)) == 4 * 3 * 9 * 6 * 6
    with pytest.raises(ValueError, match="Conv2d has no default_input_size"):
        rl.count_flops(conv)
    with pytest.raises(
        ValueError, match=r"the input \(1, 32, 32\) has 1 channels; the model takes 3"
    ):
        rl.count_flops(model, (1, 32, 32))  # not a conv's shape error from inside the forward
    with pytest.raises(ValueError, match=r"summary\(\): the input \(4, 32, 32\) has 4 channels"):
        rl.analysis.summary(model, (4, 32, 32))


def test_summary_takes_a_backbone_and_refuses_other_modules_with_a_way_out(
    tmp_path: Path,
) -> None:
    model = tiny_cifar()
    backbone = rl.core.features(model, out_indices=(1, 2))
    report = rl.analysis.summary(backbone)
    assert [row.name for row in report.rows] == ["stem", "layer1", "layer2"]
    assert report.total_parameters == rl.count_parameters(backbone)
    assert report.total_mult_adds == rl.count_flops(backbone)
    assert report.input_size == (3, 32, 32)
    with pytest.raises(TypeError, match=r"got Conv2d\. For any float module, count_parameters"):
        rl.analysis.summary(nn.Conv2d(3, 4, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a features-only backbone has no spec") as error:
        rl.save(backbone, tmp_path / "backbone.pt")  # type: ignore[arg-type]
    assert "model.module" not in str(error.value)


def test_a_misspelled_override_gets_a_suggestion() -> None:
    with pytest.raises(TypeError, match=r"\['num_class'\] \(did you mean 'num_classes' for "):
        rl.create_model("resnet56", num_class=100)
    assert "ModelOverrides" in (rl.create_model.__doc__ or "")


def test_models_list_in_numeric_order() -> None:
    names = rl.list_models("plain*")
    order = [names.index(name) for name in ("plain18", "plain20", "plain110", "plain1202")]
    assert order == sorted(order)


def test_loading_a_checkpoint_of_an_unregistered_block_says_what_to_do(tmp_path: Path) -> None:
    rl.register_block("test_basic_alias", rl.BasicBlock)
    try:
        rl.save(rl.cifar_resnet(8, block="test_basic_alias", widths=(2, 4, 8)), tmp_path / "m.pt")
    finally:
        rl.nn.BLOCKS.unregister("test_basic_alias")
    with pytest.raises(KeyError) as error:
        rl.load(tmp_path / "m.pt")
    message = str(error.value)
    assert "import the module that registers it before loading" in message
    assert "?." not in message
    assert message.endswith("?")  # the registry's suggestion ends the message


def test_train_ddp_refuses_sync_bn_without_cuda_before_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = ROOT / "examples" / "train_ddp.py"
    spec = importlib.util.spec_from_file_location("train_ddp_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--sync-bn"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.endswith(
        "error: --sync-bn needs CUDA (--device cuda on a machine with GPUs): "
        "SyncBatchNorm trains only on GPU tensors"
    )
