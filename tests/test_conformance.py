"""resnetlib.testing: built-in types conform; broken ones fail with the exact check named."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.testing import (
    BLOCK_CHECKS,
    SHORTCUT_CHECKS,
    STEM_CHECKS,
    ConformanceError,
    ConformanceReport,
    check_block,
    check_shortcut,
    check_stem,
)

ROOT = Path(__file__).resolve().parents[1]

# Every name registered when this module is imported: blocks, shortcuts and stems that
# other modules add to the registries are covered without editing this file.
BUILTIN_BLOCKS = list(rl.nn.BLOCKS)
BUILTIN_SHORTCUTS = list(rl.nn.SHORTCUTS)
BUILTIN_STEMS = list(rl.nn.STEMS)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The checks use tiny tensors, where extra threads only contend for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def assert_conforms(report: ConformanceReport) -> None:
    assert report.ok, str(report)
    assert report.names("failed") == []


# Built-ins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_BLOCKS)
def test_every_builtin_block_conforms(name: str, device: torch.device) -> None:
    report = check_block(name, device=device)
    assert_conforms(report)
    assert report.names("passed")[0] == "interface"
    assert {r.name for r in report.results} == set(BLOCK_CHECKS)


def test_builtin_blocks_take_every_optional_keyword() -> None:
    for name in ("basic", "bottleneck"):
        report = check_block(name, only=["drop_path", "dilation", "act_layer"])
        assert report.names("passed") == ["interface", "drop_path", "dilation", "act_layer"]


def test_bottleneck_options_are_passed_to_every_construction() -> None:
    options = {"groups": 2, "width_per_group": 32, "stride_in_1x1": True}
    assert_conforms(check_block("bottleneck", block_options=options))


@pytest.mark.parametrize("name", BUILTIN_SHORTCUTS)
def test_every_builtin_shortcut_conforms(name: str, device: torch.device) -> None:
    report = check_shortcut(name, device=device)
    assert_conforms(report)
    assert {r.name for r in report.results} == set(SHORTCUT_CHECKS)


@pytest.mark.parametrize("name", BUILTIN_STEMS)
def test_every_builtin_stem_conforms(name: str, device: torch.device) -> None:
    report = check_stem(name, device=device)
    assert_conforms(report)
    assert {r.name for r in report.results} == set(STEM_CHECKS)


def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_block("basic", only=["shapes"])
    assert torch.equal(torch.rand(3), expected)


# A correct block that exists only here --------------------------------------------------


class TinyBlock(rl.ResidualBlock):
    """conv3x3-norm-act, conv3x3-norm (expanding by 2), + shortcut, act."""

    expansion: ClassVar[int] = 2
    weighted_layers: ClassVar[int] = 2

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
        act_layer: rl.nn.ActLayer = nn.ReLU,
        drop_path: float = 0.0,
        dilation: int = 1,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=residual,
            drop_path=drop_path,
            dilation=dilation,
        )
        self.conv1 = rl.nn.conv3x3(in_channels, width, stride, dilation=dilation)
        self.bn1 = norm_layer(width)
        self.act = act_layer()
        self.conv2 = rl.nn.conv3x3(width, self.out_channels, dilation=dilation)
        self.bn2 = norm_layer(self.out_channels)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.add_shortcut(self.branch(x), x))
        return out

    def zero_init_last(self) -> None:
        rl.nn.zero_norm_weight(self.bn2)


def test_an_unregistered_block_conforms_and_stays_unregistered() -> None:
    before = list(rl.nn.BLOCKS)
    report = check_block(TinyBlock)
    assert_conforms(report)
    assert report.subject == "block TinyBlock"
    assert "_conformance_block_" in report["spec"].detail
    assert list(rl.nn.BLOCKS) == before


def test_a_block_registered_at_run_time_conforms() -> None:
    rl.register_block("test_conformance_tiny", TinyBlock)
    try:
        report = check_block("test_conformance_tiny", raise_on_failure=True)
    finally:
        rl.nn.BLOCKS.unregister("test_conformance_tiny")
    assert report.subject == "block 'test_conformance_tiny' (TinyBlock)"
    assert "'test_conformance_tiny'" in report["spec"].detail


def test_a_block_without_the_optional_keywords_skips_those_checks() -> None:
    class Minimal(TinyBlock):
        def __init__(
            self,
            *,
            in_channels: int,
            width: int,
            stride: int = 1,
            downsample: nn.Module | None = None,
            residual: bool = True,
            norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
        ) -> None:
            super().__init__(
                in_channels=in_channels,
                width=width,
                stride=stride,
                downsample=downsample,
                residual=residual,
                norm_layer=norm_layer,
            )

    report = check_block(Minimal, only=["drop_path", "dilation", "act_layer", "zero_init"])
    assert report.names("skipped") == ["drop_path", "dilation", "act_layer"]
    assert "does not take 'drop_path'" in report["drop_path"].detail
    assert report.names("passed") == ["interface", "zero_init"]  # drop path via the base class
    assert report.ok


def test_the_custom_block_example_conforms() -> None:
    path = ROOT / "examples" / "custom_block.py"
    spec = importlib.util.spec_from_file_location("resnetlib_example_custom_block", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pickling needs the class importable by its module
    try:
        spec.loader.exec_module(module)  # registers "se_basic" and "se_resnet20"
        report = check_block(module.SEBasicBlock, block_options={"se_reduction": 4})
    finally:
        for registry, name in ((rl.nn.BLOCKS, "se_basic"), (rl.models.MODELS, "se_resnet20")):
            if name in registry:
                registry.unregister(name)
        del sys.modules[spec.name]
    assert_conforms(report)
    assert report.subject == "block 'se_basic' (SEBasicBlock)"
    # It predates drop path, dilation and act_layer: specs using those cannot use it.
    assert report.names("skipped") == ["drop_path", "dilation", "act_layer"]


# Broken blocks: each fails the check named, with a reason ------------------------------


class IgnoresShortcut(TinyBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.branch(x))
        return out


class ZeroInitDoesNothing(TinyBlock):
    def zero_init_last(self) -> None:
        pass


class UnusedParameter(TinyBlock):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.unused = nn.Parameter(torch.zeros(3))


class WrongOutChannels(TinyBlock):
    """Reports and outputs ``width`` channels though ``expansion`` is 2."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.out_channels = self.width
        self.conv2 = rl.nn.conv3x3(self.width, self.width)
        self.bn2 = nn.BatchNorm2d(self.width)


