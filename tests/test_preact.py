"""Pre-activation ResNets (He et al. 2016): exact counts, unit ordering, zero-init, final norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resnetlib as rl
from resnetlib.registry import natural_key

from .helpers import assert_every_parameter_has_a_gradient

# He et al. 2016 (and the authors' resnet-1k-layers code), 10 classes, BN affine counted.
PUBLISHED = {"preact_resnet164": 1_703_258, "preact_resnet1001": 10_327_706}
# He et al. 2016 publish 1.7M and 10.2M: the counts without batch norms (the README says so).
WITHOUT_NORMS = {"preact_resnet164": 1_679_034, "preact_resnet1001": 10_178_490}
# torchvision's published counts of the post-activation twins (see test_exact_counts.py).
TORCHVISION = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
RESNET110 = 1_727_962  # He et al. 2015, option A (test_exact_counts.py)


def on_meta(name: str, **overrides: object) -> rl.ResNet:
    with torch.device("meta"):
        return rl.create_model(name, **overrides)


def bn(channels: int) -> int:
    """An affine norm's parameters."""
    return 2 * channels


@pytest.mark.parametrize(("name", "expected"), sorted(PUBLISHED.items()))
def test_bottleneck_cifar_counts_equal_the_published_ones(name: str, expected: int) -> None:
    model = on_meta(name)
    assert rl.count_parameters(model) == expected
    norms = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )
    assert expected - norms == WITHOUT_NORMS[name]
    assert round((expected - norms) / 1e6, 1) == {"preact_resnet164": 1.7}.get(name, 10.2)


def test_preact_resnet164_count_written_out() -> None:
    # Stem 3x3 conv 3->16; per unit: BN(in), 1x1 in->w, BN(w), 3x3 w->w, BN(w), 1x1 w->4w;
    # a bias-free 1x1 projection (no norm) where the shape changes; final BN(256); fc.
    n, total, channels = 18, 3 * 9 * 16, 16
    for width in (16, 32, 64):
        for index in range(n):
            total += bn(channels) + channels * width + bn(width) + 9 * width * width
            total += bn(width) + width * 4 * width
            if index == 0:
                total += channels * 4 * width  # 16->64, 64->128/2, 128->256/2
            channels = 4 * width
    total += bn(256) + 256 * 10 + 10
    assert total == PUBLISHED["preact_resnet164"]


def test_preact_resnet110_has_resnet110s_count() -> None:
    # Same convolutions and fc as ResNet-110 (option A, no projection parameters). The
    # norms move: the stem loses its BN(16); the first units of stages 2 and 3 normalize
    # their input (16, 32 channels) instead of their first conv's output (32, 64); a final
    # BN(64) is added. -32 - (64 - 32) - (128 - 64) + 128 = 0.
    moved = -bn(16) - (bn(32) - bn(16)) - (bn(64) - bn(32)) + bn(64)
    assert moved == 0
    assert rl.count_parameters(on_meta("preact_resnet110")) == RESNET110 + moved
    # Written out: stem 432; 54 units of BN(in) + 3x3 in->w + BN(w) + 3x3 w->w; BN(64); fc.
    total, channels = 3 * 9 * 16, 16
    for width in (16, 32, 64):
        for _ in range(18):
            total += bn(channels) + 9 * channels * width + bn(width) + 9 * width * width
            channels = width
    assert total + bn(64) + 64 * 10 + 10 == RESNET110


