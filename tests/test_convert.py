"""Weights from elsewhere: layouts, the akamaster trap, stems, heads and mismatch errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.interop.convert import detect_source

from . import mmpretrain_reference as mmpretrain
from .akamaster_reference import AkamasterResNet, released_checkpoint
from .reference_weights import FIXTURES, deterministic_fill_, fixed_input


def filled(name: str, **overrides: Any) -> rl.ResNet:
    """``create_model(name)`` with the fixtures' deterministic weights, float64, eval mode."""
    model = rl.create_model(name, **overrides)
    deterministic_fill_(model)
    return model.double().eval()


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


def cifar_input(channels: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, channels, 32, 32, generator=generator, dtype=torch.float64)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- akamaster/pytorch_resnet_cifar10 ------------------------------------------------------


def akamaster(depth: int, option: str = "A") -> AkamasterResNet:
    reference = AkamasterResNet((depth - 2) // 6, option=option)
    deterministic_fill_(reference)
    return reference.double().eval()


@pytest.mark.parametrize("depth", [20, 56])
def test_akamaster_weights_give_their_logits(depth: int) -> None:
    """Their released-checkpoint layout, converted, gives their logits in our resnet20/56."""
    reference = akamaster(depth)
    checkpoint = released_checkpoint(reference)
    assert all(key.startswith("module.") for key in checkpoint["state_dict"])
    model = rl.create_model(f"resnet{depth}", shortcut="A_both").double()
    report = rl.interop.load_weights(model, checkpoint)
    assert report.source == "akamaster"
    assert report.reinitialized == report.adapted == report.missing == ()
    x = cifar_input()
    expected = run(reference, x)
    assert (expected.std(dim=1) > 0.05).all()  # not trivially constant
    torch.testing.assert_close(run(model, x), expected, rtol=0, atol=1e-12)


def test_akamaster_trap_end_padding_computes_something_else() -> None:
    """Option A padding at the end loads silently with load_state_dict but differs; we refuse."""
    reference = akamaster(20)
    checkpoint = released_checkpoint(reference)
    weights = rl.interop.convert_state_dict(checkpoint, source="akamaster")
    end_padded = rl.resnet20().double()
    end_padded.load_state_dict(weights, strict=True)  # no parameters tell the two apart
    x = cifar_input()
    assert (run(end_padded, x) - run(reference, x)).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"both sides.*shortcut='A_both'") as info:
        rl.interop.load_weights(rl.resnet20(), checkpoint)
    assert "layer2.0.downsample" in str(info.value)
    with pytest.raises(ValueError, match="adds no shortcuts"):
        rl.interop.load_weights(rl.plain20(), checkpoint)
    # a features-only backbone is checked by its modules too (it has no blocks() or spec)
    backbone = rl.create_model("resnet20", features_only=True, shortcut="A_both")
    assert rl.interop.load_weights(backbone, checkpoint).loaded
    with pytest.raises(ValueError, match=r"both sides.*shortcut='A_both'"):
        rl.interop.load_weights(rl.create_model("resnet20", features_only=True), checkpoint)


def test_create_model_from_akamaster_file_picks_both_sided_padding(tmp_path: Path) -> None:
    reference = akamaster(20)
    path = tmp_path / "resnet20-12fca82f.th"
    torch.save(released_checkpoint(reference), path)
    model = rl.create_model("resnet20", checkpoint_path=path).double()
    assert model.spec.shortcut == "A_both"
    x = cifar_input()
    torch.testing.assert_close(run(model, x), run(reference, x), rtol=0, atol=1e-12)


def test_akamaster_option_b_and_old_checkpoints(tmp_path: Path) -> None:
    """Their option B maps to ours; checkpoints without BatchNorm counters (old torch) load."""
    reference = akamaster(20, option="B")
    checkpoint = released_checkpoint(reference)
    state = checkpoint["state_dict"]
    assert "module.layer2.0.shortcut.0.weight" in state
    checkpoint["state_dict"] = {k: v for k, v in state.items() if "num_batches" not in k}
    path = tmp_path / "option_b.th"
    torch.save(checkpoint, path)
    model = rl.create_model("resnet20", checkpoint_path=path).double()
    assert model.spec.shortcut == "B"
    x = cifar_input()
    torch.testing.assert_close(run(model, x), run(reference, x), rtol=0, atol=1e-12)