class BatchDependentInEval(TinyBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out - out.mean(dim=0, keepdim=True) + out.mean()


class IgnoresDropPath(TinyBlock):
    def __init__(self, *, drop_path: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]


class IgnoresDilation(TinyBlock):
    def __init__(self, *, dilation: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]


class HardcodedBatchNorm(TinyBlock):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.bn1 = nn.BatchNorm2d(self.width)


class AddsShortcutWhenPlain(TinyBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + x if not self.residual and x.shape == out.shape else out


class UnpicklableState(TinyBlock):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.scale: Callable[[torch.Tensor], torch.Tensor] = lambda t: t * 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(super().forward(x))


class StateOutsideTheStateDict(TinyBlock):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.offset = torch.randn(1)  # neither a parameter nor a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.offset.to(x.device)


class ActLayerUnused(TinyBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(self.add_shortcut(out, x))


BROKEN = [
    # (block, every check it fails, the check to read, words from that check's reason)
    pytest.param(
        IgnoresShortcut,
        {"shortcut", "zero_init", "gradients"},
        "shortcut",
        "the block ignores its shortcut",
        id="ignores-shortcut",
    ),
    pytest.param(
        ZeroInitDoesNothing, {"zero_init"}, "zero_init", "after zero_init_last()", id="zero-init"
    ),
    pytest.param(
        UnusedParameter, {"gradients"}, "gradients", "'unused' received no gradient", id="unused"
    ),
    pytest.param(
        BatchDependentInEval,
        {"batch_independence"},
        "batch_independence",
        "depends on the rest of the batch",
        id="batch-dependent",
    ),
    pytest.param(
        IgnoresDropPath, {"drop_path"}, "drop_path", "does not drop the branch", id="drop-path"
    ),
    pytest.param(
        IgnoresDilation, {"dilation"}, "dilation", "does not change the output", id="dilation"
    ),
    pytest.param(
        HardcodedBatchNorm, {"norm_layer"}, "norm_layer", "nn.BatchNorm2d at ['bn1']", id="norm"
    ),
    pytest.param(
        AddsShortcutWhenPlain, {"shortcut"}, "shortcut", "residual=False (plain)", id="plain"
    ),
    pytest.param(UnpicklableState, {"pickle"}, "pickle", "Can't pickle", id="pickle"),
    pytest.param(
        StateOutsideTheStateDict, {"state_dict"}, "state_dict", "neither a parameter", id="state"
    ),
    pytest.param(ActLayerUnused, {"act_layer"}, "act_layer", "does not use it", id="act"),
]


@pytest.mark.parametrize(("block", "failed", "check", "reason"), BROKEN)
def test_a_broken_block_fails_exactly_the_checks_it_breaks(
    block: type[rl.ResidualBlock], failed: set[str], check: str, reason: str
) -> None:
    report = check_block(block)
    assert set(report.names("failed")) == failed, str(report)
    assert reason in report[check].detail
    with pytest.raises(ConformanceError, match=rf"(?m)^- {check}: ") as raised:
        report.raise_for_failures()
    assert isinstance(raised.value, AssertionError)
    assert all(f"- {r.name}: {r.detail}" in str(raised.value) for r in report.failures)


def test_wrong_out_channels_is_named() -> None:
    report = check_block(WrongOutChannels)
    assert report["out_channels"].detail == "out_channels is 4, but width 4 x expansion 2 = 8"
    assert "shapes" in report.names("failed")
    assert "reports out_channels=4" in report["spec"].detail  # registration refuses it too


def test_raise_on_failure_lists_every_failed_check() -> None:
    with pytest.raises(ConformanceError) as raised:
        check_block(IgnoresShortcut, raise_on_failure=True)
    message = str(raised.value)
    assert message.startswith("block IgnoresShortcut failed 3 conformance check(s):")
    for check in ("gradients", "zero_init", "shortcut"):
        assert f"\n- {check}: " in message


def test_a_class_that_is_not_a_block_fails_interface_and_skips_the_rest() -> None:
    class NotABlock(nn.Module):
        pass

    report = check_block(NotABlock)  # type: ignore[arg-type]
    assert report.names("failed") == ["interface"]
    assert "must be a ResidualBlock subclass" in report["interface"].detail
    assert report.names("skipped") == list(BLOCK_CHECKS[1:])
    assert all(r.detail == "'interface' failed" for r in report.results[1:])


def test_a_block_missing_a_build_keyword_fails_interface() -> None:
    class NoNormLayer(rl.ResidualBlock):
        def __init__(self, *, in_channels: int, width: int, stride: int = 1) -> None:
            super().__init__(in_channels=in_channels, width=width, stride=stride)

        def zero_init_last(self) -> None:
            pass

    report = check_block(NoNormLayer, only=["shapes"])
    assert report.names("failed") == ["interface"]
    assert "['downsample', 'residual', 'norm_layer']" in report["interface"].detail


def test_unknown_block_option_fails_interface() -> None:
    report = check_block("basic", block_options={"groups": 2}, only=[])
    assert report.names("failed") == ["interface"]
    assert "does not accept option 'groups'" in report["interface"].detail


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown check"):
        check_block("basic", only=["shape"])
    with pytest.raises(rl.registry.UnknownNameError, match="did you mean 'basic'"):
        check_block("basik")
    with pytest.raises(TypeError, match="expected a block class"):
        check_block(rl.BasicBlock(in_channels=4, width=4))  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no check named"):
        check_block("basic", only=[])["shapes"]


def test_only_takes_one_check_name_as_a_str() -> None:
    """only="shapes" was read letter by letter: "unknown check(s) ['a', 'e', 'h', 'p', 's']"."""
    for report in (check_block("basic", only="shapes"), check_stem("cifar", only="shapes")):
        assert [result.name for result in report.results] == ["interface", "shapes"]
    with pytest.raises(ValueError, match=r"unknown check\(s\) \['shape'\]"):
        check_shortcut("B", only="shape")


def test_report_text_names_each_check() -> None:
    report = check_block(ZeroInitDoesNothing, only=["zero_init", "gradients"])
    lines = str(report).splitlines()
    assert lines[0] == "block ZeroInitDoesNothing: 2 passed, 1 failed, 0 skipped"
    assert lines[1].startswith("  PASS interface: ")
    assert lines[2].startswith("  PASS gradients: ")
    assert lines[3].startswith("  FAIL zero_init: after zero_init_last()")


# Broken shortcuts and stems -----------------------------------------------------------------


class IdentityWhereShapeChanges(rl.ShortcutStrategy):
    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: rl.nn.NormLayer
    ) -> nn.Module | None:
        return None


class PlainWithModule(rl.ShortcutStrategy):
    adds_shortcut = False

    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: rl.nn.NormLayer
    ) -> nn.Module | None:
        return rl.nn.conv1x1(in_channels, out_channels, stride)


class WrongStrideProjection(rl.ShortcutStrategy):
    def make(
        self, *, in_channels: int, out_channels: int, stride: int, norm_layer: rl.nn.NormLayer
    ) -> nn.Module | None:
        return nn.Sequential(rl.nn.conv1x1(in_channels, out_channels), norm_layer(out_channels))


@pytest.mark.parametrize(
    ("strategy", "reason"),
    [
        (IdentityWhereShapeChanges, "returned None (the identity) for stride 1, 4 -> 8"),
        (PlainWithModule, "a plain strategy (adds_shortcut=False) made a module"),
        (WrongStrideProjection, "stride 2, 8 -> 8 channels, 8x8 input, train mode"),
    ],
)
def test_a_broken_shortcut_fails_shapes(strategy: type[rl.ShortcutStrategy], reason: str) -> None:
    report = check_shortcut(strategy, only=["shapes"])
    assert report.names("failed") == ["shapes"]
    assert reason in report["shapes"].detail


class MislabelledStem(rl.Stem):
    """Claims a reduction of 4 but only halves the input; names a child 'fc'."""

    reduction: ClassVar[int] = 4

    def __init__(
        self, *, in_channels: int, out_channels: int, norm_layer: rl.nn.NormLayer = nn.BatchNorm2d
    ) -> None:
        layers = OrderedDict(
            conv1=rl.nn.conv3x3(in_channels, out_channels, stride=2),
            fc=norm_layer(out_channels),
        )
        super().__init__(layers, in_channels=in_channels, out_channels=out_channels)


def stem_with_child(child: str) -> type[rl.Stem]:
    """A reduction-1 stem with children conv1 and ``child``."""

    class Named(rl.Stem):
        reduction: ClassVar[int] = 1

        def __init__(
            self,
            *,
            in_channels: int,
            out_channels: int,
            norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
        ) -> None:
            conv1 = rl.nn.conv3x3(in_channels, out_channels)
            layers = OrderedDict([("conv1", conv1), (child, norm_layer(out_channels))])
            super().__init__(layers, in_channels=in_channels, out_channels=out_channels)

    return Named


@pytest.mark.parametrize(
    ("child", "clashes"),
    [
        *((name, True) for name in ("spec", "blocks", "feature_info", "stem_names")),
        *((name, True) for name in ("global_pool", "pretrained_cfg", "fc", "layer2")),
        ("layer0", False),
        ("bn1", False),
    ],
)
def test_the_stem_names_check_refuses_what_build_refuses(child: str, clashes: bool) -> None:
    """A child named spec or blocks passed the names check, then build raised TypeError or
    KeyError; pretrained_cfg built and hid the module; layer0 failed the check but built."""
    report = check_stem(stem_with_child(child), only=["names"])
    assert report["names"].passed is not clashes
    rl.register_stem("test_named_stem", stem_with_child(child))
    try:
        spec = dataclasses.replace(rl.cifar_spec(20), stem=rl.StemSpec("test_named_stem", 16))
        if not clashes:
            assert isinstance(getattr(rl.build(spec), child), nn.BatchNorm2d)
            return
        assert f"child names ['{child}'] clash" in report["names"].detail
        with pytest.raises(
            ValueError, match=rf"stem 'test_named_stem' \(Named\): child names \['{child}'\] clash"
        ):
            rl.build(spec)
    finally:
        rl.nn.STEMS.unregister("test_named_stem")


def test_a_broken_stem_fails_shapes_names_and_spec() -> None:
    report = check_stem(MislabelledStem)
    assert set(report.names("failed")) == {"shapes", "names", "spec"}
    assert "expected (2, 8, 8, 12) (out_channels 8, reduction 4)" in report["shapes"].detail
    assert "['fc'] clash" in report["names"].detail
    assert report.names("skipped") == ["act_layer"]
    assert "MislabelledStem" not in " ".join(rl.nn.STEMS)  # the temporary name is gone


class EightChannelStem(rl.Stem):
    """Broken: reports the out_channels it is given but always outputs 8 channels."""

    def __init__(
        self, *, in_channels: int, out_channels: int, norm_layer: rl.nn.NormLayer = nn.BatchNorm2d
    ) -> None:
        layers = OrderedDict(conv1=rl.nn.conv3x3(in_channels, 8), bn1=norm_layer(8))
        super().__init__(layers, in_channels=in_channels, out_channels=out_channels)


def test_a_stem_with_hard_coded_output_channels_fails_shapes() -> None:
    report = check_stem(EightChannelStem, only=["shapes"])
    assert report.names("failed") == ["shapes"]
    assert "expected (2, 16, 8, 12) (out_channels 16, reduction 1)" in report["shapes"].detail


class HardCodedReLUStem(rl.Stem):
    """Takes act_layer but builds nn.ReLU itself: a non-ReLU spec would silently get ReLU."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
        act_layer: rl.nn.ActLayer = nn.ReLU,
    ) -> None:
        layers = OrderedDict(
            conv1=rl.nn.conv3x3(in_channels, out_channels),
            bn1=norm_layer(out_channels),
            relu=nn.ReLU(),
        )
        super().__init__(layers, in_channels=in_channels, out_channels=out_channels)


def test_a_stem_that_ignores_act_layer_fails_but_one_without_activations_passes() -> None:
    report = check_stem(HardCodedReLUStem)
    assert report.names("failed") == ["act_layer"]
    assert "has activations at ['relu']" in report["act_layer"].detail
    activation_free = check_stem("cifar_preact", only=["act_layer"])
    assert activation_free.ok
    assert "no activation" in activation_free["act_layer"].detail


def test_checks_compute_in_full_float32_and_restore_the_callers_flags() -> None:
    """TF32 convolutions differ by ~1e-4 between batch sizes: the checks turn them off inside."""
    seen: list[tuple[bool, bool]] = []

    class RecordingBlock(rl.BasicBlock):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return super().forward(x)

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        check_block(RecordingBlock, only=["batch_independence"])
        assert seen
        assert set(seen) == {(False, False)}
        assert torch.backends.cudnn.allow_tf32 is True
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
