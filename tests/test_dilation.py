"""Dilation and ``output_stride``: strides traded for dilation (DeepLab), as torchvision does.

torchvision's ``replace_stride_with_dilation`` rule, written out in :func:`torchvision_rule`:
a replaced stage gets stride 1 and multiplies the running dilation by the stride it gave
up; its first block still uses the previous dilation, the others the new one.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import resnetlib as rl

from .helpers import assert_every_parameter_has_a_gradient

IMAGENET_STRIDES = (1, 2, 2, 2)  # paper Table 1: layer2..layer4 halve the resolution
REPLACED = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


def torchvision_rule(
    layers: tuple[int, ...], replace: tuple[bool, ...]
) -> list[list[tuple[int, int]]]:
    """(stride, dilation) of every block, as torchvision's ``ResNet._make_layer`` sets them."""
    dilation, result = 1, []
    for index, (num_blocks, stride) in enumerate(zip(layers, IMAGENET_STRIDES, strict=True)):
        previous = dilation
        if index > 0 and replace[index - 1]:
            dilation *= stride
            stride = 1
        result.append([(stride, previous)] + [(1, dilation)] * (num_blocks - 1))
    return result


def on_meta(name: str, **overrides: object) -> rl.ResNet:
    with torch.device("meta"):
        return rl.create_model(name, **overrides)


def block_convs(block: rl.ResidualBlock) -> list[nn.Conv2d]:
    """The block's 3x3 convolutions, which carry its dilation."""
    return [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize(
    ("name", "layers"),
    [("resnet18", (2, 2, 2, 2)), ("resnet50", (3, 4, 6, 3)), ("resnet50d", (3, 4, 6, 3))],
)
def test_strides_and_dilations_follow_torchvisions_rule(
    name: str, layers: tuple[int, ...], output_stride: int
) -> None:
    model = on_meta(name, output_stride=output_stride)
    expected = torchvision_rule(layers, REPLACED[output_stride])
    for stage_name, stage_expected in zip(model.stage_names, expected, strict=True):
        blocks = list(getattr(model, stage_name))
        for index, (block, (stride, dilation)) in enumerate(
            zip(blocks, stage_expected, strict=True)
        ):
            where = f"{stage_name}.{index}"
            assert (block.stride, block.dilation) == (stride, dilation), where
            convs = block_convs(block)
            # the stride sits on the first 3x3 (basic) or the only one (bottleneck)
            assert convs[0].stride == (stride, stride), where
            for conv in convs:
                assert conv.dilation == (dilation, dilation), where
                assert conv.padding == (dilation, dilation), where  # size-preserving


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50d"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_feature_maps_are_input_over_output_stride(
    device: torch.device, name: str, output_stride: int
) -> None:
    # base_channels 8 keeps the layout (and so the strides) at a fraction of the cost.
    model = rl.create_model(name, output_stride=output_stride, base_channels=8).to(device).eval()
    for height, width in ((64, 96), (128, 64)):
        x = torch.randn(1, 3, height, width, device=device)
        with torch.no_grad():
            features = model.forward_features(x)
        size = (height // output_stride, width // output_stride)
        assert features.shape == (1, model.num_features, *size)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50d"])
def test_dilation_keeps_the_parameters(name: str) -> None:
    base = on_meta(name)
    shapes = {key: value.shape for key, value in base.state_dict().items()}
    for output_stride in (4, 8, 16):
        dilated = on_meta(name, output_stride=output_stride)
        assert rl.count_parameters(dilated) == rl.count_parameters(base)
        assert {k: v.shape for k, v in dilated.state_dict().items()} == shapes


def test_output_stride_32_is_the_undilated_network() -> None:
    for name in ("resnet18", "resnet50d"):
        assert on_meta(name, output_stride=32).spec == on_meta(name).spec


def test_option_d_pool_becomes_identity_where_the_stride_became_1() -> None:
    def pools(output_stride: int) -> list[type[nn.Module]]:
        model = on_meta("resnet50d", output_stride=output_stride)
        return [type(getattr(model, s)[0].downsample[0]) for s in model.stage_names]

    identity, avg = nn.Identity, nn.AvgPool2d
    assert pools(32) == [identity, avg, avg, avg]
    assert pools(16) == [identity, avg, avg, identity]
    assert pools(8) == [identity, avg, identity, identity]
    # the projection itself never strides
    model = on_meta("resnet50d", output_stride=8)
    assert all(block.downsample[1].stride == (1, 1) for block in model.blocks() if block.downsample)


def test_spec_records_each_stages_dilation() -> None:
    stages = on_meta("resnet50", output_stride=8).spec.stages
    assert [(s.stride, s.dilation) for s in stages] == [(1, 1), (2, 1), (1, 2), (1, 4)]
    stages = on_meta("resnet50", output_stride=16).spec.stages
    assert [(s.stride, s.dilation) for s in stages] == [(1, 1), (2, 1), (2, 1), (1, 2)]
    spec = on_meta("resnet18", output_stride=8).spec
    assert rl.ResNetSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("output_stride", [2, 12, 64, 3])
def test_unreachable_output_stride_names_the_reachable_ones(output_stride: int) -> None:
    with pytest.raises(ValueError, match=r"output_stride must be one of \[4, 8, 16, 32\]") as info:
        rl.resnet18(output_stride=output_stride)
    assert f"got {output_stride}" in str(info.value)


@pytest.mark.parametrize("bad", [0, -8, True, 8.0, "8"])
def test_output_stride_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="output_stride must be an int >= 1"):
        rl.resnet18(output_stride=bad)  # type: ignore[arg-type]


def test_cifar_layout_output_stride() -> None:
    # The CIFAR stem does not reduce; its stages reduce by 1, 2, 2: reachable 1, 2, 4.
    with pytest.raises(ValueError, match=r"output_stride must be one of \[1, 2, 4\]"):
        rl.resnet20(output_stride=8)
    x = torch.randn(2, 3, 32, 32)
    for output_stride, dilations in ((4, [1, 1, 1]), (2, [1, 1, 2]), (1, [1, 2, 4])):
        model = rl.resnet20(output_stride=output_stride).eval()
        assert [s.dilation for s in model.spec.stages] == dilations
        with torch.no_grad():
            features = model.forward_features(x)
        assert features.shape == (2, 64, 32 // output_stride, 32 // output_stride)
        assert rl.count_parameters(model) == 269_722  # paper Table 6 ResNet-20
    # first block of a dilated stage keeps the previous dilation (option A still subsamples
    # nothing there: its stride is 1 now)
    model = rl.resnet20(output_stride=1)
    assert [(b.stride, b.dilation) for b in model.layer3] == [(1, 2), (1, 4), (1, 4)]


def test_dilated_network_trains(device: torch.device) -> None:
    model = rl.resnet((1, 1, 1, 1), block="bottleneck", base_channels=8, output_stride=8)
    model = model.to(device)
    out = model(torch.randn(2, 3, 40, 40, device=device))
    out.sum().backward()
    assert_every_parameter_has_a_gradient(model)


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="needs torchvision installed"
)
@pytest.mark.parametrize("output_stride", [8, 16])
def test_every_convolution_equals_torchvisions(output_stride: int) -> None:
    from torchvision.models import resnet50

    replace = list(REPLACED[output_stride])
    with torch.device("meta"):
        theirs = resnet50(replace_stride_with_dilation=replace)
    ours = on_meta("resnet50", output_stride=output_stride)

    def layout(model: nn.Module) -> dict[str, tuple[object, ...]]:
        return {
            name: (m.stride, m.dilation, m.padding)
            for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d)
        }

    assert layout(ours) == layout(theirs)
