"""The deep stem ("ResNet-C"), option D shortcuts ("ResNet-D") and the resnet*d factories.

He et al., 2019, "Bag of Tricks for Image Classification with Convolutional Neural
Networks", section 4.1; layouts and names as timm's ``resnet*d`` (``stem_type="deep"``,
``stem_width=32``, ``avg_down=True``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resnetlib as rl

from .helpers import assert_every_parameter_has_a_gradient

# torchvision's published counts (its weight metadata) for the 7x7-stem, option-B twins.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
# The deep stem minus the 7x7 stem (only the stem differs; option D has option B's weights):
#   deep:  3x3 convs 3->32, 32->32, 32->64: 9 * (3*32 + 32*32 + 32*64) = 28,512
#          norms after each (weight + bias): 2 * (32 + 32 + 64)        =    256  -> 28,768
#   7x7:   7x7 conv 3->64: 49 * 3 * 64 = 9,408; bn1: 2 * 64 = 128               ->  9,536
DEEP_STEM_EXTRA = 28_768 - 9_536
# timm's model cards (resnet50d: 25,576,264 = 25,557,032 + 19,232) and the same sum for all.
D_PARAMS = {
    "resnet18d": 11_708_744,
    "resnet34d": 21_816_904,
    "resnet50d": 25_576_264,
    "resnet101d": 44_568_392,
    "resnet152d": 60_212_040,
}
DEEP_STEM_KEYS = [
    "conv1.0.weight",
    *(f"conv1.1.{b}" for b in ("weight", "bias", "running_mean", "running_var")),
    "conv1.1.num_batches_tracked",
    "conv1.3.weight",
    *(f"conv1.4.{b}" for b in ("weight", "bias", "running_mean", "running_var")),
    "conv1.4.num_batches_tracked",
    "conv1.6.weight",
    *(f"bn1.{b}" for b in ("weight", "bias", "running_mean", "running_var")),
    "bn1.num_batches_tracked",
]


def on_meta(name: str, **overrides: object) -> rl.ResNet:
    with torch.device("meta"):
        return rl.create_model(name, **overrides)


def test_deep_stem_extra_parameters_are_the_published_difference() -> None:
    assert DEEP_STEM_EXTRA == 19_232
    assert D_PARAMS["resnet50d"] == TORCHVISION_PARAMS["resnet50"] + DEEP_STEM_EXTRA
    for name, count in TORCHVISION_PARAMS.items():
        assert D_PARAMS[f"{name}d"] == count + DEEP_STEM_EXTRA


@pytest.mark.parametrize(("name", "expected"), sorted(D_PARAMS.items()))
def test_resnet_d_parameter_counts(name: str, expected: int) -> None:
    model = on_meta(name)
    assert rl.count_parameters(model) == expected
    assert model.spec.stem == rl.StemSpec("deep", 64)
    assert model.spec.shortcut == "D"


def test_resnet_d_factories_are_registered_and_exported() -> None:
    for name in D_PARAMS:
        assert name in rl.list_models("resnet*d")
        assert name in rl.__all__
        assert getattr(rl, name).__name__ == name
    assert rl.nn.STEMS.get("deep") is rl.nn.DeepStem
    assert rl.nn.SHORTCUTS.get("D") is rl.nn.OptionD


def test_deep_stem_has_timms_names_and_shapes() -> None:
    model = on_meta("resnet50d")
    state = model.state_dict()
    assert [key for key in state if not key.startswith(("layer", "fc"))] == DEEP_STEM_KEYS
    assert model.stem_names == ("conv1", "bn1", "relu", "maxpool")
    assert state["conv1.0.weight"].shape == (32, 3, 3, 3)
    assert state["conv1.3.weight"].shape == (32, 32, 3, 3)
    assert state["conv1.6.weight"].shape == (64, 32, 3, 3)
    convs = [m for m in model.conv1 if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert [c.padding for c in convs] == [(1, 1)] * 3
    assert all(c.bias is None for c in convs)
    assert isinstance(model.maxpool, nn.MaxPool2d)


def test_deep_stem_width_is_half_its_output_and_must_be_even() -> None:
    stem = rl.nn.DeepStem(in_channels=1, out_channels=48)
    assert stem.stem_width == 24
    assert stem[0][0].out_channels == 24
    assert stem[0][6].out_channels == 48
    with pytest.raises(ValueError, match=r"even out_channels >= 2.*got 33"):
        rl.create_model("resnet18d", base_channels=33)
    with pytest.raises(ValueError, match="got 1"):
        rl.nn.DeepStem(in_channels=3, out_channels=1)


def test_deep_stem_uses_the_specs_activation_everywhere() -> None:
    model = on_meta("resnet18d", act="silu")
    assert [type(model.conv1[i]) for i in (2, 5)] == [nn.SiLU, nn.SiLU]
    assert isinstance(model.relu, nn.SiLU)


def test_resnet_d_keys_are_resnets_with_the_stem_and_shortcut_renamed() -> None:
    # timm's resnet50d = torchvision's resnet50 with conv1 -> the deep stem and every
    # downsample.{0,1} (conv, norm) -> downsample.{1,2} behind a parameter-free pool.
    def renamed(key: str) -> str:
        for old, new in (
            (".downsample.1.", ".downsample.2."),
            (".downsample.0.", ".downsample.1."),
        ):
            if old in key:
                return key.replace(old, new)
        return key

    for name in ("resnet18", "resnet50"):
        plain = on_meta(name).state_dict()
        resnet_d = on_meta(f"{name}d").state_dict()
        expected = DEEP_STEM_KEYS + [
            renamed(k) for k in plain if not k.startswith(("conv1.", "bn1."))
        ]
        assert list(resnet_d) == expected
        for key in plain:
            if not key.startswith(("conv1.", "bn1.")):
                assert resnet_d[renamed(key)].shape == plain[key].shape, key


def test_option_d_places_a_pool_only_where_the_stride_is() -> None:
    model = on_meta("resnet50d")
    first = [getattr(model, stage)[0].downsample for stage in model.stage_names]
    assert all(isinstance(d, nn.Sequential) and len(d) == 3 for d in first)
    assert isinstance(first[0][0], nn.Identity)  # layer1: 64 -> 256 channels, stride 1
    for downsample in first[1:]:
        pool = downsample[0]
        assert isinstance(pool, nn.AvgPool2d)
        assert (pool.kernel_size, pool.stride) == (2, 2)
        assert pool.ceil_mode
        assert not pool.count_include_pad
        assert downsample[1].stride == (1, 1)
        assert downsample[1].kernel_size == (1, 1)
    assert all(
        block.downsample is None
        for block in model.blocks()
        if block.stride == 1 and block.in_channels == block.out_channels
    )


@pytest.mark.parametrize(("layers", "block"), [((2, 2, 2, 2), "basic"), ((1, 2, 1), "bottleneck")])
def test_option_d_has_option_bs_parameters(layers: tuple[int, ...], block: str) -> None:
    with torch.device("meta"):
        b = rl.resnet(layers, block=block, shortcut="B")
        d = rl.resnet(layers, block=block, shortcut="D")
    assert rl.count_parameters(d) == rl.count_parameters(b)
    b_shapes = [p.shape for p in b.parameters()]
    assert [p.shape for p in d.parameters()] == b_shapes


def test_option_d_averages_only_real_pixels_at_odd_sizes() -> None:
    # ceil_mode=True keeps the last row and column; count_include_pad=False makes their
    # windows the mean of the pixels that exist (a lone corner pixel stays itself).
    shortcut = rl.nn.OptionD().make(in_channels=1, out_channels=2, stride=2, norm_layer=nn.Identity)
    assert shortcut is not None
    conv = shortcut[1]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
    x = torch.arange(9.0).view(1, 1, 3, 3)
    pooled = torch.tensor([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]])
    expected = torch.stack([pooled, -2 * pooled]).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(shortcut(x), expected)


def test_option_d_is_identity_where_the_shape_is_kept() -> None:
    strategy = rl.nn.OptionD()
    assert strategy.make(in_channels=8, out_channels=8, stride=1, norm_layer=nn.BatchNorm2d) is None
    made = strategy.make(in_channels=8, out_channels=16, stride=1, norm_layer=nn.BatchNorm2d)
    assert isinstance(made, nn.Sequential)
    assert isinstance(made[0], nn.Identity)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize(("height", "width"), [(33, 47), (65, 31), (17, 17)])
def test_deep_stem_and_option_d_shapes_at_odd_sizes(
    device: torch.device, block: str, height: int, width: int
) -> None:
    model = rl.resnet((1, 1, 1, 1), block=block, stem="deep", shortcut="D", base_channels=8)
    model = model.to(device).eval()
    x = torch.randn(2, 3, height, width, device=device)

    def down(n: int) -> int:  # every stride-2 layer here (3x3 pad 1, max-pool, 2x2 ceil pool)
        return (n + 1) // 2

    h, w = down(down(height)), down(down(width))
    with torch.no_grad():
        assert model.forward_stem(x).shape == (2, 8, h, w)
        for _ in range(3):
            h, w = down(h), down(w)
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, h, w)
        assert model(x).shape == (2, 1000)
        # the average-pool shortcut and the strided branch agree on every size
        block2 = model.layer2[0]
        stage1 = model.layer1(model.forward_stem(x))
        assert block2.downsample(stage1).shape == block2(stage1).shape


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_every_parameter_gets_a_gradient(device: torch.device, block: str) -> None:
    torch.manual_seed(0)
    model = rl.resnet(
        (1, 1, 1), block=block, stem="deep", shortcut="D", base_channels=8, num_classes=5
    ).to(device)
    x = torch.randn(2, 3, 41, 37, device=device)
    F.cross_entropy(model(x), torch.tensor([1, 3], device=device)).backward()
    assert_every_parameter_has_a_gradient(model, nonzero=True)


def test_resnet_d_spec_round_trips_through_json() -> None:
    spec = on_meta("resnet50d", output_stride=16).spec
    assert rl.ResNetSpec.from_json(spec.to_json()) == spec
    assert spec.to_dict()["stem"] == {"type": "deep", "out_channels": 64}
    assert spec.to_dict()["shortcut"] == "D"


def test_deep_stem_and_option_d_combine_with_other_layouts() -> None:
    # The stem and the shortcut are independent choices: either on resnet50 alone.
    stem_only = on_meta("resnet50", stem="deep")
    shortcut_only = on_meta("resnet50", shortcut="D")
    assert rl.count_parameters(stem_only) == D_PARAMS["resnet50d"]
    assert rl.count_parameters(shortcut_only) == TORCHVISION_PARAMS["resnet50"]
    # Option D on the CIFAR layout replaces option A's zero padding with projections.
    cifar = rl.resnet20(shortcut="D")
    assert isinstance(cifar.layer2[0].downsample[0], nn.AvgPool2d)
    assert cifar(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_resnet_d_mult_adds_are_the_twins_plus_the_deep_stems(name: str) -> None:
    # At 224x224 all three stem convolutions output 112x112 (the 7x7 did too):
    #   deep 9 * (3*32 + 32*32 + 32*64) = 28,512 vs 7x7 49 * 3 * 64 = 9,408 per pixel.
    # Option D's projections run at the pooled size, where option B's strided ones did.
    extra = 112 * 112 * (28_512 - 9_408)
    assert extra == 239_640_576
    size = (3, 224, 224)
    assert rl.count_flops(on_meta(f"{name}d"), size) == rl.count_flops(on_meta(name), size) + extra


def test_every_attribute_a_resnet_sets_is_one_a_stem_child_may_not_take() -> None:
    """stem_name_clashes names what ResNet.__init__ sets; an attribute added there and not to
    it would let a stem child of that name build into a TypeError or hide the module."""
    from resnetlib.core.model import stem_name_clashes

    for model in (rl.resnet20(), rl.preact_resnet18(), rl.resnet18d()):
        model.set_grad_checkpointing()
        model.reset_classifier(3, global_pool="max")
        model.prune_intermediate_layers(2)
        _ = model.pretrained_cfg
        own = [*vars(model), *(name for name in model._modules if name not in model.stem_names)]
        assert stem_name_clashes(own, len(model.stage_names)) == own
    assert stem_name_clashes(["layer0", "layer4", "layer9", "bn1"], 3) == []
    assert stem_name_clashes(["layer0", "layer4", "layer9", "bn1"]) == ["layer4", "layer9"]