def test_akamaster_layout_round_trip() -> None:
    ours = rl.resnet20(shortcut="B").state_dict()
    theirs = rl.interop.convert_state_dict(ours, target="akamaster")
    assert "linear.weight" in theirs
    assert "layer2.0.shortcut.1.running_var" in theirs
    assert not [key for key in theirs if key.startswith("fc.") or "downsample" in key]
    assert set(theirs) == set(AkamasterResNet(3, option="B").state_dict())
    assert_same_tensors(rl.interop.convert_state_dict(theirs, source="akamaster"), ours)


# --- mmpretrain ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "stem_shape"),
    [
        ("resnet50", {}, [64, 3, 7, 7]),  # mmpretrain ResNet(depth=50), style="pytorch"
        ("resnet18", {"stem": "cifar"}, [64, 3, 3, 3]),  # ResNet_CIFAR(depth=18)
    ],
)
def test_mmpretrain_layout_round_trip(
    name: str, overrides: dict[str, Any], stem_shape: list[int]
) -> None:
    """Ours -> mmpretrain's documented names -> ours is the identity, tensor by tensor."""
    source = filled(name, **overrides)
    ours = source.state_dict()
    theirs = rl.interop.convert_state_dict(ours, target="mmpretrain")
    assert list(theirs["backbone.conv1.weight"].shape) == stem_shape
    assert "backbone.bn1.running_mean" in theirs
    assert "backbone.layer1.0.conv2.weight" in theirs
    assert "backbone.layer2.0.downsample.0.weight" in theirs
    assert "backbone.layer2.0.downsample.1.weight" in theirs
    assert "head.fc.weight" in theirs
    assert "head.fc.bias" in theirs
    assert all(key.startswith(("backbone.", "head.fc.")) for key in theirs)
    checkpoint = {"meta": {"epoch": 100}, "state_dict": theirs}
    model = rl.create_model(name, **overrides).double()
    report = rl.interop.load_weights(model, checkpoint)
    assert report.source == "mmpretrain"
    assert_same_tensors(model.state_dict(), ours)


# Our model (name, overrides) and mmpretrain's ImageClassifier (depth, backbone options).
MMPRETRAIN_TWINS = [
    ("resnet50", {}, 50, {}),  # ResNet(depth=50)
    ("resnet50", {"stride_in_1x1": True}, 50, {"style": "caffe"}),
    ("resnet18", {"stem": "cifar", "num_classes": 10}, 18, {"cifar": True, "num_classes": 10}),
    ("resnet50", {"stem": "deep"}, 50, {"deep_stem": True}),  # ResNetV1c
    ("resnet50d", {}, 50, {"deep_stem": True, "avg_down": True}),  # ResNetV1d
    ("resnext50_32x4d", {}, 50, {"groups": 32, "width_per_group": 4}),  # ResNeXt
]


