"""TorchScript: every registered model scripts and traces, with eager's outputs.

Scripting is slow, so each registered model is tested on its own spec with every stage cut
to one block; block, stem, shortcut, norm, activation, block options and widths are the
model's. (TorchScript compiles a module type once, so more blocks add no code paths; the
identity-shortcut block, which one-block stages lack on ImageNet nets, is covered by the
CIFAR nets' first stage and by the full resnet18 of ``test_create_model_features_only``.)
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import resnetlib as rl

# torch.jit is deprecated in recent PyTorch (TorchScript is in maintenance); it still works.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.trace` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        r"ignore:`torch\.jit\.trace_method` is deprecated:DeprecationWarning"
    ),
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.load` is deprecated:DeprecationWarning"),
]


def registered_spec(name: str) -> rl.ResNetSpec:
    """The spec ``create_model(name)`` builds, read without building the (deep) model."""
    spec = rl.model_spec(name)
    assert isinstance(spec, rl.ResNetSpec)
    return spec


def shallow(name: str, **changes: object) -> rl.ResNet:
    """The registered model with one block per stage, in eval mode."""
    spec = registered_spec(name)
    stages = tuple(replace(stage, num_blocks=1) for stage in spec.stages)
    torch.manual_seed(0)
    return rl.build(replace(spec, stages=stages, **changes)).eval()  # type: ignore[arg-type]


def sample(model: rl.ResNet, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, model.default_input_size[0], 32, 32)


@pytest.mark.parametrize("name", rl.list_models())
def test_every_registered_model_scripts_and_traces(name: str) -> None:
    model = shallow(name)
    x, other = sample(model), sample(model, batch=3)
    expected = model(x)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(scripted(other), model(other), rtol=0, atol=0)
    traced = torch.jit.trace(model, x, check_trace=False)  # checked here, on another batch
    torch.testing.assert_close(traced(other), model(other), rtol=0, atol=0)


@pytest.mark.parametrize(
    "options",
    [
        {"norm": "frozen_batchnorm"},
        {"norm": "groupnorm", "act": "silu"},
        {"output_stride": 8},
        {"shortcut": "C", "stride_in_1x1": True, "block": "bottleneck"},
    ],
)
def test_spec_options_script(options: dict[str, object]) -> None:
    model = rl.create_model("resnet18", base_channels=8, **options).eval()  # type: ignore[arg-type]
    x = sample(model)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x), rtol=0, atol=0)


def test_scripted_drop_path_and_dropout_work_in_train_mode() -> None:
    model = shallow("resnet20", drop_path_rate=0.5)
    model.drop_rate = 0.5
    model.train()
    scripted = torch.jit.script(model)
    assert scripted.training
    x = sample(model, batch=8)
    torch.manual_seed(1)
    expected = model(x)
    torch.manual_seed(1)
    got = scripted(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.manual_seed(2)
    assert not torch.equal(scripted(x), got), "drop path and dropout draw new masks"
    scripted.eval()
    model.eval()
    torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet18", "resnet50d", "resnet20", "preact_resnet18"])
def test_features_only_models_script(name: str) -> None:
    model = shallow(name)
    backbone = rl.core.features(model, out_indices=(0, 2, -1))
    assert backbone.feature_info.module_name()[0] == model.stem_feature_name
    x = sample(model)
    got = torch.jit.script(backbone)(x)
    expected = model.forward_intermediates(x, (0, 2, -1), norm=True, intermediates_only=True)
    assert len(got) == 3
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_create_model_features_only_scripts() -> None:
    backbone = rl.create_model("resnet18", features_only=True, out_indices=(0, 1, 4)).eval()
    x = torch.randn(1, 3, 64, 64)
    got = torch.jit.script(backbone)(x)
    assert [tuple(m.shape[1:]) for m in got] == [(64, 32, 32), (64, 16, 16), (512, 2, 2)]
    assert backbone.feature_info.reduction() == [2, 4, 32]
    for a, b in zip(got, backbone(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("global_pool", ["avg", "max", ""])
def test_head_settings_script(global_pool: str) -> None:
    model = shallow("resnet18")
    model.reset_classifier(0 if global_pool == "" else 7, global_pool=global_pool)
    x = sample(model)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)
    assert scripted(x).dim() == (4 if global_pool == "" else 2)


def test_a_pruned_model_scripts() -> None:
    model = shallow("resnet50")
    model.prune_intermediate_layers((1, 2))
    x = sample(model)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x), rtol=0, atol=0)


def test_scripted_model_saves_and_loads(tmp_path: Path) -> None:
    model = shallow("resnet50d")
    x = sample(model)
    scripted = torch.jit.script(model)
    path = tmp_path / "resnet50d.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # The parameter names are the eager model's (torchvision's), so weights move freely.
    assert list(loaded.state_dict()) == list(model.state_dict())
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(rl.core.features(model, out_indices=(1, 3))), buffer)
    buffer.seek(0)
    features = torch.jit.load(buffer)
    for a, b in zip(features(x), rl.core.features(model, out_indices=(1, 3))(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("features_only", [False, True])
@pytest.mark.parametrize("name", ["resnet20", "resnet50d", "preact_resnet18"])
def test_fx_traced_models_script(name: str, features_only: bool) -> None:
    """torch.fx's code carries forward's annotations; TorchScript must resolve them (timm's
    test_model_forward_fx_torchscript). Postponed (string) annotations broke this."""
    model = shallow(name)
    module: torch.nn.Module = rl.core.features(model) if features_only else model
    scripted = torch.jit.script(torch.fx.symbolic_trace(module))
    x = sample(model)
    with torch.no_grad():
        expected, actual = module(x), scripted(x)
    if features_only:
        assert len(actual) == len(expected) == len(model.feature_info)
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=0, atol=0)
    else:
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
