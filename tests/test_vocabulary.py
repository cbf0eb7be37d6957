"""timm's and torchvision's keyword names mean here what they mean there (docs/architecture.md).

A user who moves from ``timm.create_model("resnet50", ...)`` or
``torchvision.models.resnet50(...)`` to resnetlib keeps their keywords; one that is
accepted here but means something else would build another network silently. Every name
both accept needs a check of its meaning below, or an entry in :data:`KNOWN_DIFFERENCES`
with the reason; a new collision fails :func:`test_every_shared_keyword_is_checked`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import resnetlib as rl

# timm: ResNet.__init__ (timm/models/resnet.py) and create_model's own arguments.
TIMM = frozenset(
    {
        "block", "layers", "num_classes", "in_chans", "output_stride", "global_pool",
        "cardinality", "base_width", "stem_width", "stem_type", "replace_stem_pool",
        "block_reduce_first", "down_kernel_size", "avg_down", "channels", "act_layer",
        "norm_layer", "aa_layer", "drop_rate", "drop_path_rate", "drop_block_rate",
        "zero_init_last", "block_args", "pretrained", "pretrained_cfg",
        "pretrained_cfg_overlay", "checkpoint_path", "cache_dir", "scriptable", "exportable",
        "no_jit", "features_only", "out_indices", "feature_cls", "device", "dtype",
    }
)  # fmt: skip
# torchvision: ResNet.__init__ and the resnet50(...) builders (torchvision/models/resnet.py).
TORCHVISION = frozenset(
    {
        "block", "layers", "num_classes", "zero_init_residual", "groups", "width_per_group",
        "replace_stride_with_dilation", "norm_layer", "weights", "progress",
    }
)  # fmt: skip

KNOWN_DIFFERENCES: dict[str, str] = {}
"""Shared names that mean something else here, each with what it means on both sides."""


def accepted_keywords() -> set[str]:
    """The keyword names resnetlib's model entry points take."""
    names = set(rl.ModelOverrides.__annotations__)
    for function in (rl.create_model, rl.resnet, rl.cifar_resnet):
        names |= {
            name
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD
        }
    return names


def _meta(name: str = "resnet50", **kwargs: object) -> rl.ResNet:
    return rl.create_model(name, device="meta", **kwargs)  # type: ignore[arg-type]


def _layers() -> None:  # blocks per stage
    model = rl.resnet((1, 2, 3))
    assert [len(model.get_submodule(name)) for name in model.stage_names] == [1, 2, 3]


def _block() -> None:  # the block type
    assert all(isinstance(b, rl.Bottleneck) for b in _meta("resnet18", block="bottleneck").blocks())


def _num_classes() -> None:
    assert _meta(num_classes=7).fc.out_features == 7


def _in_chans() -> None:
    assert _meta(in_chans=1).conv1.in_channels == 1


def _output_stride() -> None:  # total stride, the rest as dilation
    out = _meta(output_stride=8).forward_features(torch.zeros(1, 3, 224, 224, device="meta"))
    assert out.shape[-2:] == (28, 28)


def _global_pool() -> None:
    model = _meta(global_pool="max")
    assert model.global_pool == "max"
    assert isinstance(model.avgpool, torch.nn.AdaptiveMaxPool2d)


def _drop_rate() -> None:  # dropout before the classifier
    assert _meta(drop_rate=0.3).drop_rate == 0.3


def _drop_path_rate() -> None:  # stochastic depth, rising linearly to the rate at the last block
    rates = [
        b.drop_path.p if b.drop_path is not None else 0.0
        for b in _meta(drop_path_rate=0.1).blocks()
    ]
    assert rates == sorted(rates)
    assert rates[-1] == pytest.approx(0.1)


def _zero_init_residual() -> None:  # each block's last norm starts at zero
    assert all(not b.bn3.weight.any() for b in rl.resnet50(zero_init_residual=True).blocks())


def _features_only_out_indices_feature_cls() -> None:  # 0 is the stem
    backbone = _meta(features_only=True, out_indices=(1, 2), feature_cls="list")
    maps = backbone(torch.zeros(1, 3, 64, 64, device="meta"))
    assert [m.shape[1] for m in maps] == [256, 512]


def _device_dtype() -> None:
    parameter = next(_meta("resnet18", dtype=torch.float64).parameters())
    assert (parameter.device.type, parameter.dtype) == ("meta", torch.float64)


def _pretrained_cfg_overlay() -> None:  # changes the data configuration, checked as any other
    assert _meta(pretrained_cfg_overlay={"crop_pct": 0.5}).pretrained_cfg["crop_pct"] == 0.5
    with pytest.raises(ValueError, match="mean must hold 3 finite numbers"):
        _meta(pretrained_cfg_overlay={"mean": (1e300, 0.5, 0.5)})
    features = _meta(pretrained_cfg_overlay={"crop_pct": 0.5}, features_only=True)
    assert features.pretrained_cfg["crop_pct"] == 0.5


def _pretrained() -> None:  # the registered weights (a tag, or the default with True)
    parameters = inspect.signature(rl.create_model).parameters
    assert list(parameters)[:2] == ["name", "pretrained"]
    assert parameters["pretrained"].default is False


def _base_width() -> None:  # a bottleneck's width per group (torchvision's width_per_group)
    # timm's resnet50 with base_width=32 (timm.create_model("resnet50", base_width=32)).
    assert rl.count_parameters(_meta(base_width=32)) == 12_381_864
    assert _meta(base_width=32).layer1[0].conv2.out_channels == 32
    assert rl.count_parameters(_meta("wide_resnet50_2")) == rl.count_parameters(
        _meta(base_width=128)
    )