@pytest.mark.parametrize("depth", [18, 34])
def test_basic_imagenet_preact_counts_relate_to_torchvision(depth: int) -> None:
    # Same convolutions and fc as torchvision's ResNet. The stem loses BN(64); the first
    # units of stages 2-4 normalize their input (w/2 channels) rather than their first
    # conv's output (w), -w each; the three projections lose their BN(w); a final BN(512).
    first_units = sum(bn(w // 2) - bn(w) for w in (128, 256, 512))
    projections = -sum(bn(w) for w in (128, 256, 512))
    expected = TORCHVISION[f"resnet{depth}"] - bn(64) + first_units + projections + bn(512)
    assert expected == TORCHVISION[f"resnet{depth}"] - 1_792
    assert rl.count_parameters(on_meta(f"preact_resnet{depth}")) == expected


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_bottleneck_imagenet_preact_counts_relate_to_torchvision(depth: int) -> None:
    # Post-activation bottleneck norms: BN(w) + BN(w) + BN(4w); pre-activation: BN(in) +
    # BN(w) + BN(w). They agree wherever in = 4w, i.e. everywhere but each stage's first
    # unit (in = 64 for stage 1, 2w after). The four projections lose BN(4w), the stem
    # its BN(64); a final BN(2048) is added.
    first_units = bn(64) - bn(4 * 64) + sum(bn(2 * w) - bn(4 * w) for w in (128, 256, 512))
    projections = -sum(bn(4 * w) for w in (64, 128, 256, 512))
    expected = TORCHVISION[f"resnet{depth}"] - bn(64) + first_units + projections + bn(2048)
    assert expected == TORCHVISION[f"resnet{depth}"] - 7_680
    assert rl.count_parameters(on_meta(f"preact_resnet{depth}")) == expected


def test_preact_resnet18_has_resnet18s_mult_adds() -> None:
    # Norms and activations are not multiply-adds: the convolutions and fc are ResNet-18's
    # (torchvision: 1.814 G).
    gmacs = rl.count_flops(on_meta("preact_resnet18"), (3, 224, 224)) / 1e9
    assert round(gmacs, 3) == pytest.approx(1.814, abs=1e-9)


def test_family_is_registered_and_exported() -> None:
    names = [
        "preact_resnet18",
        "preact_resnet34",
        "preact_resnet50",
        "preact_resnet101",
        "preact_resnet152",
        "preact_resnet110",
        "preact_resnet164",
        "preact_resnet1001",
    ]
    assert rl.list_models("preact_*") == sorted(names, key=natural_key)
    for name in names:
        assert name in rl.__all__
        assert getattr(rl, name).__name__ == name
    assert rl.nn.BLOCKS.get("preact_basic") is rl.nn.PreActBasicBlock
    assert rl.nn.BLOCKS.get("preact_bottleneck") is rl.nn.PreActBottleneck
    assert rl.nn.SHORTCUTS.get("preact_B") is rl.nn.PreActOptionB
    assert rl.nn.STEMS.get("cifar_preact") is rl.nn.CifarPreActStem
    assert rl.nn.STEMS.get("imagenet_preact") is rl.nn.ImageNetPreActStem


def test_module_layout_and_state_dict_names() -> None:
    cifar = rl.preact_resnet110()
    children = [name for name, _ in cifar.named_children()]
    assert children == ["conv1", "layer1", "layer2", "layer3", "norm", "avgpool", "fc"]
    imagenet = on_meta("preact_resnet50")
    children = [name for name, _ in imagenet.named_children()]
    assert children[:2] == ["conv1", "maxpool"]
    assert children[-3:] == ["norm", "avgpool", "fc"]
    keys = list(imagenet.state_dict())
    assert keys[:2] == ["conv1.weight", "layer1.0.bn1.weight"]
    assert "layer1.0.downsample.0.weight" in keys
    assert not any(key.startswith("layer1.0.downsample.1") for key in keys)
    assert keys[-7:] == [
        "norm.bn.weight",
        "norm.bn.bias",
        "norm.bn.running_mean",
        "norm.bn.running_var",
        "norm.bn.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ]


def test_cifar_resnet_takes_preact_bottleneck_with_the_9n_plus_2_rule() -> None:
    with torch.device("meta"):
        model = rl.cifar_resnet(29, block="preact_bottleneck")
    assert [stage.num_blocks for stage in model.spec.stages] == [3, 3, 3]
    with pytest.raises(ValueError, match=r"9n\+2"):
        rl.cifar_resnet(32, block="preact_bottleneck")  # 6n+2, not 9n+2
    # preact_cifar_resnet adds the family's stem and shortcut: depth 164 is the factory's.
    assert rl.preact_cifar_resnet(164).spec == rl.preact_resnet164().spec
    basic = rl.preact_cifar_resnet(110, block="preact_basic")
    assert basic.spec == rl.preact_resnet110().spec
    assert basic.spec.shortcut == "A"
    with pytest.raises(ValueError, match=r"9n\+2"):
        rl.preact_cifar_resnet(110 + 1)


def eval_block(block: rl.ResidualBlock) -> rl.ResidualBlock:
    """Random norm statistics and affine parameters, eval mode."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator))
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(size, generator=generator))
                module.bias.copy_(torch.randn(size, generator=generator))
    return block.eval()


def norm_act(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    assert isinstance(norm, nn.BatchNorm2d)
    assert norm.running_mean is not None
    assert norm.running_var is not None
    out = F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias)
    return torch.relu(out)


def test_basic_unit_computes_x_plus_preactivated_convs() -> None:
    torch.manual_seed(0)
    block = eval_block(rl.nn.PreActBasicBlock(in_channels=4, width=4))
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        branch = block.conv2(norm_act(block.bn2, block.conv1(norm_act(block.bn1, x))))
        torch.testing.assert_close(block(x), x + branch)


def test_bottleneck_unit_computes_x_plus_preactivated_convs() -> None:
    torch.manual_seed(0)
    block = eval_block(rl.nn.PreActBottleneck(in_channels=8, width=2))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        out = block.conv1(norm_act(block.bn1, x))
        out = block.conv2(norm_act(block.bn2, out))
        branch = block.conv3(norm_act(block.bn3, out))
        torch.testing.assert_close(block(x), x + branch)


@pytest.mark.parametrize("block_cls", [rl.nn.PreActBasicBlock, rl.nn.PreActBottleneck])
def test_projection_takes_the_preactivated_input(block_cls: type[rl.ResidualBlock]) -> None:
    torch.manual_seed(0)
    out_channels = 8 * block_cls.expansion
    downsample = rl.nn.PreActOptionB().make(
        in_channels=4, out_channels=out_channels, stride=2, norm_layer=nn.BatchNorm2d
    )
    assert isinstance(downsample, nn.Sequential)
    assert [type(m) for m in downsample] == [nn.Conv2d]  # no norm of its own
    make: type = block_cls
    block = eval_block(make(in_channels=4, width=8, stride=2, downsample=downsample))
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        pre = norm_act(block.bn1, x)
        torch.testing.assert_close(block.forward_shortcut(x), downsample(pre))
        zero_branch = block(x) - downsample(pre)
        block.zero_init_last()
        torch.testing.assert_close(block(x), downsample(pre), rtol=0, atol=0)
    assert zero_branch.abs().max() > 0  # before zero-init, the branch contributed


@pytest.mark.parametrize("block_cls", [rl.nn.PreActBasicBlock, rl.nn.PreActBottleneck])
def test_no_activation_after_the_addition(block_cls: type[rl.ResidualBlock]) -> None:
    assert block_cls.activates_after_add is False
    assert rl.BasicBlock.activates_after_add is True
    make: type = block_cls
    block = eval_block(make(in_channels=4 * block_cls.expansion, width=4))
    with torch.no_grad():
        out = block(torch.randn(2, 4 * block_cls.expansion, 5, 5))
    assert (out < 0).any()


@pytest.mark.parametrize(
    ("depth", "block", "shortcut"),
    [
        (20, "preact_basic", "A"),
        (11, "preact_bottleneck", "preact_B"),
        (11, "preact_bottleneck", "C"),
    ],
)
def test_zero_init_makes_every_block_start_as_its_shortcut(
    depth: int, block: str, shortcut: str
) -> None:
    torch.manual_seed(0)
    model = rl.preact_cifar_resnet(
        depth, block=block, shortcut=shortcut, zero_init_residual=True, num_classes=3
    ).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for block in model.blocks():
            last = block.conv3 if isinstance(block, rl.nn.PreActBottleneck) else block.conv2
            assert not last.weight.any()
            x = torch.randn(2, block.in_channels, 6, 6, generator=generator)
            torch.testing.assert_close(block(x), block.forward_shortcut(x), rtol=0, atol=0)


def test_final_norm_is_applied_by_forward_features(device: torch.device) -> None:
    torch.manual_seed(0)
    model = rl.preact_cifar_resnet(11, num_classes=3).to(device).eval()
    assert isinstance(model.norm, rl.nn.NormAct)
    assert isinstance(model.norm.bn, nn.BatchNorm2d)
    assert model.norm.bn.num_features == model.num_features == 256
    x = torch.randn(2, 3, 8, 8, device=device)
    with torch.no_grad():
        last = model.layer3(model.layer2(model.layer1(model.forward_stem(x))))
        features = model.forward_features(x)
        torch.testing.assert_close(features, torch.relu(model.norm.bn(last)))
        torch.testing.assert_close(model(x), model.forward_head(features))
    assert (last < 0).any()  # the last unit adds nothing after its sum ...
    assert (features >= 0).all()  # ... the final norm-ReLU does


def test_drop_path_is_the_identity_in_eval(device: torch.device) -> None:
    torch.manual_seed(0)
    dropped = rl.preact_cifar_resnet(11, drop_path_rate=0.5, num_classes=3).to(device)
    plain = rl.preact_cifar_resnet(11, num_classes=3).to(device)
    plain.load_state_dict(dropped.state_dict())
    assert all(block.drop_path is not None for block in dropped.blocks())
    x = torch.randn(4, 3, 8, 8, device=device)
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(x), plain.eval()(x), rtol=0, atol=0)
        torch.manual_seed(1)
        trained = dropped.train()(x)
    assert not torch.allclose(trained, plain.train()(x))


@pytest.mark.parametrize(
    ("block", "shortcut"),
    [
        ("preact_basic", "A"),
        ("preact_basic", "preact_B"),
        ("preact_bottleneck", "preact_B"),
        ("preact_bottleneck", "C"),
    ],
)
def test_every_parameter_gets_a_gradient(block: str, shortcut: str, device: torch.device) -> None:
    torch.manual_seed(0)
    model = rl.resnet(
        (1, 2),
        block=block,
        shortcut=shortcut,
        stem="imagenet_preact",
        widths=(4, 8),
        num_classes=3,
        zero_init_residual=True,
    ).to(device)
    x = torch.randn(2, 3, 32, 32, device=device)
    (model(x) * torch.randn(2, 3, device=device)).sum().backward()
    assert_every_parameter_has_a_gradient(model)
    # zero-init zeroed one convolution per block; it still learns (its input is not zero).
    zeroed = [m for m in model.modules() if isinstance(m, nn.Conv2d) and not m.weight.any()]
    assert len(zeroed) == len(model.blocks())
    assert all(conv.weight.grad is not None and conv.weight.grad.any() for conv in zeroed)


def test_bottleneck_options_follow_the_post_activation_bottleneck() -> None:
    block = rl.nn.PreActBottleneck(
        in_channels=64, width=64, stride=2, stride_in_1x1=True, groups=32, width_per_group=4
    )
    reference = rl.Bottleneck(in_channels=64, width=64, groups=32, width_per_group=4)
    assert block.inner_width == reference.inner_width == 128
    assert block.conv1.stride == (2, 2)
    assert block.conv2.stride == (1, 1)
    assert block.conv2.groups == 32
    assert rl.nn.PreActBottleneck(in_channels=8, width=2, stride=2).conv2.stride == (2, 2)
    with pytest.raises(ValueError, match="PreActBottleneck groups must be an int >= 1; got 0"):
        rl.nn.PreActBottleneck(in_channels=8, width=2, groups=0)


def test_spec_options_reach_the_family(device: torch.device) -> None:
    torch.manual_seed(0)
    model = rl.preact_resnet18(
        act="silu", norm="groupnorm", output_stride=16, num_classes=3, drop_path_rate=0.1
    ).to(device)
    assert isinstance(model.norm.act, nn.SiLU)
    assert isinstance(model.norm.bn, nn.GroupNorm)
    assert isinstance(model.layer4[1].relu, nn.SiLU)
    assert model.layer4[1].conv1.dilation == (2, 2)
    x = torch.randn(1, 3, 64, 64, device=device)
    assert model.forward_features(x).shape == (1, 512, 4, 4)
    again = rl.ResNetSpec.from_json(model.spec.to_json())
    assert again == model.spec
    assert rl.build(again).state_dict().keys() == model.state_dict().keys()
