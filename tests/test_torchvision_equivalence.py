"""resnet18/50, resnext50_32x4d and wide_resnet50_2 equal torchvision's: layout and logits.

The reference is ``tests/fixtures/torchvision_resnet.json``, written by
``scripts/make_torchvision_fixture.py`` from torchvision itself, so these tests need no
torchvision; the live tests at the end run only where torchvision is installed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

import resnetlib as rl

from .reference_weights import FIXTURES, deterministic_fill_, fixed_input

FIXTURE = FIXTURES / "torchvision_resnet.json"
MODELS = ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """The fixture JSON: versions, input shape, per-model state_dict layout and logits."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def filled(name: str, **overrides: Any) -> rl.ResNet:
    """``rl.<name>()`` with the fixture's deterministic weights, in float64 and eval mode."""
    model = rl.create_model(name, **overrides)
    deterministic_fill_(model)
    return model.double().eval()


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(fixed_input())
    return out


def test_fixture_input_shape(reference: dict[str, Any]) -> None:
    """The script's input is the one the fixture was computed on."""
    assert list(fixed_input().shape) == reference["input_shape"]
    assert fixed_input().dtype == torch.float64


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_layout_matches_torchvision(name: str, reference: dict[str, Any]) -> None:
    """Same keys, in the same order, with the same shapes as torchvision's state_dict."""
    expected = [(key, list(shape)) for key, shape in reference["models"][name]["state_dict"]]
    state = rl.create_model(name).state_dict()
    actual = [(key, list(tensor.shape)) for key, tensor in state.items()]
    assert [key for key, _ in actual] == [key for key, _ in expected]
    assert actual == expected


@pytest.mark.parametrize("name", MODELS)
def test_logits_match_torchvision_fixture(name: str, reference: dict[str, Any]) -> None:
    """Deterministic weights, loaded strictly into a fresh model, give torchvision's logits."""
    source = filled(name)
    model = rl.create_model(name).double().eval()
    result = model.load_state_dict(source.state_dict(), strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    expected = torch.tensor(reference["models"][name]["logits"], dtype=torch.float64)
    out = logits(model)
    assert out.shape == expected.shape == (2, 1000)
    assert torch.isfinite(out).all()
    # Not trivially constant: logits vary across classes and depend on the input.
    assert (out.std(dim=1) > 0.1).all()
    assert (out[0] - out[1]).abs().max() > 0.05
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits(source), out, atol=0, rtol=0)


def test_fixture_detects_stride_placement(reference: dict[str, Any]) -> None:
    """The fixture tells ResNet v1.5 (stride on the 3x3, torchvision's) from the paper's v1."""
    expected = torch.tensor(reference["models"]["resnet50"]["logits"], dtype=torch.float64)
    paper = logits(filled("resnet50", stride_in_1x1=True))
    assert (paper - expected).abs().max() > 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_fixture_matches_live_torchvision(name: str, reference: dict[str, Any]) -> None:
    """Where torchvision is installed, the fixture is still what it computes."""
    models = pytest.importorskip("torchvision").models
    tv = getattr(models, name)(weights=None)
    deterministic_fill_(tv)
    expected = torch.tensor(reference["models"][name]["logits"], dtype=torch.float64)
    torch.testing.assert_close(logits(tv.double().eval()), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_loads_live_torchvision_weights(name: str) -> None:
    """torchvision's randomly initialized weights load strictly and give the same outputs."""
    models = pytest.importorskip("torchvision").models
    torch.manual_seed(0)
    tv = getattr(models, name)(weights=None)
    with torch.no_grad():  # non-trivial eval-mode norms (torchvision's init is the identity)
        for module in tv.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    model = rl.create_model(name)
    model.load_state_dict(tv.state_dict(), strict=True)
    # float64: resnet50's random-init logits reach ~1e2, where float32's spacing exceeds 1e-5.
    tv = tv.double().eval()
    model = model.double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = tv(x)
        out = model(x)
    assert (expected.std(dim=1) > 1e-2).all()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