@pytest.mark.parametrize(("name", "overrides", "depth", "options"), MMPRETRAIN_TWINS)
def test_mmpretrain_weights_give_their_logits(
    name: str, overrides: dict[str, Any], depth: int, options: dict[str, Any]
) -> None:
    """Their checkpoint, loaded strictly, gives their logits; ours converts to their keys."""
    reference = mmpretrain.ImageClassifier(depth, **options)
    deterministic_fill_(reference)
    reference = reference.double().eval()
    checkpoint = mmpretrain.released_checkpoint(reference)
    model = rl.create_model(name, **overrides).double()
    report = rl.interop.load_weights(model, checkpoint, adapt_stem=False, new_head=False)
    assert report.source == "mmpretrain"
    assert set(report.loaded) == set(model.state_dict())
    # 36x44: odd sizes where ResNetV1d's average pools round up (ceil_mode=True).
    x = torch.randn(2, 3, 36, 44, generator=torch.Generator().manual_seed(0)).double()
    expected = run(reference, x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(run(model, x), expected, rtol=0, atol=1e-10)
    theirs = rl.interop.convert_state_dict(model.state_dict(), target="mmpretrain")
    assert_same_tensors(theirs, checkpoint["state_dict"])


def test_mmpretrain_v1d_projections() -> None:
    """ResNetV1d: a stride-1 projection has no pool (conv at 0), a strided one has (conv at 1)."""
    theirs = mmpretrain.ImageClassifier(50, deep_stem=True, avg_down=True).state_dict()
    assert "backbone.layer1.0.downsample.0.weight" in theirs
    assert "backbone.layer1.0.downsample.2.weight" not in theirs
    assert "backbone.layer2.0.downsample.1.weight" in theirs
    assert "backbone.layer2.0.downsample.0.weight" not in theirs
    assert "backbone.stem.2.bn.running_var" in theirs
    assert not [key for key in theirs if key.startswith(("backbone.conv1", "backbone.bn1"))]
    ours = rl.interop.convert_state_dict(theirs, source="mmpretrain")
    assert list(ours) == list(rl.resnet50d().state_dict())


def test_mmpretrain_extra_entries_are_unexpected() -> None:
    # Not what their checkpoints hold (ClsDataPreprocessor's mean is non-persistent): any
    # entry outside backbone.* and head.fc.* keeps its name and is reported.
    theirs = rl.interop.convert_state_dict(rl.resnet18().state_dict(), target="mmpretrain")
    theirs["data_preprocessor.mean"] = torch.zeros(3)
    with pytest.raises(rl.interop.WeightsMismatchError, match=r"data_preprocessor\.mean"):
        rl.interop.load_weights(rl.resnet18(), theirs)


# --- torchvision and timm ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_to_torchvision_round_trip(name: str) -> None:
    """Our weights in torchvision's layout: its keys, order and shapes; back again unchanged."""
    reference = json.loads((FIXTURES / "torchvision_resnet.json").read_text())
    expected = [(key, shape) for key, shape in reference["models"][name]["state_dict"]]
    ours = filled(name).state_dict()
    theirs = rl.interop.to_torchvision(ours)
    assert [(key, list(t.shape)) for key, t in theirs.items()] == expected
    assert theirs == rl.interop.convert_state_dict(ours, target="torchvision")
    back = rl.create_model(name).double()
    rl.interop.load_weights(back, theirs, source="torchvision")
    assert_same_tensors(back.state_dict(), ours)
    torch.testing.assert_close(
        run(back, fixed_input()),
        torch.tensor(reference["models"][name]["logits"], dtype=torch.float64),
        rtol=0,
        atol=1e-4,
    )


def test_to_torchvision_rejects_layouts_it_cannot_express() -> None:
    state = rl.resnet18().state_dict()
    state["conv1.0.weight"] = state.pop("conv1.weight")  # a deep stem
    with pytest.raises(ValueError, match=r"torchvision's ResNet has no entries named conv1\.0"):
        rl.interop.to_torchvision(state)


def test_timm_layout_is_torchvision_layout() -> None:
    ours = rl.resnet50().state_dict()
    assert_same_tensors(rl.interop.convert_state_dict(ours, source="timm"), ours)
    assert_same_tensors(rl.interop.convert_state_dict(ours, target="timm"), ours)


# --- unwrapping, detection, arguments ------------------------------------------------------


def test_unwraps_wrappers_and_prefixes() -> None:
    ours = rl.resnet20().state_dict()
    nested = {"model": {f"module._orig_mod.{k}": v for k, v in ours.items()}, "epoch": 3}
    assert_same_tensors(rl.interop.convert_state_dict(nested, source="resnetlib"), ours)
    with pytest.raises(ValueError, match=r"not: epoch"):
        rl.interop.convert_state_dict({**ours, "epoch": 3})


@pytest.mark.parametrize("layout", ["resnetlib", "akamaster", "mmpretrain"])
def test_detects_layout(layout: str) -> None:
    theirs = rl.interop.convert_state_dict(
        rl.resnet20(shortcut="A_both").state_dict(), target=layout
    )
    weights = rl.interop.convert_state_dict({"state_dict": theirs})
    assert list(weights) == list(rl.resnet20().state_dict())
    assert rl.interop.load_weights(rl.resnet20(shortcut="A_both"), theirs).source == layout


def test_unknown_layout_names_the_allowed_ones() -> None:
    state = rl.resnet20().state_dict()
    with pytest.raises(ValueError, match=r"source must be one of auto, resnetlib, torchvision"):
        rl.interop.convert_state_dict(state, source="caffe")
    with pytest.raises(ValueError, match=r"target must be one of resnetlib, .*mmpretrain"):
        rl.interop.convert_state_dict(state, target="auto")


# --- mismatches ----------------------------------------------------------------------------


def test_mismatch_error_lists_missing_unexpected_and_misshapen_keys() -> None:
    weights = rl.resnet20().state_dict()
    del weights["layer1.0.conv1.weight"]
    weights["layer9.0.conv1.weight"] = torch.zeros(1)
    model = rl.cifar_resnet(20, widths=(16, 32, 80))  # layer3 is wider
    with pytest.raises(rl.interop.WeightsMismatchError) as info:
        rl.interop.load_weights(model, weights)
    error = info.value
    assert isinstance(error, ValueError)
    message = str(error)
    assert "missing from the weights (1): layer1.0.conv1.weight" in message
    assert "unexpected, not in the model (1): layer9.0.conv1.weight" in message
    assert "layer3.0.conv1.weight (model [80, 32, 3, 3], weights [64, 32, 3, 3])" in message
    assert error.missing == ["layer1.0.conv1.weight"]
    assert error.unexpected == ["layer9.0.conv1.weight"]
    assert rl.interop.ShapeMismatch("layer3.0.conv1.weight", (80, 32, 3, 3), (64, 32, 3, 3)) in (
        error.mismatched
    )
    assert all(m.key.startswith("layer3.") for m in error.mismatched)

    # strict=False loads what fits and reports the rest.
    report = rl.interop.load_weights(model, weights, strict=False)
    assert report.missing == ("layer1.0.conv1.weight",)
    assert report.unexpected == ("layer9.0.conv1.weight",)
    assert {m.key for m in report.mismatched} == {m.key for m in error.mismatched}
    assert report.reinitialized == ("fc.weight", "fc.bias")  # fc is [10, 80] now
    assert torch.equal(model.layer2[0].conv1.weight, weights["layer2.0.conv1.weight"])
    assert "layer3.0.conv1.weight" not in report.loaded


def test_mismatch_error_prints_keys_from_a_file_safely() -> None:
    weights = rl.resnet20().state_dict()
    weights["x" * 5_000] = torch.zeros(1)  # a key from a file: bounded, escaped in messages
    weights["red\x1b[31m\nline"] = torch.zeros(1)
    weights.update({f"extra{i}": torch.zeros(1) for i in range(20)})
    with pytest.raises(rl.interop.WeightsMismatchError) as info:
        rl.interop.load_weights(rl.resnet20(), weights)
    lines = str(info.value).splitlines()
    assert len(lines) == 3  # the title, the one listing, the advice
    assert "unexpected, not in the model (22): " in lines[1]
    assert "x" * 100 + "," in lines[1]
    assert "x" * 101 not in lines[1]
    assert "red\\x1b[31m\\x0aline" in lines[1]
    assert lines[1].endswith(", ... (10 more)")


# --- stems and heads -----------------------------------------------------------------------


def test_one_channel_stem_is_the_sum() -> None:
    """A gray image through the summed stem equals its 3-channel replica through the original."""
    source = filled("resnet18")
    gray = rl.resnet18(in_channels=1).double()
    report = rl.interop.load_weights(gray, source.state_dict())
    assert report.adapted == ("conv1.weight",)
    assert report.reinitialized == ()
    torch.testing.assert_close(
        gray.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True), rtol=0, atol=0
    )
    x = fixed_input()[:, :1]
    torch.testing.assert_close(run(gray, x), run(source, x.repeat(1, 3, 1, 1)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("copies", [2, 3])
def test_wider_stem_repeats_and_rescales(copies: int) -> None:
    """``in_channels = k * 3``: k copies of an image give the original model's output."""
    source = filled("resnet20")
    wide = rl.resnet20(in_channels=3 * copies).double()
    report = rl.interop.load_weights(wide, source.state_dict())
    assert report.adapted == ("conv1.weight",)
    x = cifar_input()
    torch.testing.assert_close(
        run(wide, x.repeat(1, copies, 1, 1)), run(source, x), rtol=0, atol=1e-10
    )


def test_adapt_input_channels_uneven() -> None:
    weight = torch.randn(8, 3, 3, 3, dtype=torch.float64)
    adapted = rl.interop.adapt_input_channels(weight, in_channels=4)
    assert adapted.shape == (8, 4, 3, 3)
    torch.testing.assert_close(adapted[:, :3], weight * 0.75, rtol=0, atol=0)
    torch.testing.assert_close(adapted[:, 3], weight[:, 0] * 0.75, rtol=0, atol=0)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1; got 0"):
        rl.interop.adapt_input_channels(weight, in_channels=0)


def test_stem_adaptation_can_be_refused() -> None:
    with pytest.raises(
        rl.interop.WeightsMismatchError, match=r"conv1\.weight \(model \[64, 1, 7, 7\]"
    ):
        rl.interop.load_weights(
            rl.resnet18(in_channels=1), rl.resnet18().state_dict(), adapt_stem=False
        )


def test_new_num_classes_gets_a_fresh_head() -> None:
    source = filled("resnet18")
    model = rl.resnet18(num_classes=7).double()
    head = model.fc.weight.clone()
    report = rl.interop.load_weights(model, source.state_dict())
    assert report.reinitialized == ("fc.weight", "fc.bias")
    assert "fc.weight" not in report.loaded
    assert torch.equal(model.fc.weight, head)  # kept as built
    assert model.fc.weight.shape == (7, 512)
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.state_dict()[key], value), key
    x = fixed_input()
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval().forward_features(x), source.forward_features(x), rtol=0, atol=0
        )
    with pytest.raises(rl.interop.WeightsMismatchError, match=r"fc\.weight \(model \[7, 512\]"):
        rl.interop.load_weights(rl.resnet18(num_classes=7), source.state_dict(), new_head=False)


