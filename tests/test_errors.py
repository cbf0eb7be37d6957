"""Bad input gets a ValueError/KeyError naming the field, the value and what is allowed."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import resnetlib as rl


@pytest.mark.parametrize("depth", [21, 19, 2, 0, -4, 15])
def test_cifar_depth_must_be_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match=r"6n\+2 \(20, 32, 44, 56, 110, \.\.\.\)") as info:
        rl.cifar_resnet(depth)
    assert f"got {depth}" in str(info.value)


def test_cifar_depth_rule_follows_the_block() -> None:
    with pytest.raises(ValueError, match=r"9n\+2"):
        rl.cifar_resnet(30, block="bottleneck")
    assert len(rl.cifar_resnet(29, block="bottleneck").layer1) == 3


@pytest.mark.parametrize(
    ("kind", "call", "close"),
    [
        ("shortcut", lambda: rl.resnet18(shortcut="b"), "'B'"),
        ("block", lambda: rl.resnet18(block="bottlenek"), "'bottleneck'"),
        ("stem", lambda: rl.resnet18(stem="imagenett"), "'imagenet'"),
        ("model", lambda: rl.create_model("resnet5O"), "'resnet50'"),
    ],
)
def test_unknown_names_list_known_ones_and_close_matches(kind: str, call: Any, close: str) -> None:
    with pytest.raises(KeyError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"unknown {kind} ")
    assert "known: " in message
    assert close in message.split("did you mean ", 1)[1]


def test_unknown_name_without_close_match_lists_all() -> None:
    with pytest.raises(rl.registry.UnknownNameError) as info:
        rl.nn.SHORTCUTS.get("zzzzzz")
    known = rl.nn.SHORTCUTS.names()
    assert {"A", "A_both", "B", "C", "D", "none", "preact_B"} <= set(known)
    assert str(info.value) == f"unknown shortcut 'zzzzzz'; known: {', '.join(known)}"


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"num_classes": -1}, r"num_classes must be an int >= 0; got -1"),
        ({"in_channels": 0}, r"in_channels must be an int >= 1; got 0"),
        ({"num_classes": 2.5}, r"num_classes must be an int >= 0; got 2.5"),
        ({"num_classes": True}, r"num_classes must be an int >= 0; got True"),
        ({"widths": (16, 0, 64)}, r"widths\[1\] must be an int >= 1; got 0"),
        ({"widths": (16, 32)}, r"widths needs one entry per stage \(3\); got 2"),
        ({"base_channels": 0}, r"base_channels must be an int >= 1; got 0"),
        ({"base_channels": 8, "widths": (8, 16, 32)}, r"base_channels or widths, not both"),
        ({"stride_in_1x1": "yes"}, r"stride_in_1x1 must be a bool"),
    ],
)
def test_bad_factory_values(overrides: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        rl.resnet20(**overrides)


@pytest.mark.parametrize(
    ("layers", "pattern"),
    [
        ((3, 0, 6), r"layers\[1\] must be an int >= 1; got 0"),
        ((), r"layers must be a non-empty sequence"),
        ("3463", r"layers must be a non-empty sequence"),
    ],
)
def test_bad_layers(layers: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        rl.resnet(layers)


def test_unexpected_override_is_a_type_error_listing_the_allowed_ones() -> None:
    with pytest.raises(
        TypeError,
        match=r"resnet18\(\) has unknown keyword arguments \['depth'\]; allowed: \['act', ",
    ):
        rl.resnet18(depth=18)  # type: ignore[call-arg]


def test_option_a_cannot_shrink_channels() -> None:
    with pytest.raises(
        ValueError, match=r"layer2\.0: shortcut 'A'.*cannot reduce channels.*64.*32"
    ):
        rl.resnet((1, 1), shortcut="A", widths=(64, 32))
    with pytest.raises(ValueError, match="cannot reduce channels"):
        rl.nn.ZeroPadShortcut(8, 4)


def test_block_option_the_block_does_not_take() -> None:
    with pytest.raises(
        ValueError, match=r"block 'basic' \(BasicBlock\) does not accept option 'stride_in_1x1'"
    ):
        rl.resnet18(stride_in_1x1=True)
    with pytest.raises(ValueError, match=r"block_options\['stride'\] is set by build\(\)"):
        rl.build(rl.ResNetSpec(stages=(rl.StageSpec(1, 4),), block_options={"stride": 2}))


def test_zero_init_needs_a_shortcut() -> None:
    with pytest.raises(
        ValueError, match=r"zero_init_residual=True needs a shortcut; with shortcut='none'"
    ):
        rl.plain20(zero_init_residual=True)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"stages": ()}, r"ResNetSpec.stages must be a non-empty tuple"),
        (
            {"stages": ({"num_blocks": 1, "width": 4},)},
            r"ResNetSpec.stages\[0\] must be a StageSpec",
        ),
        ({"stages": (rl.StageSpec(1, 4),), "block": ""}, r"ResNetSpec.block must be a non-empty"),
        (
            {"stages": (rl.StageSpec(1, 4),), "zero_init_residual": 1},
            r"zero_init_residual must be a bool",
        ),
        (
            {"stages": (rl.StageSpec(1, 4),), "block_options": {"x": [1]}},
            r"block_options\['x'\] must be a JSON scalar",
        ),
    ],
)
def test_bad_spec_fields(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        rl.ResNetSpec(**kwargs)


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("num_blocks", 0, r"StageSpec.num_blocks must be an int >= 1; got 0"),
        ("width", -1, r"StageSpec.width must be an int >= 1; got -1"),
        ("stride", "2", r"StageSpec.stride must be an int >= 1; got '2'"),
    ],
)
def test_bad_stage_fields(field: str, value: Any, pattern: str) -> None:
    values: dict[str, Any] = {"num_blocks": 1, "width": 4, "stride": 1, field: value}
    with pytest.raises(ValueError, match=pattern):
        rl.StageSpec(**values)


def good_dict() -> dict[str, Any]:
    return rl.cifar_spec(20).to_dict()


def mutations() -> Iterator[tuple[str, Any, str]]:
    yield (
        "unknown top-level key",
        lambda d: d.update(depth=20),
        r"ResNetSpec has unknown keys \['depth'\]",
    )
    yield "missing stages", lambda d: d.pop("stages"), r"ResNetSpec is missing keys \['stages'\]"
    yield (
        "wrong type",
        lambda d: d.update(num_classes="10"),
        r"num_classes must be an int >= 0; got '10'",
    )
    yield (
        "stages not a list",
        lambda d: d.update(stages=3),
        r"stages must be a list of stage dicts; got int",
    )
    yield (
        "stage not a dict",
        lambda d: d["stages"].__setitem__(0, [3, 16, 1]),
        r"StageSpec must be a dict; got list",
    )
    yield (
        "unknown stage key",
        lambda d: d["stages"][0].update(blocks=3),
        r"StageSpec has unknown keys \['blocks'\]",
    )
    yield (
        "missing stage key",
        lambda d: d["stages"][0].pop("width"),
        r"StageSpec is missing keys \['width'\]",
    )
    yield (
        "unknown stem key",
        lambda d: d["stem"].update(pool=True),
        r"StemSpec has unknown keys \['pool'\]",
    )
    yield "not a dict at all", lambda d: d.clear() or d.update(x=1), r"unknown keys \['x'\]"


@pytest.mark.parametrize(
    ("what", "mutate", "pattern"), list(mutations()), ids=[m[0] for m in mutations()]
)
def test_malformed_dicts(what: str, mutate: Any, pattern: str) -> None:
    data = json.loads(json.dumps(good_dict()))
    mutate(data)
    with pytest.raises(ValueError, match=pattern):
        rl.ResNetSpec.from_dict(data)


_SAVED_BY_0_1 = {
    "ResNetSpec": [
        "block",
        "shortcut",
        "stem",
        "in_channels",
        "num_classes",
        "zero_init_residual",
        "block_options",
    ],
    "StageSpec": ["num_blocks", "stride"],
    "StemSpec": ["type", "out_channels"],
}


@pytest.mark.parametrize(
    ("owner", "key"), [(owner, key) for owner, keys in _SAVED_BY_0_1.items() for key in keys]
)
def test_from_dict_refuses_a_dropped_key_rather_than_defaulting_it(owner: str, key: str) -> None:
    """A ResNet-50 dict without "block" must not build a basic-block net: every key that
    to_dict writes (and 0.1.0 wrote) is required."""
    data = json.loads(json.dumps(rl.model_spec("resnet50").to_dict()))
    where = {"ResNetSpec": data, "StageSpec": data["stages"][1], "StemSpec": data["stem"]}[owner]
    del where[key]
    with pytest.raises(ValueError, match=rf"{owner} is missing keys \['{key}'\]"):
        rl.ResNetSpec.from_dict(data)


def test_from_dict_reads_a_0_1_spec_without_the_later_fields() -> None:
    """Files from 0.1.0 lack norm, act, drop_path_rate and dilation; they rebuild as 0.1.0 built."""
    spec = rl.model_spec("resnet50")
    data = json.loads(spec.to_json())
    for key in ("norm", "act", "drop_path_rate"):
        del data[key]
    for stage in data["stages"]:
        del stage["dilation"]
    assert rl.ResNetSpec.from_dict(data) == spec


def test_from_dict_rejects_a_non_dict() -> None:
    with pytest.raises(ValueError, match="ResNetSpec must be a dict; got list"):
        rl.ResNetSpec.from_dict([1, 2])  # type: ignore[arg-type]


def test_create_model_and_list_models_name_a_name_of_the_wrong_type() -> None:
    for name in (123, None, ["resnet20"]):
        with pytest.raises(ValueError, match=r"the model name must be a str such as 'resnet50'"):
            rl.create_model(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"a model name pattern must be a str .*; got 1"):
        rl.list_models(["resnet2*", 1])  # type: ignore[list-item]
    both = rl.list_models(["resnet18", "plain2*"])  # several patterns, as timm takes them
    assert both == sorted({"resnet18", *rl.list_models("plain2*")}, key=rl.registry.natural_key)
    assert both == ["plain20", "resnet18"]


def test_a_model_factory_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"model 'not_callable' must be a callable returning"):
        rl.register_model("not_callable", 5)  # type: ignore[arg-type]
    assert "not_callable" not in rl.list_models()


def test_a_spec_block_options_cannot_change_after_validation() -> None:
    """The spec is frozen: its block options too, so a model's spec keeps describing it;
    copies, pickles and hashes still work."""
    spec = rl.resnext50_32x4d().spec
    with pytest.raises(TypeError, match="does not support item assignment"):
        spec.block_options["groups"] = [1]  # type: ignore[index]
    assert spec.block_options == {"groups": 32, "width_per_group": 4}
    assert copy.deepcopy(spec) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(copy.copy(spec)) == hash(spec)
    assert spec.to_dict()["block_options"] == {"groups": 32, "width_per_group": 4}
    assert type(spec.to_dict()["block_options"]) is dict


class _NoNormBlock(rl.ResidualBlock):
    """A block written without the ``norm_layer`` keyword that build() passes every block."""

    expansion = 1
    weighted_layers = 2

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: torch.nn.Module | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=residual,
        )
        self.conv = torch.nn.Conv2d(in_channels, width, 3, stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_shortcut(self.conv(x), x)

    def zero_init_last(self) -> None:
        pass


def test_a_block_missing_a_build_keyword_is_named_at_build() -> None:
    rl.register_block("doc_no_norm", _NoNormBlock)
    try:
        with pytest.raises(
            ValueError,
            match=r"block 'doc_no_norm' \(_NoNormBlock\) cannot be built with the keyword "
            r"arguments build\(\) passes .*unexpected keyword argument 'norm_layer'",
        ):
            rl.cifar_resnet(20, block="doc_no_norm")
    finally:
        rl.nn.BLOCKS.unregister("doc_no_norm")


class _BuggyBlock(rl.BasicBlock):
    """Takes every keyword build() passes; its own code raises a TypeError."""

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        len(arguments["width"])


class _BuggyStem(rl.nn.CifarStem):
    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        len(arguments["in_channels"])


class _NoNormStem(rl.nn.CifarStem):
    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels)


def test_a_type_error_inside_a_constructor_is_not_called_a_keyword_problem() -> None:
    """build() said a block whose __init__ has a bug (len of an int) could not take the
    keyword arguments it passes; only a signature that does not bind them is that."""
    rl.register_block("doc_buggy", _BuggyBlock)
    rl.register_stem("doc_buggy_stem", _BuggyStem)
    rl.register_stem("doc_no_norm_stem", _NoNormStem)
    try:
        with pytest.raises(
            TypeError,
            match=r"^block 'doc_buggy' \(_BuggyBlock\) raised TypeError while being "
            r"built: object of type 'int' has no len\(\)$",
        ) as raised:
            rl.cifar_resnet(20, block="doc_buggy")
        assert isinstance(raised.value.__cause__, TypeError)
        with pytest.raises(TypeError, match=r"^stem 'doc_buggy_stem' \(_BuggyStem\) raised "):
            rl.cifar_resnet(20, stem="doc_buggy_stem")
        with pytest.raises(
            ValueError,
            match=r"^stem 'doc_no_norm_stem' \(_NoNormStem\) cannot be built with the keyword "
            r"arguments build\(\) passes .*unexpected keyword argument 'norm_layer'",
        ):
            rl.cifar_resnet(20, stem="doc_no_norm_stem")
    finally:
        rl.nn.BLOCKS.unregister("doc_buggy")
        rl.nn.STEMS.unregister("doc_buggy_stem")
        rl.nn.STEMS.unregister("doc_no_norm_stem")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_block_option_json_cannot_hold_is_refused(value: float) -> None:
    """to_json would write NaN, which from_json (rightly) refuses: the round trip broke."""
    with pytest.raises(ValueError, match=r"block_options\['scale'\] must be finite"):
        dataclasses.replace(rl.cifar_spec(20), block_options={"scale": value})


def test_features_only_must_be_a_bool() -> None:
    for value in ("no", 1, None):
        with pytest.raises(ValueError, match=r"features_only must be True or False"):
            rl.create_model("resnet20", features_only=value)  # type: ignore[call-overload]


def test_a_factory_returning_another_module_is_named(tmp_path: Path) -> None:
    def linear(**overrides: object) -> torch.nn.Module:
        return torch.nn.Linear(2, 2)

    rl.register_model("doc_returns_linear", linear)
    try:
        with pytest.raises(TypeError, match=r"factory 'doc_returns_linear' returned a Linear"):
            rl.create_model("doc_returns_linear")
    finally:
        rl.models.MODELS.unregister("doc_returns_linear")
    with torch.device("meta"):
        shapes_only = rl.resnet20()
    with pytest.raises(ValueError, match=r"save\(\) cannot store a model on the meta device"):
        rl.save(shapes_only, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("made", [None, torch.nn.Sequential(torch.nn.Linear(2, 2))])
def test_every_call_of_a_factory_refuses_what_is_not_a_resnet(
    made: torch.nn.Module | None, tmp_path: Path
) -> None:
    """model_spec (so recipe_for, train --data PATH) and create_model with a checkpoint read
    `.spec` from what the factory returned: an AttributeError, not the one-line TypeError."""
    from resnetlib.train.recipe import recipe_for

    rl.save(rl.resnet20(), tmp_path / "m.pt")
    got = "None" if made is None else "a Sequential"
    rl.register_model("doc_not_resnet", lambda **overrides: made)
    try:
        calls = [
            lambda: rl.model_spec("doc_not_resnet"),
            lambda: recipe_for("doc_not_resnet"),
            lambda: rl.create_model("doc_not_resnet"),
            lambda: rl.create_model("doc_not_resnet", checkpoint_path=tmp_path / "m.pt"),
        ]
        for call in calls:
            with pytest.raises(TypeError, match=rf"factory 'doc_not_resnet' returned {got};"):
                call()
    finally:
        rl.models.MODELS.unregister("doc_not_resnet")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("my.model", "must not contain '.' .*pretrained tag"),
        ("resnet20.v2", "must not contain '.'"),
        ("tiny.pt", "must not contain '.'"),
        ("x/y", "must not contain '/' .*path separator"),
        ("../etc", "must not contain '.'"),
        ("a\\b", "must not contain .*path separator"),
        ("a b", "must not hold whitespace"),
        ("a\nb", "must not hold whitespace"),
        ("local-dir:mine", "must not contain ':' .*local-dir: or hf-hub:"),
        ("hf-hub:org/name", "must not contain '/'"),
    ],
)
def test_registries_refuse_names_no_lookup_can_find(name: str, why: str) -> None:
    """create_model("my.model") looked up 'my'; "tiny.pt" read as a file in the CLI; yet
    register_model took them, and list_models listed them."""
    for register in (rl.register_model, rl.register_block, rl.register_stem):
        with pytest.raises(ValueError, match=rf"^a (model|block|stem) name {why}.*; got "):
            register(name, rl.BasicBlock)  # type: ignore[arg-type]
    assert name not in rl.list_models()
    assert name not in rl.nn.BLOCKS


def test_registries_reject_duplicates_and_wrong_types() -> None:
    with pytest.raises(ValueError, match="block 'basic' is already registered"):
        rl.register_block("basic", rl.BasicBlock)
    with pytest.raises(TypeError, match="must be a ResidualBlock subclass"):
        rl.register_block("not_a_block", torch.nn.Conv2d)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="leaves abstract methods"):
        rl.register_block("abstract", rl.ResidualBlock)
    with pytest.raises(TypeError, match="must be a ShortcutStrategy subclass"):
        rl.register_shortcut("bad", rl.nn.ZeroPadShortcut)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a Stem subclass"):
        rl.register_stem("bad", torch.nn.Sequential)  # type: ignore[arg-type]
    assert "not_a_block" not in rl.nn.BLOCKS
    assert "bad" not in rl.nn.SHORTCUTS


def test_a_failed_build_leaves_nothing_registered_or_half_built() -> None:
    before = (len(rl.nn.BLOCKS), len(rl.nn.SHORTCUTS), len(rl.nn.STEMS), len(rl.models.MODELS))
    with pytest.raises(ValueError, match="cannot reduce channels"):
        rl.resnet((1, 1), shortcut="A", widths=(64, 32))
    assert (
        len(rl.nn.BLOCKS),
        len(rl.nn.SHORTCUTS),
        len(rl.nn.STEMS),
        len(rl.models.MODELS),
    ) == before


def test_resnet_refuses_stages_its_spec_does_not_describe() -> None:
    model = rl.resnet20()
    stages = [model.layer1, model.layer2]
    stem = rl.nn.CifarStem(in_channels=3, out_channels=16)
    with pytest.raises(ValueError, match=r"got 2 stages but its spec describes 3"):
        rl.ResNet(stem=stem, stages=stages, num_classes=10, spec=model.spec)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: rl.interop.load_weights(rl.resnet20(), {1: torch.zeros(1)}), ValueError, "keys"),
        (lambda: rl.interop.adapt_input_channels([[1]], in_channels=1), ValueError, "got list"),
        (
            lambda: rl.interop.adapt_input_channels(torch.zeros(2, 3, 3, 3), in_channels=10**9),
            ValueError,
            "size limit",
        ),
        (lambda: rl.create_model("resnet20", dtype="float64"), TypeError, "dtype must be a"),
        (lambda: rl.analysis.summary(rl.resnet20(), title=5), TypeError, "title must be text"),
        (lambda: rl.interop.param_groups(rl.resnet20(), lr=math.inf), ValueError, "lr must"),
        (
            lambda: rl.interop.param_groups(rl.resnet20(), lr=0.1, weight_decay=math.nan),
            ValueError,
            "weight_decay must",
        ),
        (lambda: rl.interop.param_groups(rl.resnet20(), lr=1, decay=math.inf), ValueError, "decay"),
        (
            lambda: rl.build(
                dataclasses.replace(
                    rl.model_spec("resnet50"), block_options={"stride_in_1x1": "no"}
                )
            ),
            ValueError,
            "stride_in_1x1 must be true or false; got 'no'",
        ),
    ],
)
def test_invalid_arguments_get_a_clear_error(call: Any, error: type, message: str) -> None:
    """Each ended deep inside torch or Python (AttributeError, a 576 GB allocation), or was
    accepted: a truthy "no" moved a bottleneck's stride, an infinite lr trained."""
    with pytest.raises(error, match=message):
        call()


def test_specs_equal_exactly_when_their_json_does() -> None:
    """Block options True and 1 were equal specs with different hashes (and files)."""
    stages = (rl.StageSpec(2, 16),)
    true, one = ({"x": value} for value in (True, 1))
    a, b = (
        rl.ResNetSpec(stages=stages, block_options=true),
        rl.ResNetSpec(stages=stages, block_options=one),
    )
    assert a != b
    assert len({a, b, rl.ResNetSpec(stages=stages, block_options=true)}) == 2
    assert a == copy.deepcopy(a)
    assert hash(a) == hash(copy.deepcopy(a))


def test_feature_info_takes_what_timms_takes() -> None:
    """``channels([])`` was every stage's channels (timm: none); a numpy index failed."""
    import numpy as np

    info = rl.resnet20().feature_info
    assert info.channels([]) == []
    assert info.channels(np.int64(1)) == info.channels(1) == 16
    assert info.channels() == [16, 16, 32, 64]
    assert info.get_dicts(idx=[]) == []
    assert info.get_dicts(("num_chs",), np.int64(3)) == {"num_chs": 64}
