"""Backbone use: feature_info, forward_intermediates, features_only, classifier swaps, fx."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.fx
from torch import nn

import resnetlib as rl

from .helpers import assert_every_parameter_has_a_gradient, tiny_imagenet


def tiny_model(kind: str) -> rl.ResNet:
    if kind == "basic":
        return tiny_imagenet()
    if kind == "bottleneck":
        return tiny_imagenet(block="bottleneck", shortcut="C")
    if kind == "cifar":
        return rl.resnet20(widths=(4, 8, 16))
    # A stage with stride 1 does not reduce (as a dilated stage will not).
    stages = (rl.StageSpec(1, 16, 1), rl.StageSpec(1, 32, 1), rl.StageSpec(1, 32, 2))
    return rl.build(replace(rl.cifar_spec(8), stages=stages))


@pytest.mark.parametrize("kind", ["basic", "bottleneck", "cifar", "stride1"])
@pytest.mark.parametrize("size", [(33, 47), (1, 1), (20, 9)])
def test_feature_info_matches_the_maps(
    kind: str, size: tuple[int, int], device: torch.device
) -> None:
    model = tiny_model(kind).to(device).eval()
    x = torch.randn(2, 3, *size, device=device)
    final, maps = model.forward_intermediates(x)
    assert len(maps) == len(model.feature_info) == len(model.stage_names) + 1
    for info, fmap in zip(model.feature_info, maps, strict=True):
        expected = tuple(math.ceil(side / info["reduction"]) for side in size)
        assert fmap.shape == (2, info["num_chs"], *expected)
    assert [info["module"] for info in model.feature_info[1:]] == list(model.stage_names)
    # Index 0 is the stem's map before its max-pool (timm's act1); CIFAR stems have none.
    stem_end = -2 if isinstance(getattr(model, model.stem_names[-1]), nn.MaxPool2d) else -1
    assert model.feature_info[0]["module"] == model.stem_names[stem_end]
    torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
    assert model.feature_info[-1]["num_chs"] == model.num_features


def test_feature_info_reduction_reads_stage_strides() -> None:
    model = tiny_model("stride1")
    assert [info["reduction"] for info in model.feature_info] == [1, 1, 1, 2]
    # timm's: index 0 is the stem's activation at stride 2, before the max-pool.
    info = tiny_imagenet().feature_info
    assert info.reduction() == [2, 4, 8, 16, 32]
    assert info.module_name() == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert info.channels() == [8, 8, 16, 32, 64]
    assert info.channels(0) == 8
    assert info.reduction([1, -1]) == [4, 32]


def test_intermediate_indices_follow_timm() -> None:
    model = tiny_imagenet().eval()
    x = torch.randn(1, 3, 40, 40)
    _, every = model.forward_intermediates(x)
    last_two = model.forward_intermediates(x, 2, intermediates_only=True)
    assert [m.shape for m in last_two] == [m.shape for m in every[-2:]]
    picked = model.forward_intermediates(x, [1, -1], intermediates_only=True)
    assert [m.shape[1] for m in picked] == [8, 64]
    final, early = model.forward_intermediates(x, (0, 2), stop_early=True)
    torch.testing.assert_close(final, every[2], rtol=0, atol=0)
    torch.testing.assert_close(early[1], every[2], rtol=0, atol=0)
    assert model.forward_intermediates(x, 1, norm=True)[1][0].shape == every[-1].shape


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (0, r"indices as an int must be in 1\.\.5; got 0"),
        (6, r"indices as an int must be in 1\.\.5; got 6"),
        ((1, 5), r"feature index 5 is out of range; this model has 5 feature maps"),
        ((), r"indices must be None, an int or a non-empty sequence"),
        ((1.0,), r"indices must be ints; got 1\.0"),
    ],
)
def test_bad_indices(indices: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_imagenet().forward_intermediates(torch.randn(1, 3, 8, 8), indices)  # type: ignore[call-overload]


def test_output_fmt_other_than_nchw_is_refused() -> None:
    with pytest.raises(ValueError, match=r"output_fmt must be 'NCHW'; got 'NHWC'"):
        tiny_imagenet().forward_intermediates(torch.randn(1, 3, 8, 8), output_fmt="NHWC")


def test_features_only_loads_a_classifier_checkpoint_strictly() -> None:
    backbone = rl.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    assert isinstance(backbone, rl.core.ResNetFeatures)
    assert [info["num_chs"] for info in backbone.feature_info] == [256, 512, 1024, 2048]
    assert [info["reduction"] for info in backbone.feature_info] == [4, 8, 16, 32]
    classifier = rl.resnet50().state_dict()
    weights = {k: v for k, v in classifier.items() if not k.startswith("fc.")}
    backbone.load_state_dict(weights, strict=True)
    assert set(backbone.state_dict()) == set(weights)


@pytest.mark.parametrize("size", [(33, 47), (1, 1)])
def test_features_equal_the_models_intermediates(
    size: tuple[int, int], device: torch.device
) -> None:
    model = tiny_imagenet().to(device).eval()
    backbone = rl.core.features(model, out_indices=(1, 2, 3, 4))
    x = torch.randn(2, 3, *size, device=device)
    expected = model.forward_intermediates(x, (1, 2, 3, 4), intermediates_only=True)
    got = backbone(x)
    assert len(got) == 4
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_features_drop_unused_stages_and_the_head() -> None:
    backbone = rl.create_model("resnet18", features_only=True, out_indices=(2, 0))
    assert backbone.out_indices == (0, 2)
    names = {name for name, _ in backbone.named_children()}
    assert names == {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2"}
    maps = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 32, 32), (128, 8, 8)]
    assert backbone.feature_info.reduction() == [2, 8]


def test_out_indices_need_features_only() -> None:
    with pytest.raises(ValueError, match=r"out_indices is for features_only=True"):
        rl.create_model("resnet18", out_indices=(1, 2))


def test_a_final_norm_after_the_last_stage_is_kept_and_applied(tmp_path: Path) -> None:
    # A pre-activation net applies a final norm after its last stage; features and
    # intermediates must see it too.
    torch.manual_seed(0)
    model = rl.preact_resnet18(widths=(8, 8, 16, 16), num_classes=3).eval()
    assert model.final_names == ("norm",)
    nn.init.uniform_(model.norm.bn.weight)
    x = torch.randn(1, 3, 40, 40)
    expected = model.forward_features(x)
    backbone = rl.core.features(model, out_indices=(1, 4))
    assert "norm" in dict(backbone.named_children())
    torch.testing.assert_close(backbone(x)[-1], expected, rtol=0, atol=0)
    final, maps = model.forward_intermediates(x, norm=True)
    torch.testing.assert_close(maps[-1], expected, rtol=0, atol=0)
    torch.testing.assert_close(final, expected, rtol=0, atol=0)
    assert not torch.equal(model.forward_intermediates(x)[1][-1], expected)
    kept = copy.deepcopy(model)
    kept.prune_intermediate_layers([4])  # nothing after the last stage goes
    assert kept.final_names == ("norm",)
    rebuilt = rl.build(kept.spec)
    assert list(rebuilt.state_dict()) == list(kept.state_dict())
    # As timm's: the norm goes with the stages, or with prune_norm; no spec builds that.
    for indices, prune_norm in (([2], False), ([4], True)):
        pruned = copy.deepcopy(model)
        pruned.prune_intermediate_layers(indices, prune_norm=prune_norm)
        assert not hasattr(pruned, "norm")
        assert pruned.final_names == ()
        tap = model.forward_intermediates(x, indices, intermediates_only=True)[0]
        torch.testing.assert_close(pruned(x), tap, rtol=0, atol=0)
        with pytest.raises(ValueError, match=r"spec"):
            rl.save(pruned, tmp_path / "pruned.pt")


def test_code_reading_layer_attributes_works() -> None:
    model = rl.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        y = layer(y)
    torch.testing.assert_close(y, model.forward_features(x), rtol=0, atol=0)
    assert model.fc.in_features == model.layer4[-1].conv2.out_channels


def test_fx_symbolic_trace(device: torch.device) -> None:
    model = tiny_imagenet().to(device).eval()
    x = torch.randn(2, 3, 33, 47, device=device)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
    backbone = rl.core.features(model, out_indices=(1, 3))
    traced_features = torch.fx.symbolic_trace(backbone)
    for a, b in zip(traced_features(x), backbone(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torchvision_create_feature_extractor() -> None:
    feature_extraction = pytest.importorskip("torchvision.models.feature_extraction")
    model = rl.resnet18().eval()
    extractor = feature_extraction.create_feature_extractor(model, {"layer2": "c3", "layer4": "c5"})
    x = torch.randn(1, 3, 65, 65)
    out = extractor(x)
    maps = model.forward_intermediates(x, (2, 4), intermediates_only=True)
    assert list(out) == ["c3", "c5"]
    torch.testing.assert_close(out["c3"], maps[0], rtol=0, atol=0)
    torch.testing.assert_close(out["c5"], maps[1], rtol=0, atol=0)


def test_reset_classifier_keeps_the_spec_truthful(device: torch.device) -> None:
    model = rl.resnet20(widths=(4, 8, 16)).to(device)
    assert model.get_classifier() is model.fc
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model.spec.num_classes == 0
    x = torch.randn(2, 3, 8, 8, device=device)
    assert model(x).shape == (2, model.num_features)
    assert rl.count_parameters(model) == rl.count_parameters(rl.build(model.spec))
    model.reset_classifier(7)
    fc = model.get_classifier()
    assert isinstance(fc, nn.Linear)
    assert (fc.in_features, fc.out_features) == (16, 7)
    assert fc.weight.device.type == device.type
    assert model(x).shape == (2, 7)
    assert model.spec.num_classes == 7
    assert rl.count_parameters(model) == rl.count_parameters(rl.build(model.spec))


def test_a_head_assigned_the_torchvision_way_is_the_models(tmp_path: Path) -> None:
    """``model.fc = nn.Linear(width, n)`` sets num_classes in the spec and data config, so
    the model saves, loads and evaluates as one with that head; another module is left."""
    model = rl.resnet20(widths=(4, 8, 16))
    model.fc = nn.Linear(16, 3)
    assert (model.num_classes, model.pretrained_cfg["num_classes"]) == (3, 3)
    rl.save(model, tmp_path / "three.pt")
    loaded = rl.load(tmp_path / "three.pt")
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)
    model.fc = nn.Identity()
    assert model.num_classes == 0
    assert model(x).shape == (2, 16)
    model.fc = nn.Sequential(nn.Linear(16, 5))  # not a head resnetlib can describe
    assert model.num_classes == 0
    model.reset_classifier(0, global_pool="")  # unpooled: no linear head fits, none is taken
    model.fc = nn.Linear(16, 5)
    assert model.num_classes == 0


def test_reset_classifier_follows_the_dtype() -> None:
    model = rl.resnet20(widths=(4, 8, 16)).double()
    model.reset_classifier(3)
    assert model.fc.weight.dtype == torch.float64


@pytest.mark.parametrize("bad", [-1, 2.0, True, "3"])
def test_reset_classifier_rejects_bad_counts(bad: object) -> None:
    model = rl.resnet20(widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 0 \(0 removes"):
        model.reset_classifier(bad)  # type: ignore[arg-type]
    assert model.spec.num_classes == 10


def test_zero_classes_from_a_factory_and_spec_round_trip() -> None:
    model = rl.resnet20(num_classes=0)
    assert isinstance(model.fc, nn.Identity)
    assert model.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 64)
    assert rl.ResNetSpec.from_json(model.spec.to_json()).num_classes == 0
    with pytest.raises(ValueError, match=r"ResNetSpec.num_classes must be an int >= 0; got -2"):
        replace(model.spec, num_classes=-2)


def test_prune_intermediate_layers() -> None:
    model = tiny_imagenet()
    taken = model.prune_intermediate_layers((1, 2))
    assert taken == [1, 2]
    assert model.stage_names == ("layer1", "layer2")
    assert not hasattr(model, "layer3")
    assert len(model.spec.stages) == 2
    assert model.spec.num_classes == 0
    assert len(model.feature_info) == 3
    rebuilt = rl.build(model.spec)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in rebuilt.state_dict().items()
    }
    x = torch.randn(2, 3, 32, 32)
    # As timm's: the head goes with its pool, so forward returns the last kept map.
    assert model.global_pool == ""
    torch.testing.assert_close(model.eval()(x), model.layer2(model.layer1(model.forward_stem(x))))
    assert model(x).shape == (2, 16, 4, 4)
    assert len(model.forward_intermediates(x, intermediates_only=True)) == 3


def test_prune_follows_timm() -> None:
    """timm's ResNet.prune_intermediate_layers: stages go after the last index, the max-pool
    at index 0, and the head with its pool whenever stages go (even with prune_head=False).
    """
    model = tiny_imagenet().eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    taps = model.forward_intermediates(x, intermediates_only=True)
    kept = copy.deepcopy(model)
    assert kept.prune_intermediate_layers(1, prune_head=False) == [4]
    assert isinstance(kept.fc, nn.Linear)
    torch.testing.assert_close(kept(x), expected, rtol=0, atol=0)
    headless = copy.deepcopy(model)
    headless.prune_intermediate_layers((1, 2), prune_head=False)
    assert isinstance(headless.fc, nn.Identity)
    assert headless.num_features == headless.head_hidden_size == 16
    for index, tap in enumerate(taps):
        pruned = copy.deepcopy(model)
        assert pruned.prune_intermediate_layers([index]) == [index]
        torch.testing.assert_close(pruned(x), tap, rtol=0, atol=0)
        torch.testing.assert_close(pruned.forward_features(x), tap, rtol=0, atol=0)
        got = pruned.forward_intermediates(x, [index], intermediates_only=True)
        torch.testing.assert_close(got[0], tap, rtol=0, atol=0)
        assert len(pruned.feature_info) == index + 1
        # Everything left is used: it all gets a gradient.
        pruned.train()
        pruned(x).sum().backward()
        assert_every_parameter_has_a_gradient(pruned)
    stem_only = copy.deepcopy(model)
    stem_only.prune_intermediate_layers([0])
    assert not hasattr(stem_only, "maxpool")
    assert stem_only.stem_names == ("conv1", "bn1", "relu")
