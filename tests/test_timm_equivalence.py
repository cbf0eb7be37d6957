"""timm's ResNets: same state_dict layout and logits as ours, through the timm layout.

The reference is ``tests/fixtures/timm_resnet.json``, written by
``scripts/make_timm_fixture.py`` from timm itself with the torchvision fixture's weights and
input; the live tests run only where timm is installed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

import resnetlib as rl

from .reference_weights import FIXTURES, deterministic_fill_, fixed_input

FIXTURE = FIXTURES / "timm_resnet.json"
MODELS = ["resnet18", "resnet50"]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def layout(state: dict[str, torch.Tensor]) -> list[tuple[str, list[int]]]:
    return [(key, list(tensor.shape)) for key, tensor in state.items()]


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model.double().eval()(fixed_input())
    return out


def check_against_fixture(name: str, reference: dict[str, Any]) -> None:
    entry = reference["models"][name]
    expected_layout = [(key, list(shape)) for key, shape in entry["state_dict"]]
    source = rl.create_model(name)
    assert layout(source.state_dict()) == expected_layout
    deterministic_fill_(source)
    timm_state = rl.interop.convert_state_dict(source.state_dict(), target="timm")
    model = rl.create_model(name)
    report = rl.interop.load_weights(model, timm_state, source="timm")
    assert report.reinitialized == report.adapted == ()
    out = logits(model)
    assert (out.std(dim=1) > 0.1).all()
    expected = torch.tensor(entry["logits"], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm_fixture(name: str, reference: dict[str, Any]) -> None:
    """Same keys, order and shapes as timm's state_dict; its weights give its logits."""
    assert list(fixed_input().shape) == reference["input_shape"]
    check_against_fixture(name, reference)


def test_resnet50d_matches_timm_fixture(reference: dict[str, Any]) -> None:
    """timm's resnet50d (deep stem, ResNet-D shortcuts), once resnetlib registers it."""
    if "resnet50d" not in rl.list_models():
        pytest.skip("resnetlib has no 'resnet50d' model registered yet (deep stem + option D)")
    check_against_fixture("resnet50d", reference)


def test_timm_fixture_agrees_with_torchvision_fixture(reference: dict[str, Any]) -> None:
    """timm's resnet18/50 and torchvision's are the same function of the same weights."""
    torchvision = json.loads((FIXTURES / "torchvision_resnet.json").read_text())
    for name in MODELS:
        assert reference["models"][name]["state_dict"] == torchvision["models"][name]["state_dict"]
        torch.testing.assert_close(
            torch.tensor(reference["models"][name]["logits"]),
            torch.tensor(torchvision["models"][name]["logits"]),
            rtol=0,
            atol=1e-6,
        )


@pytest.mark.parametrize("name", [*MODELS, "resnet50d"])
def test_fixture_matches_live_timm(name: str, reference: dict[str, Any]) -> None:
    """Where timm is installed, the fixture is still what it computes."""
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False)
    assert layout(model.state_dict()) == [
        (key, list(shape)) for key, shape in reference["models"][name]["state_dict"]
    ]
    deterministic_fill_(model)
    expected = torch.tensor(reference["models"][name]["logits"], dtype=torch.float64)
    torch.testing.assert_close(logits(model), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_loads_live_timm_weights(name: str) -> None:
    """timm's own random weights load through the timm layout and give timm's outputs."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False)
    deterministic_fill_(theirs)  # non-trivial eval-mode norms
    model = rl.create_model(name)
    rl.interop.load_weights(model, theirs.state_dict(), source="timm")
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = theirs.double().eval()(x)
        out = model.double().eval()(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