def test_create_model_from_state_dict_file_with_overrides(tmp_path: Path) -> None:
    """A torchvision-layout file, another in_channels and num_classes: stem adapted, head new."""
    source = filled("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(rl.interop.to_torchvision(source.state_dict()), path)
    model = rl.create_model("resnet18", checkpoint_path=path, num_classes=5, in_channels=1)
    assert model.fc.out_features == 5
    assert torch.equal(
        model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True).to(torch.float32)
    )
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var.float())
    with pytest.raises(rl.interop.WeightsMismatchError, match="missing from the weights"):
        rl.create_model("resnet34", checkpoint_path=path)


def test_batch_norm_weights_load_into_a_frozen_batch_norm_model() -> None:
    trained = filled("resnet18")
    frozen = rl.resnet18(norm="frozen_batchnorm").double()
    report = rl.interop.load_weights(frozen, trained.state_dict())
    assert not report.reinitialized
    assert not report.unexpected
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(run(frozen, x), run(trained, x))


def test_classifier_weights_load_into_a_model_without_a_classifier(tmp_path: Path) -> None:
    trained = filled("resnet18")
    headless = rl.resnet18(num_classes=0).double()
    report = rl.interop.load_weights(headless, trained.state_dict())
    assert report.discarded == ("fc.weight", "fc.bias")
    assert report.reinitialized == ()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        pooled = trained.forward_head(trained.forward_features(x), pre_logits=True)
    torch.testing.assert_close(run(headless, x), pooled)
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    loaded = rl.create_model("resnet18", num_classes=0, checkpoint_path=path).double()
    torch.testing.assert_close(run(loaded, x), pooled)
    with pytest.raises(rl.interop.WeightsMismatchError, match=r"fc\.weight"):
        rl.interop.load_weights(rl.resnet18(num_classes=0), trained.state_dict(), new_head=False)


