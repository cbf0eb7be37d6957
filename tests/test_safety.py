"""Hostile input: absurd sizes are refused before anything is allocated."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.spec import MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_STAGES, MAX_STRIDE
from resnetlib.zoo import cifar_spec, imagenet_spec

HUGE = 10**9

# --- absurd sizes through every public entry point ------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rl.StageSpec(num_blocks=HUGE, width=16), "StageSpec.num_blocks must be <= 10000"),
        (lambda: rl.StageSpec(num_blocks=1, width=HUGE), "StageSpec.width must be <= 65536"),
        (lambda: rl.StageSpec(1, 16, stride=HUGE), "StageSpec.stride must be <= 1024"),
        (lambda: rl.StageSpec(1, 16, dilation=HUGE), "StageSpec.dilation must be <= 1024"),
        (lambda: rl.StemSpec("cifar", HUGE), "StemSpec.out_channels must be <= 65536"),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(1, 16),), num_classes=HUGE),
            "ResNetSpec.num_classes must be <= 10000000",
        ),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(1, 16),), in_channels=HUGE),
            "ResNetSpec.in_channels must be <= 65536",
        ),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(1, 16),) * (MAX_STAGES + 1)),
            "ResNetSpec.stages must hold <= 64 stages",
        ),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(6000, 16), rl.StageSpec(6000, 16))),
            "ResNetSpec.stages must hold <= 10000 blocks in all",
        ),
    ],
    ids=[
        "num_blocks",
        "width",
        "stride",
        "dilation",
        "stem",
        "classes",
        "in_channels",
        "stages",
        "depth",
    ],
)
def test_spec_refuses_absurd_sizes(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match="resnetlib's size limit") as info:
        make()
    assert str(info.value).startswith(message)
    assert "(resnetlib's size limit, see resnetlib.spec); got " in str(info.value)


def test_limits_are_far_above_real_networks() -> None:
    assert cifar_spec(1202).depth * 10 < MAX_BLOCKS  # the paper's deepest: 200 blocks a stage
    widest = imagenet_spec((3, 4, 23, 3), "bottleneck").stages[-1].width * 4  # 2048
    assert widest * 16 <= MAX_CHANNELS
    assert MAX_CLASSES > 21_843 * 100  # ImageNet-21k
    assert MAX_STRIDE >= 64


def test_the_limits_themselves_are_allowed() -> None:
    stage = rl.StageSpec(num_blocks=MAX_BLOCKS, width=MAX_CHANNELS, stride=MAX_STRIDE)
    spec = rl.ResNetSpec((stage,), stem=rl.StemSpec("cifar", MAX_CHANNELS), num_classes=MAX_CLASSES)
    assert rl.ResNetSpec.from_json(spec.to_json()) == spec


def _json_with(**changes: object) -> str:
    data = rl.resnet20().spec.to_dict()
    stages = changes.pop("stages", None)
    data.update(changes)
    if stages is not None:
        data["stages"] = stages
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_json_with(num_classes=HUGE), r"num_classes must be <= 10000000"),
        (_json_with(in_channels=HUGE), r"in_channels must be <= 65536"),
        (_json_with(stages=[{"num_blocks": HUGE, "width": 16}]), r"num_blocks must be <= 10000"),
        (_json_with(stages=[{"num_blocks": 1, "width": HUGE}]), r"width must be <= 65536"),
        (
            _json_with(stages=[{"num_blocks": 1, "width": 16}] * 10**5),
            r"<= 64 stages .*; got 100000",
        ),
    ],
    ids=["classes", "in_channels", "num_blocks", "width", "stages"],
)
def test_from_json_refuses_absurd_sizes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rl.ResNetSpec.from_json(text)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rl.cifar_resnet(6 * HUGE + 2), r"StageSpec.num_blocks must be <= 10000"),
        (lambda: rl.resnet(layers=(HUGE,)), r"StageSpec.num_blocks must be <= 10000"),
        (lambda: rl.resnet(layers=(1,) * 100), r"StageSpec.width must be <= 65536"),
        (lambda: rl.resnet18(num_classes=HUGE), r"num_classes must be <= 10000000"),
        (lambda: rl.resnet18(in_channels=HUGE), r"in_channels must be <= 65536"),
        (lambda: rl.resnet18(base_width=HUGE), r"width must be <= 65536"),
        (lambda: rl.resnet18(widths=(HUGE, 1, 1, 1)), r"width must be <= 65536"),
        (lambda: rl.resnet56(width_multiplier=HUGE), r"StageSpec.width must be <= 65536"),
        (lambda: rl.resnet50(block_options={"groups": HUGE}), r"groups must be <= 65536"),
        (
            lambda: rl.resnet50(block_options={"width_per_group": 10**400}),
            r"width_per_group must be <= 65536",
        ),
        (
            lambda: rl.resnet50(block_options={"groups": 4096, "width_per_group": 4096}),
            r"inner width .* is 16777216; it must be <= 65536",
        ),
        (lambda: rl.create_model("resnet20", num_classes=HUGE), r"num_classes must be <= 1000"),
        (
            lambda: rl.create_model("resnet20", features_only=True, widths=(HUGE, 32, 64)),
            r"width must be <= 65536",
        ),
    ],
    ids=[
        "cifar-depth",
        "layers",
        "stages",
        "classes",
        "in_channels",
        "base_width",
        "widths",
        "width_multiplier",
        "groups",
        "width_per_group",
        "inner-width",
        "create_model",
        "create_model-features",
    ],
)
def test_factories_refuse_absurd_sizes(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("classes", [str(HUGE), str(10**30)])
def test_cli_summary_refuses_absurd_sizes(classes: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet20", "--num-classes", classes]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("resnetlib: error: ResNetSpec.num_classes must be <= 10000000")
