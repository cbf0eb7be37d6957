"""timm's create_model arguments and model metadata, as a timm user passes and reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import resnetlib as rl

# What timm.data.resolve_data_config reads from model.pretrained_cfg (timm/data/config.py).
RESOLVED_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


@pytest.mark.parametrize(
    ("name", "size", "mean", "first_conv"),
    [
        ("resnet20", 32, (0.4914, 0.4822, 0.4465), "conv1"),
        ("preact_resnet110", 32, (0.4914, 0.4822, 0.4465), "conv1"),
        ("resnet18", 224, (0.485, 0.456, 0.406), "conv1"),
        ("resnet18d", 224, (0.485, 0.456, 0.406), "conv1.0"),
    ],
)
def test_pretrained_cfg_is_the_nets_own(
    name: str, size: int, mean: tuple[float, ...], first_conv: str
) -> None:
    model = rl.create_model(name)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    for key in RESOLVED_KEYS:
        assert key in cfg
    assert cfg["input_size"] == (3, size, size)
    assert cfg["mean"] == pytest.approx(mean, abs=1e-4)
    assert cfg["first_conv"] == first_conv
    assert isinstance(model.get_submodule(cfg["first_conv"]), torch.nn.Conv2d)
    assert model.get_submodule(cfg["classifier"]) is model.fc
    assert cfg["num_classes"] == model.num_classes
    features = model.forward_features(torch.randn(1, *cfg["input_size"]))
    assert tuple(features.shape[-2:]) == cfg["pool_size"]
    assert cfg["crop_pct"] == (1.0 if size == 32 else 0.875)


def test_num_classes_num_features_head_hidden_size() -> None:
    model = rl.create_model("resnet18", num_classes=5).eval()
    assert model.num_classes == 5
    assert model.num_features == model.head_hidden_size == 512
    model.reset_classifier(3)
    assert model.num_classes == 3
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_in_chans_is_in_channels() -> None:
    model = rl.create_model("resnet20", in_chans=1)
    assert model.conv1.in_channels == 1
    assert model.pretrained_cfg["input_size"] == (1, 32, 32)
    assert len(model.pretrained_cfg["mean"]) == 1
    with pytest.raises(ValueError, match="in_chans=1 and in_channels=3 disagree"):
        rl.create_model("resnet20", in_chans=1, in_channels=3)


def test_global_pool() -> None:
    x = torch.randn(2, 3, 32, 32)
    avg = rl.create_model("resnet20").eval()
    features = avg.forward_features(x)
    torch.testing.assert_close(
        avg.forward_head(features, pre_logits=True), features.mean(dim=(2, 3))
    )
    torch.manual_seed(0)
    pooled = rl.create_model("resnet20", global_pool="max").eval()
    features = pooled.forward_features(x)
    assert pooled.global_pool == "max"
    torch.testing.assert_close(
        pooled.forward_head(features, pre_logits=True), features.amax(dim=(2, 3))
    )
    unpooled = rl.create_model("resnet20", global_pool="", num_classes=0).eval()
    assert unpooled(x).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match="needs num_classes=0"):
        rl.create_model("resnet20", global_pool="")
    with pytest.raises(ValueError, match="global_pool must be one of"):
        rl.create_model("resnet20", global_pool="avgmaxc")
    unpooled.reset_classifier(10)  # a classifier needs pooled features: "avg" comes back
    assert unpooled.global_pool == "avg"
    assert unpooled(x).shape == (2, 10)


def test_drop_rate_is_dropout_before_fc() -> None:
    model = rl.create_model("resnet20", drop_rate=0.5)
    assert model.drop_rate == 0.5
    features = torch.rand(4, 64, 8, 8) + 0.1
    model.train()
    pooled = model.forward_head(features, pre_logits=True)
    plain = F.adaptive_avg_pool2d(features, 1).flatten(1)
    dropped = pooled == 0
    assert 0 < dropped.float().mean() < 1
    torch.testing.assert_close(pooled[~dropped], 2 * plain[~dropped])
    model.eval()
    torch.testing.assert_close(model.forward_head(features, pre_logits=True), plain)
    for bad in (1.0, -0.1, "0.1"):
        with pytest.raises(ValueError, match="drop_rate"):
            rl.create_model("resnet20", drop_rate=bad)  # type: ignore[arg-type]


def test_drop_path_rate_passes_through() -> None:
    model = rl.create_model("resnet20", drop_path_rate=0.1)
    assert model.spec.drop_path_rate == 0.1


def test_features_only_with_feature_cls() -> None:
    x = torch.randn(1, 3, 64, 64)
    for feature_cls in (None, "list", "getter", "hook", "fx"):
        backbone = rl.create_model(
            "resnet18", features_only=True, out_indices=(2, 4), feature_cls=feature_cls
        )
        maps = backbone(x)
        assert [m.shape[1] for m in maps] == [128, 512]
        assert backbone.pretrained_cfg["input_size"] == (3, 224, 224)
        assert backbone.default_cfg is backbone.pretrained_cfg
    with pytest.raises(ValueError, match="feature_cls must be one of"):
        rl.create_model("resnet18", features_only=True, feature_cls="dict")
    with pytest.raises(ValueError, match="feature_cls is for features_only=True"):
        rl.create_model("resnet18", feature_cls="list")


def test_pretrained_argument_is_positional_as_in_timm() -> None:
    model = rl.create_model("resnet20", False, num_classes=100)
    assert model.num_classes == 100
    with pytest.raises(ValueError, match="pretrained must be a bool or a tag"):
        rl.create_model("resnet20", 1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="pretrained must be a bool or a tag; got ''"):
        rl.create_model("resnet20", "")  # an empty tag names no weights


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax"])
def test_global_pool_keeps_a_loaded_classifier(pool: str, tmp_path: Path) -> None:
    """A pool of the same width keeps the classifier a checkpoint or folder loaded (it was
    replaced by a random one, silently, even for the default "avg")."""
    saved = rl.resnet20()
    rl.save(saved, tmp_path / "m.pt")
    rl.save_pretrained(saved, tmp_path / "folder")
    for model in (
        rl.create_model("resnet20", checkpoint_path=tmp_path / "m.pt", global_pool=pool),
        rl.create_model(f"local-dir:{tmp_path / 'folder'}", global_pool=pool),
    ):
        assert model.global_pool == pool
        assert torch.equal(model.fc.weight, saved.fc.weight)
        assert torch.equal(model.fc.bias, saved.fc.bias)


def test_a_pool_that_changes_the_classifiers_width_needs_a_new_head(tmp_path: Path) -> None:
    rl.save(rl.resnet20(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="gives the classifier 128 features, and the loaded one"):
        rl.create_model("resnet20", checkpoint_path=tmp_path / "m.pt", global_pool="catavgmax")
    model = rl.create_model(
        "resnet20", checkpoint_path=tmp_path / "m.pt", global_pool="catavgmax", num_classes=10
    )
    assert model.fc.in_features == 128  # asked for: a new classifier
    assert rl.create_model("resnet20", global_pool="catavgmax").fc.in_features == 128