def test_a_user_block_with_a_shortcut_module_loads_its_own_weights_by_default() -> None:
    """``source="auto"`` took any ``.shortcut.`` key for akamaster's layout, so a user's block
    with a ``shortcut`` submodule could not load its own model's state dict."""
    from resnetlib.nn import BLOCKS, BasicBlock

    class GatedBasic(BasicBlock):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.shortcut = nn.Conv2d(self.out_channels, self.out_channels, 1)

    BLOCKS.register("shortcut_module_basic")(GatedBasic)
    try:
        saved = rl.resnet20(block="shortcut_module_basic")
        model = rl.resnet20(block="shortcut_module_basic")
        report = rl.interop.load_weights(model, saved.state_dict())
        assert report.source == "resnetlib"
        assert torch.equal(model.layer1[0].shortcut.weight, saved.layer1[0].shortcut.weight)
    finally:
        BLOCKS.unregister("shortcut_module_basic")
    # akamaster's own files are still told apart, with their head or without it
    projections = rl.resnet20(shortcut="B").state_dict()  # akamaster's option B: .shortcut.
    akamaster = rl.interop.convert_state_dict(projections, target="akamaster")
    assert detect_source(akamaster) == "akamaster"
    headless = {k: v for k, v in akamaster.items() if not k.startswith("linear.")}
    assert detect_source(headless) == "akamaster"
