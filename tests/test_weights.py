"""The pretrained weights registry: every entry well formed and loadable into its model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.interop.convert import STATE_DICT_LAYOUTS
from resnetlib.models import weights as w

HEX = re.compile(r"[0-9a-f]+")
CLASSES = {"imagenet-1k": 1000, "cifar10": 10, "cifar100": 100}
CFG_KEYS = {
    "num_classes",
    "input_size",
    "pool_size",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "mean",
    "std",
    "first_conv",
    "classifier",
}


def representative(model: str) -> str:
    """The smallest registered model with ``model``'s stem and strides (building the large
    ones takes seconds; the configuration depends on the stem, the strides and the head)."""
    if model in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"):
        return "resnet20"
    return "resnet18d" if re.fullmatch(r"resnet\d+d", model) else "resnet18"


@pytest.mark.parametrize("entry", w.WEIGHTS, ids=lambda e: e.name)
def test_entry_is_well_formed(entry: w.PretrainedWeights) -> None:
    assert entry.model in rl.list_models()
    assert entry.source in w.SOURCES
    assert entry.source in STATE_DICT_LAYOUTS
    assert CLASSES[entry.classes] == entry.num_classes == entry.config["num_classes"]
    assert 0 < entry.top1 < 100
    assert entry.license
    if entry.hf_hub_id is not None:
        assert entry.url is None
        assert entry.hf_hub_id == f"timm/{entry.name}"
        assert entry.filename == "model.safetensors"
    else:
        assert entry.url is not None
        url = urlparse(entry.url)
        assert url.scheme == "https"
        assert url.netloc
        # The published hash is the SHA-256 prefix in the file name.
        assert entry.hash_prefix is not None
        assert len(entry.hash_prefix) >= 8
        assert HEX.fullmatch(entry.hash_prefix)
        assert f"-{entry.hash_prefix}." in url.path.rsplit("/", 1)[-1]
    if entry.sha256 is not None:
        assert len(entry.sha256) == 64
        assert HEX.fullmatch(entry.sha256)
    cfg = entry.config
    assert set(cfg) == CFG_KEYS
    channels, height, width = cfg["input_size"]
    assert channels == 3
    assert height == width
    assert cfg["interpolation"] in ("bilinear", "bicubic")
    assert 0.5 < cfg["crop_pct"] <= 1.0
    for key in ("mean", "std"):
        assert len(cfg[key]) == 3
        assert all(0 < v < 1 for v in cfg[key])
    assert entry.pretrained_cfg["tag"] == entry.tag
    assert w.get_weights(entry.model, entry.tag) is entry
    assert w.get_weights(entry.name) is entry


# One build per (stem and strides, model arguments the weights need).
_BUILDS = sorted({(representative(e.model), tuple(sorted(e.overrides.items()))) for e in w.WEIGHTS})


@pytest.mark.parametrize("build", _BUILDS, ids=lambda b: b[0] + "".join(f"-{v}" for _, v in b[1]))
def test_config_describes_the_model(build: tuple[str, tuple[tuple[str, Any], ...]]) -> None:
    model_name, overrides = build
    model = rl.create_model(model_name, **dict(overrides)).to("meta")
    modules = dict(model.named_modules())
    sizes: dict[tuple[int, ...], tuple[int, ...]] = {}
    for entry in w.WEIGHTS:
        if (representative(entry.model), tuple(sorted(entry.overrides.items()))) != build:
            continue
        cfg = entry.config
        assert isinstance(modules[cfg["first_conv"]], nn.Conv2d)
        assert cfg["first_conv"] == model.pretrained_cfg["first_conv"]
        assert isinstance(modules[cfg["classifier"]], nn.Linear)
        if "num_classes" in entry.overrides:
            assert modules[cfg["classifier"]].out_features == entry.num_classes
        size = cfg["input_size"]
        if size not in sizes:
            features = model.forward_features(torch.empty(1, *size, device="meta"))
            sizes[size] = tuple(features.shape[-2:])
        assert sizes[size] == cfg["pool_size"]


def test_hub_checksums_name_registered_hub_files() -> None:
    hub = {e.name: e for e in w.WEIGHTS if e.hf_hub_id is not None}
    assert set(w._HUB_SHA256) <= set(hub)
    assert len(w._HUB_SHA256) >= 20
    for name, digest in w._HUB_SHA256.items():
        assert hub[name].sha256 == digest


def test_every_source_is_registered() -> None:
    counts = {source: 0 for source in w.SOURCES}
    for entry in w.WEIGHTS:
        counts[entry.source] += 1
    # torchvision: 9 models, V2 for all but ResNet-18/34; akamaster: 6; mmpretrain: 21.
    assert counts["torchvision"] == 16
    assert counts["akamaster"] == 6
    assert counts["mmpretrain"] == 21
    assert counts["timm"] >= 14


def test_defaults_follow_timm_then_the_only_source() -> None:
    assert w.default_weights("resnet50").name == "resnet50.a1_in1k"
    assert w.default_weights("resnet50d").name == "resnet50d.ra2_in1k"
    assert w.default_weights("resnet18").name == "resnet18.a1_in1k"
    # timm's default for these is torchvision's V1 file, registered as the torchvision entry.
    assert w.default_weights("resnext101_32x8d").name == "resnext101_32x8d.tv_in1k"
    assert w.default_weights("resnext101_32x8d").source == "torchvision"
    for depth in (20, 32, 44, 56, 110, 1202):
        assert w.default_weights(f"resnet{depth}").source == "akamaster"
    with pytest.raises(KeyError, match="no pretrained weights for 'plain20'"):
        w.default_weights("plain20")


def test_torchvision_names_are_aliases() -> None:
    v2 = w.get_weights("resnet50", "IMAGENET1K_V2")
    assert v2 is w.get_weights("resnet50.tv2_in1k")
    assert v2.url is not None
    assert v2.url.endswith("resnet50-11ad3fa6.pth")
    assert v2.config["crop_pct"] == pytest.approx(224 / 232)
    assert w.get_weights("resnet18", "IMAGENET1K_V1").config["crop_pct"] == 0.875


def test_unknown_tag_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"resnet20\.nope.*akamaster_cifar10"):
        w.get_weights("resnet20", "nope")


def test_list_pretrained_filters_and_puts_the_default_first() -> None:
    names = rl.list_pretrained("resnet50.*")
    assert names[0] == "resnet50.a1_in1k"
    assert "resnet50.tv2_in1k" in names
    assert all(name.startswith("resnet50.") for name in names)
    assert rl.list_pretrained("*cifar10") == sorted(
        rl.list_pretrained("*cifar10"), key=lambda n: n.split(".")[0]
    )
    assert len(rl.list_pretrained()) == len(w.WEIGHTS)
    assert rl.list_pretrained("nothing*") == []
    # several patterns, as list_models takes them
    both = rl.list_pretrained(["resnet20*", "resnet56*"])
    assert both == rl.list_pretrained("resnet20*") + rl.list_pretrained("resnet56*")
    with pytest.raises(ValueError, match="a weights name pattern must be a str"):
        rl.list_pretrained([5])  # type: ignore[list-item]


@pytest.mark.parametrize("pattern", [5, None, b"x"])
def test_list_pretrained_and_list_models_refuse_a_pattern_of_another_type(pattern: Any) -> None:
    """ValueError naming the value (not TypeError, not bytes read as the number 120)."""
    shown = re.escape(repr(pattern))
    for listing, what in ((rl.list_pretrained, "weights"), (rl.list_models, "model")):
        with pytest.raises(
            ValueError, match=rf"^a {what} name pattern must be a str .*; got {shown}$"
        ):
            listing(pattern)


def test_list_models_takes_any_iterable_of_patterns() -> None:
    """A set or a generator of patterns listed models before patterns were checked."""
    assert (
        rl.list_models({"resnet50*"}) == rl.list_models(["resnet50*"]) == ["resnet50", "resnet50d"]
    )
    assert rl.list_models(p for p in ("resnet18",)) == ["resnet18"]


def test_list_pretrained_matches_a_tags_alias() -> None:
    """torchvision's enum names, which create_model and get_weights take, list the tag."""
    assert rl.list_pretrained("resnet18.IMAGENET1K_V1") == ["resnet18.tv_in1k"]
    assert rl.create_model("resnet18.IMAGENET1K_V1").pretrained_cfg["tag"] == "tv_in1k"
    assert "resnet50.tv2_in1k" in rl.list_pretrained("*.IMAGENET1K_V2")
    assert rl.list_pretrained(["resnet18.IMAGENET1K_V1", "resnet18.tv*"]) == ["resnet18.tv_in1k"]


def test_cifar_weights_carry_their_model_arguments() -> None:
    akamaster = w.get_weights("resnet56")
    assert dict(akamaster.overrides) == {"shortcut": "A_both"}
    assert akamaster.config["input_size"] == (3, 32, 32)
    # akamaster's trainer.py normalizes CIFAR with ImageNet's statistics.
    assert akamaster.config["mean"] == (0.485, 0.456, 0.406)
    mm = w.get_weights("resnet18.mm_cifar10")
    assert dict(mm.overrides) == {"stem": "cifar", "num_classes": 10}
    assert mm.config["mean"] == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4)


def test_docs_tables_are_generated_from_the_registry() -> None:
    root = Path(__file__).resolve().parent.parent
    script = root / "scripts" / "make_weights_docs.py"
    spec = importlib.util.spec_from_file_location("make_weights_docs", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stale = "is stale: run python scripts/make_weights_docs.py"
    assert (root / "docs" / "pretrained.md").read_text() == module.render_page(), stale
    using = (root / "docs" / "using-resnetlib.md").read_text()
    assert module.render_summary() in using, stale
    assert using.count("resnetlib.models.weights") >= 1
