"""Property tests over generated specs, on every available device (DESIGN.md, Tests)."""

from __future__ import annotations

import copy
import io
import pickle
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn

import resnetlib as rl

from .devices import CUDA
from .helpers import assert_every_parameter_has_a_gradient
from .strategies import RESIDUAL_SHORTCUTS, Case, cases, specs

# The device fixture is constant across examples, so sharing it is safe.
device_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def make(case: Case, device: torch.device, seed: int = 0) -> rl.ResNet:
    torch.manual_seed(seed)
    return rl.build(case.spec).to(device)


def example_input(case: Case, device: torch.device, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = (case.batch_size, case.spec.in_channels, case.image_size, case.image_size)
    return torch.randn(size, generator=generator).to(device)


@device_settings
@given(case=cases())
def test_output_shape(case: Case, device: torch.device) -> None:
    model = make(case, device)
    x = example_input(case, device)
    assert model(x).shape == (case.batch_size, case.spec.num_classes)
    features = model.forward_features(x)
    assert features.shape[:2] == (case.batch_size, model.num_features)
    last = case.spec.stages[-1]
    assert model.num_features == last.width * rl.nn.BLOCKS.get(case.spec.block).expansion


@device_settings
@given(case=cases())
def test_every_parameter_gets_a_finite_gradient(case: Case, device: torch.device) -> None:
    model = make(case, device).train()
    x = example_input(case, device)
    weights = torch.randn(case.batch_size, case.spec.num_classes, device=device)
    (model(x) * weights).sum().backward()
    assert_every_parameter_has_a_gradient(model)


@given(spec=specs())
def test_option_a_and_plain_add_no_parameters(spec: rl.ResNetSpec) -> None:
    def count(shortcut: str) -> int:
        with torch.device("meta"):
            model = rl.build(
                replace(spec, shortcut=shortcut, zero_init_residual=False, drop_path_rate=0.0)
            )
        return rl.count_parameters(model)

    plain, option_a, option_b, option_c = (count(s) for s in ("none", "A", "B", "C"))
    assert option_a == plain
    # A projection is a bias-free 1x1 conv (c_in * c_out) and a norm: 2 * c_out parameters
    # for an affine one (batch or group norm), none for frozen batch norm.
    norm_parameters = {"batchnorm": 2, "groupnorm": 2, "frozen_batchnorm": 0}[spec.norm]
    expansion = rl.nn.BLOCKS.get(spec.block).expansion
    changing, every = 0, 0
    channels = spec.stem.out_channels
    for stage in spec.stages:
        out = stage.width * expansion
        for index in range(stage.num_blocks):
            stride = stage.stride if index == 0 else 1
            cost = channels * out + norm_parameters * out
            every += cost
            changing += cost if (stride != 1 or channels != out) else 0
            channels = out
    assert option_b == plain + changing
    assert option_c == plain + every


@device_settings
@given(case=cases(shortcuts=RESIDUAL_SHORTCUTS))
def test_zero_init_makes_each_block_start_as_its_shortcut(case: Case, device: torch.device) -> None:
    # Block-agnostic: a zero-initialized block outputs what it outputs with its residual
    # branch dropped for every sample (post-activation: act(shortcut(x)); pre-activation:
    # the shortcut of the pre-activated or raw input).
    spec = replace(case.spec, zero_init_residual=True)
    model = make(Case(spec, case.image_size, case.batch_size), device).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for block in model.blocks():
            without_branch = copy.deepcopy(block)
            without_branch.drop_path = rl.nn.DropPath(1.0).train()  # drops even in eval mode
            x = torch.randn(2, block.in_channels, 5, 5, generator=generator).to(device)
            torch.testing.assert_close(block(x), without_branch(x))


@device_settings
@given(case=cases())
def test_eval_outputs_do_not_depend_on_the_rest_of_the_batch(
    case: Case, device: torch.device
) -> None:
    model = make(case, device).eval()
    x = example_input(case, device)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(case.batch_size)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


@given(spec=specs())
def test_spec_round_trips_exactly_through_json(spec: rl.ResNetSpec) -> None:
    text = spec.to_json()
    again = rl.ResNetSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert hash(again) == hash(spec)


@device_settings
@given(case=cases())
def test_pickle_and_state_dict_round_trip(case: Case, device: torch.device) -> None:
    model = make(case, device, seed=0).eval()
    x = example_input(case, device)
    with torch.no_grad():
        expected = model(x)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=False)  # a whole pickled module, trusted here
        unpickled = pickle.loads(pickle.dumps(model))
        other = make(case, device, seed=1).eval()
        other.load_state_dict(model.state_dict(), strict=True)
        for clone in (saved, unpickled, other):
            assert clone.spec == case.spec
            torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)


@given(spec=specs())
def test_same_seed_same_weights(spec: rl.ResNetSpec) -> None:
    torch.manual_seed(7)
    first = rl.build(spec).state_dict()
    torch.manual_seed(7)
    second = rl.build(spec).state_dict()
    torch.manual_seed(8)
    third = rl.build(spec).state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
    conv_keys = [k for k, v in first.items() if v.dim() == 4]
    assert any(not torch.equal(first[k], third[k]) for k in conv_keys)


@CUDA
@pytest.mark.cuda
@settings(max_examples=6)
@given(case=cases())
def test_cpu_and_cuda_agree(case: Case) -> None:
    model = make(case, torch.device("cpu")).eval()
    x = example_input(case, torch.device("cpu"))
    with torch.no_grad():
        on_cpu = model(x)
        on_cuda = model.to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-3, atol=1e-4)


def test_model_keeps_its_spec_and_module_names() -> None:
    model = rl.resnet20()
    assert model.spec == rl.cifar_spec(20)
    names = [name for name, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]
    assert isinstance(model.layer2[0].downsample, rl.nn.ZeroPadShortcut)
    assert isinstance(rl.resnet50().layer1[0].downsample, nn.Sequential)
