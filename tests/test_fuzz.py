"""fuzz_block: generated networks of a block build, train and evaluate per sample."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import resnetlib as rl
from resnetlib.testing import FUZZ_PROPERTIES, ConformanceError, fuzz_block
from resnetlib.testing.strategies import specs

from .strategies import BLOCKS

ROOT = Path(__file__).resolve().parent.parent


class GatedBlock(rl.ResidualBlock):
    """A test-defined block: one 3x3 convolution, a norm and a learnable gate on the branch.

    Takes ``act_layer`` and ``drop_path`` but not ``dilation``, and one option.
    """

    expansion: ClassVar[int] = 1
    weighted_layers: ClassVar[int] = 1

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
        gate: float = 1.0,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=residual,
            drop_path=drop_path,
        )
        self.conv = rl.nn.conv3x3(in_channels, width, stride)
        self.bn = norm_layer(width)
        self.act = act_layer()
        self.gate = nn.Parameter(torch.full((1,), gate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.add_shortcut(self.bn(self.conv(x)) * self.gate, x))

    def zero_init_last(self) -> None:
        rl.nn.zero_norm_weight(self.bn)


class UnusedParameterBlock(rl.BasicBlock):
    """Broken: a parameter that forward never uses (DDP would fail)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unused = nn.Parameter(torch.zeros(1))


class BatchMixingBlock(rl.BasicBlock):
    """Broken: subtracts the batch mean, even in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out - out.mean(dim=0, keepdim=True)


@pytest.fixture
def registered_gated() -> Any:
    rl.nn.BLOCKS.register("test_fuzz_gated", GatedBlock)
    yield "test_fuzz_gated"
    rl.nn.BLOCKS.unregister("test_fuzz_gated")


@pytest.mark.parametrize("block", BLOCKS)
def test_every_built_in_block_passes(block: str) -> None:
    assert fuzz_block(block, max_examples=3) == 3


def test_a_block_registered_at_run_time_passes(registered_gated: str) -> None:
    assert fuzz_block(registered_gated, block_options={"gate": 0.5}, max_examples=6) == 6
    assert rl.nn.BLOCKS.get(registered_gated) is GatedBlock


def test_an_unregistered_class_passes_and_is_unregistered_afterwards() -> None:
    assert fuzz_block(GatedBlock, max_examples=3) == 3
    assert rl.nn.BLOCKS.name_of(GatedBlock) is None


def failure_message(block: type[rl.ResidualBlock]) -> str:
    with pytest.raises(ConformanceError) as raised:
        fuzz_block(block, max_examples=5)
    assert rl.nn.BLOCKS.name_of(block) is None
    return str(raised.value)


def failing_spec(message: str) -> rl.ResNetSpec:
    found = re.search(r"^  spec: (\{.*\})$", message, re.MULTILINE)
    assert found is not None, message
    return rl.ResNetSpec.from_dict(json.loads(found.group(1)))


def test_an_unused_parameter_fails_the_gradients_property() -> None:
    message = failure_message(UnusedParameterBlock)
    assert "violates 'gradients'" in message
    assert "'layer1.0.unused' received no gradient" in message
    spec = failing_spec(message)
    # The smallest failing spec: one stage of one block, no dilation, the first of each name.
    assert [(s.num_blocks, s.dilation) for s in spec.stages] == [(1, 1)]
    assert (spec.norm, spec.shortcut, spec.act) == ("batchnorm", "A", "relu")
    # Named by its class, with how to register it: the temporary fuzzing name is gone.
    assert spec.block == "UnusedParameterBlock"
    assert message.splitlines()[-1] == (
        "Rebuild it with resnetlib.register_block('UnusedParameterBlock', "
        "UnusedParameterBlock), then resnetlib.build(resnetlib.ResNetSpec.from_json(...))."
    )
    rl.register_block(spec.block, UnusedParameterBlock)
    try:
        assert rl.build(spec).spec == spec
    finally:
        rl.nn.BLOCKS.unregister(spec.block)


def test_batch_dependent_eval_outputs_fail_the_batch_independence_property() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    message = failure_message(BatchMixingBlock)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is kept
    assert "violates 'batch_independence'" in message
    assert "depends on the rest of the batch" in message
    assert failure_message(BatchMixingBlock) == message  # deterministic
    # The reported spec reproduces the failure once the block is registered under its name.
    spec = failing_spec(message)
    rl.nn.BLOCKS.register(spec.block, BatchMixingBlock)
    try:
        model = rl.build(spec).eval()
        x = torch.randn(3, spec.in_channels, 16, 16)
        with torch.no_grad():
            alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
            assert not torch.allclose(model(x), alone, atol=1e-5)
    finally:
        rl.nn.BLOCKS.unregister(spec.block)


def test_the_properties_are_named() -> None:
    assert FUZZ_PROPERTIES == ("build", "output_shape", "gradients", "batch_independence")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="does not accept option 'gate'"):
        fuzz_block("basic", block_options={"gate": 1.0})
    with pytest.raises(ValueError, match="max_examples must be an int >= 1; got 0"):
        fuzz_block("basic", max_examples=0)


def test_without_hypothesis_the_import_error_names_the_extra() -> None:
    # A fresh interpreter in which `import hypothesis` fails, as it does when not installed.
    script = (
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"
        "import resnetlib.testing as t\n"  # the checks themselves need no hypothesis
        "assert t.check_block('basic', only=['interface']).ok\n"
        "for attempt in ("
        "lambda: t.fuzz_block('basic'), "
        "lambda: __import__('resnetlib.testing.strategies')):\n"
        "    try:\n"
        "        attempt()\n"
        "    except ImportError as error:\n"
        "        print(error)\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "needs hypothesis: pip install 'resnetlib[testing]'" in line


class MinimalBlock(GatedBlock):
    """Takes only the build keywords: no act_layer, drop_path or dilation."""

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


@given(data=st.data())
def test_specs_leave_out_the_keywords_a_block_does_not_take(data: st.DataObject) -> None:
    rl.nn.BLOCKS.register("test_fuzz_minimal", MinimalBlock)
    try:
        spec = data.draw(
            specs(blocks=("test_fuzz_minimal",), acts=("silu", "gelu"), shortcuts=("B",))
        )
    finally:
        rl.nn.BLOCKS.unregister("test_fuzz_minimal")
    assert spec.block == "test_fuzz_minimal"
    assert spec.act == "relu"  # no drawn activation fits: the default
    assert spec.drop_path_rate == 0.0
    assert all(stage.dilation == 1 for stage in spec.stages)
    assert spec.block_options == {}
