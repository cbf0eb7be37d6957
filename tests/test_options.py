"""Norm and activation choices, drop path, output stride, wide and grouped widths."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from torch import nn

import resnetlib as rl

from .helpers import assert_every_parameter_has_a_gradient

# torchvision's published parameter counts (its weight metadata).
TORCHVISION_COUNTS = {
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
}


# torchvision's published GFLOPS (= G multiply-adds at 224x224), to its two decimals.
TORCHVISION_GMACS = {
    "wide_resnet50_2": 11.40,
    "wide_resnet101_2": 22.75,
    "resnext50_32x4d": 4.23,
    "resnext101_32x8d": 16.41,
}


@pytest.mark.parametrize(("name", "expected"), sorted(TORCHVISION_COUNTS.items()))
def test_wide_and_grouped_counts_match_torchvision(name: str, expected: int) -> None:
    with torch.device("meta"):
        model = rl.create_model(name)
    assert rl.count_parameters(model) == expected
    assert round(rl.count_flops(model, (3, 224, 224)) / 1e9, 2) == TORCHVISION_GMACS[name]
    assert name in rl.list_models()


def test_grouped_bottleneck_uses_torchvision_widths_and_names() -> None:
    with torch.device("meta"):
        model = rl.resnext50_32x4d()
    block = model.layer1[0]
    # int(64 * 4 / 64) * 32 = 128 inner channels in 32 groups; output 64 * 4.
    assert block.conv2.groups == 32
    assert tuple(block.conv2.weight.shape) == (128, 4, 3, 3)
    assert tuple(block.conv3.weight.shape) == (256, 128, 1, 1)
    assert "layer1.0.downsample.0.weight" in model.state_dict()


def test_cifar_wide_resnet_multiplies_stage_widths_not_the_stem() -> None:
    model = rl.cifar_resnet(20, width_multiplier=4, shortcut="B")
    assert [stage.width for stage in model.spec.stages] == [64, 128, 256]
    assert model.spec.stem.out_channels == 16
    # Basic-block count by hand: stem 3*16*9 + 32; each 3x3 conv c_in*c_out*9 + BN 2*c_out.
    widths, n, params, channels = (64, 128, 256), 3, 3 * 16 * 9 + 2 * 16, 16
    for index, width in enumerate(widths):
        for block in range(n):
            params += channels * width * 9 + 2 * width + width * width * 9 + 2 * width
            if block == 0 and (index > 0 or channels != width):
                params += channels * width + 2 * width  # option B projection
            channels = width
    params += 256 * 10 + 10
    assert rl.count_parameters(model) == params
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm", "frozen_batchnorm"])
@pytest.mark.parametrize("act", ["relu", "silu", "gelu"])
def test_norm_and_act_by_name_reach_every_layer(norm: str, act: str) -> None:
    model = rl.resnet20(norm=norm, act=act)
    assert (model.spec.norm, model.spec.act) == (norm, act)
    norm_type = type(rl.nn.NORMS.get(norm)(16))
    act_type = type(rl.nn.ACTIVATIONS.get(act)())
    assert isinstance(model.bn1, norm_type)
    for block in model.blocks():
        assert isinstance(block.bn1, norm_type)
        assert isinstance(block.relu, act_type)
    assert isinstance(model.relu, act_type)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    again = rl.build(rl.ResNetSpec.from_json(model.spec.to_json()))
    again.load_state_dict(model.state_dict(), strict=True)


def test_registered_callables_are_stored_by_name() -> None:
    assert rl.resnet20(act=nn.SiLU).spec.act == "silu"
    assert rl.resnet20(norm=rl.nn.group_norm).spec.norm == "groupnorm"
    with pytest.raises(ValueError, match=r"register it first with resnetlib.nn.register_act"):
        rl.resnet20(act=nn.Softplus)


@pytest.fixture
def softplus() -> Iterator[None]:
    rl.nn.register_act("test_softplus", nn.Softplus)
    try:
        yield
    finally:
        rl.nn.ACTIVATIONS.unregister("test_softplus")


@pytest.mark.usefixtures("softplus")
def test_user_registered_activation_is_usable_by_name_and_callable() -> None:
    assert rl.resnet20(act=nn.Softplus).spec.act == "test_softplus"
    assert isinstance(rl.resnet20(act="test_softplus").layer1[0].relu, nn.Softplus)


class _Fixed(nn.BatchNorm2d):
    """A norm that ignores the channel count it is given."""

    def __init__(self, channels: int) -> None:
        super().__init__(32)


@pytest.mark.parametrize(
    ("norm", "error", "words"),
    [
        (nn.BatchNorm2d(16), TypeError, r"must be a callable from a channel count to a module"),
        (lambda c: None, ValueError, r"for 32 channels it made None"),
        (lambda c: nn.BatchNorm2d(c + 1), ValueError, r"failed for 32 channels.*33"),
        (_Fixed, ValueError, r"failed for 64 channels.*running_mean"),
        (lambda c: nn.Flatten(), ValueError, r"keeps the shape.*to \(2, 128\)"),
    ],
    ids=["instance", "none", "wrong_channels", "hard_coded", "reshapes"],
)
def test_registration_refuses_what_cannot_build_a_norm(
    norm: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=rf"^norm 'test_bad_norm' .*{words}"):
        rl.nn.register_norm("test_bad_norm", norm)  # type: ignore[arg-type]
    assert "test_bad_norm" not in rl.nn.NORMS


def test_a_norm_that_some_widths_cannot_build_registers_and_refusals_are_one_line() -> None:
    """GroupNorm(64, c) cannot be built for the probe's 32 channels yet fits every layer of a
    ResNet-50: registration refused it. A refusal showing a module or a tensor spanned lines."""
    rl.nn.register_norm("test_gn64", lambda c: nn.GroupNorm(64, c))
    try:
        model = rl.create_model("resnet50", norm="test_gn64", device="meta")
        assert isinstance(model.bn1, nn.GroupNorm)
    finally:
        rl.nn.NORMS.unregister("test_gn64")
    for norm in (nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()), lambda c: torch.zeros(9, 9)):
        with pytest.raises((TypeError, ValueError)) as info:
            rl.nn.register_norm("test_bad_norm", norm)  # type: ignore[arg-type]
        assert len(str(info.value).splitlines()) == 1, str(info.value)
    with pytest.raises(ValueError, match=r"must return an nn\.Module") as info:
        rl.nn.register_act("test_bad_act", lambda: torch.zeros(30, 30))
    assert len(str(info.value).splitlines()) == 1


def test_unknown_norm_lists_known_names() -> None:
    with pytest.raises(KeyError, match=r"unknown norm 'batchnrom'.*did you mean 'batchnorm'"):
        rl.resnet20(norm="batchnrom")


def test_group_norm_groups_divide_channels() -> None:
    assert rl.nn.group_norm(64).num_groups == 32
    assert rl.nn.group_norm(24).num_groups == 8
    assert rl.nn.group_norm(5).num_groups == 1


def test_frozen_batchnorm_loads_batchnorm_weights_and_matches_eval_mode() -> None:
    torch.manual_seed(0)
    trained = rl.resnet20()
    with torch.no_grad():
        for module in trained.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    frozen = rl.resnet20(norm="frozen_batchnorm")
    frozen.load_state_dict(trained.state_dict(), strict=True)
    assert rl.count_parameters(frozen, trainable_only=True) < rl.count_parameters(trained)
    x = torch.randn(3, 3, 16, 16)
    before = [b.clone() for b in frozen.buffers()]
    frozen.train()(x)  # training mode updates nothing
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.buffers(), strict=True))
    torch.testing.assert_close(frozen.eval()(x), trained.eval()(x))


def test_drop_path_rates_grow_linearly_to_the_spec_rate() -> None:
    model = rl.resnet20(drop_path_rate=0.3)
    rates = [block.drop_path.p for block in model.blocks() if block.drop_path is not None]
    assert len(rates) == 9
    torch.testing.assert_close(torch.tensor(rates), torch.arange(1, 10) * 0.3 / 9)


def test_drop_path_is_identity_in_eval_and_keeps_every_parameter_in_training() -> None:
    torch.manual_seed(0)
    dropped = rl.resnet20(drop_path_rate=0.5)
    plain = rl.resnet20()
    plain.load_state_dict(dropped.state_dict())
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(dropped.eval()(x), plain.eval()(x), rtol=0, atol=0)
    dropped.train()
    dropped(x).sum().backward()
    assert_every_parameter_has_a_gradient(dropped)


def test_drop_path_drops_whole_samples_and_rescales_the_rest() -> None:
    layer = rl.nn.DropPath(0.5).train()
    torch.manual_seed(0)
    out = layer(torch.ones(64, 3, 2, 2))
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] != 0
    assert 0 < int(kept.sum()) < 64
    assert torch.all(per_sample[kept] == 2.0)
    assert torch.all(per_sample[~kept] == 0.0)


def test_drop_path_needs_a_shortcut() -> None:
    with pytest.raises(ValueError, match=r"drop_path_rate=0.1 needs a shortcut"):
        rl.plain20(drop_path_rate=0.1)
    with pytest.raises(ValueError, match=r"drop_path_rate must be a number in \[0, 1\)"):
        rl.resnet20(drop_path_rate=1.5)


@pytest.mark.parametrize(("output_stride", "size"), [(8, 8), (16, 4), (32, 2)])
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_output_stride_keeps_resolution(name: str, output_stride: int, size: int) -> None:
    model = rl.create_model(name, output_stride=output_stride, num_classes=3)
    features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape[-2:] == (size, size)
    assert rl.count_parameters(model) == rl.count_parameters(rl.create_model(name, num_classes=3))


def test_unreachable_output_stride_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"output_stride must be one of \[4, 8, 16, 32\]"):
        rl.resnet18(output_stride=12)


class NoExtrasBlock(rl.ResidualBlock):
    """A block written for 0.1.0: no act_layer, drop_path or dilation keywords."""

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
            residual=residual,
        )
        self.conv1 = rl.nn.conv3x3(in_channels, width, stride)
        self.bn1 = norm_layer(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.add_shortcut(self.bn1(self.conv1(x)), x))

    def zero_init_last(self) -> None:
        rl.nn.zero_norm_weight(self.bn1)


@pytest.fixture
def no_extras() -> Iterator[None]:
    rl.register_block("test_no_extras", NoExtrasBlock)
    try:
        yield
    finally:
        rl.nn.BLOCKS.unregister("test_no_extras")


@pytest.mark.usefixtures("no_extras")
@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"act": "silu"}, "act_layer"),
        ({"drop_path_rate": 0.1}, "drop_path"),
        ({"output_stride": 2}, "dilation"),
    ],
)
def test_a_block_without_an_option_builds_defaults_and_names_what_it_lacks(
    overrides: dict[str, object], option: str
) -> None:
    spec = replace(rl.cifar_spec(8), block="test_no_extras")
    assert rl.build(spec)(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match=rf"does not take '{option}', which the spec needs"):
        rl.build(rl.core.apply_overrides(spec, overrides, "test"))


def test_old_spec_json_without_the_new_fields_still_loads() -> None:
    data = rl.cifar_spec(20).to_dict()
    for key in ("norm", "act", "drop_path_rate"):
        del data[key]
    for stage in data["stages"]:
        del stage["dilation"]
    assert rl.ResNetSpec.from_dict(data) == rl.cifar_spec(20)