def _cardinality() -> None:  # a bottleneck's groups
    model = _meta(cardinality=32, base_width=4)  # timm's resnext50_32x4d
    assert model.layer1[0].conv2.groups == 32
    assert rl.count_parameters(model) == rl.count_parameters(_meta("resnext50_32x4d"))


def _checkpoint_path(tmp_path: Path) -> None:  # weights from a file
    model = rl.resnet20()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    loaded = rl.create_model("resnet20", checkpoint_path=tmp_path / "weights.pth")
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


CHECKS: dict[str, Callable[..., None]] = {
    "layers": _layers,
    "base_width": _base_width,
    "cardinality": _cardinality,
    "block": _block,
    "num_classes": _num_classes,
    "in_chans": _in_chans,
    "output_stride": _output_stride,
    "global_pool": _global_pool,
    "drop_rate": _drop_rate,
    "drop_path_rate": _drop_path_rate,
    "zero_init_residual": _zero_init_residual,
    "features_only": _features_only_out_indices_feature_cls,
    "out_indices": _features_only_out_indices_feature_cls,
    "feature_cls": _features_only_out_indices_feature_cls,
    "device": _device_dtype,
    "dtype": _device_dtype,
    "pretrained_cfg_overlay": _pretrained_cfg_overlay,
    "pretrained": _pretrained,
    "checkpoint_path": _checkpoint_path,
}


def test_every_shared_keyword_is_checked() -> None:
    shared = accepted_keywords() & (TIMM | TORCHVISION)
    unchecked = shared - set(CHECKS) - set(KNOWN_DIFFERENCES)
    assert not unchecked, f"check what these mean here against timm/torchvision: {unchecked}"
    assert not set(CHECKS) - shared, "a check for a keyword resnetlib no longer shares"


@pytest.mark.parametrize("keyword", sorted(CHECKS))
def test_a_shared_keyword_means_what_it_means_in_timm_and_torchvision(
    keyword: str, tmp_path: Path
) -> None:
    check = CHECKS[keyword]
    check(tmp_path) if "tmp_path" in inspect.signature(check).parameters else check()


def test_the_known_differences_are_still_different() -> None:
    """When one is resolved, its entry goes (and the glossary in docs/architecture.md changes)."""
    assert set(KNOWN_DIFFERENCES) <= accepted_keywords()


def test_base_width_on_a_block_without_groups_is_the_deprecated_base_channels() -> None:
    """timm refuses base_width != 64 on basic blocks; here it keeps its old meaning, warned."""
    with pytest.warns(FutureWarning, match="use base_channels") as direct:
        old = rl.cifar_resnet(20, base_width=32)
    with pytest.warns(FutureWarning, match="use base_channels") as through_create_model:
        rl.create_model("resnet20", base_width=32)
    for caught in (direct, through_create_model):  # each names the user's line
        assert [Path(w.filename).name for w in caught] == [Path(__file__).name]
    new = rl.cifar_resnet(20, base_channels=32)
    assert old.spec == new.spec
    assert [stage.width for stage in new.spec.stages] == [32, 64, 128]


def test_timm_keywords_and_block_options_must_agree() -> None:
    with pytest.raises(ValueError, match=r"base_width=8 and block_options\['width_per_group'\]=4"):
        _meta(base_width=8, block_options={"width_per_group": 4})
    # Over a spec's own option, the keyword wins, as an explicit block option does.
    assert _meta("resnext50_32x4d", base_width=8).spec.block_options["width_per_group"] == 8
    with pytest.raises(ValueError, match=r"cardinality=2\) passed it, timm's name"):
        _meta("resnet18", cardinality=2)


def test_depth_is_the_papers_weighted_layer_count_from_the_spec() -> None:
    for name, depth in (("resnet20", 20), ("resnet110", 110), ("resnet50", 50), ("resnet152", 152),
                        ("resnet50d", 50), ("preact_resnet164", 164), ("plain56", 56)):  # fmt: skip
        assert rl.core.paper_depth(rl.model_spec(name)) == depth
    assert _meta("resnet101").depth == 101
    spec = rl.model_spec("resnet56")
    assert spec.num_blocks == 27
    assert rl.cifar_spec(rl.core.paper_depth(spec)) == spec
    with pytest.warns(FutureWarning, match="use spec.num_blocks"):
        assert spec.depth == 27  # the old meaning, deprecated


def test_old_names_keep_working_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="OldStyle.layers is deprecated"):

        class OldStyle(rl.BasicBlock):
            layers = 3

    assert (OldStyle.weighted_layers, OldStyle.layers) == (3, 3)
    assert rl.Bottleneck.layers == rl.Bottleneck.weighted_layers == 3
    backbone = _meta("preact_resnet18", features_only=True)
    assert backbone.final_names == ("norm",)
    with pytest.warns(FutureWarning, match="use final_names"):
        assert backbone.tail_names == ("norm",)
    from resnetlib.interop import convert

    assert convert.LAYOUTS is convert.STATE_DICT_LAYOUTS


def test_model_spec_of_a_users_factory_is_the_spec_it_builds() -> None:
    rl.register_model("test_user_net", lambda **overrides: rl.cifar_resnet(32, **overrides))
    try:
        spec = rl.model_spec("test_user_net", num_classes=4)
        assert spec == rl.cifar_resnet(32, num_classes=4).spec
        assert rl.core.paper_depth(spec) == 32
    finally:
        rl.models.MODELS.unregister("test_user_net")
