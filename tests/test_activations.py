"""Activations given as torch classes name their registered entry."""

from __future__ import annotations

import pytest
from torch import nn

import resnetlib as rl


@pytest.mark.parametrize(
    ("cls", "name"), [(nn.ReLU, "relu"), (nn.SiLU, "silu"), (nn.GELU, "gelu")], ids=str
)
def test_a_torch_activation_class_means_its_registered_name(cls: type, name: str) -> None:
    model = rl.resnet20(act=cls)
    assert model.spec.act == name
    assert rl.create_model("resnet20", act=cls).spec == rl.create_model("resnet20", act=name).spec
    assert type(model.layer1[0].relu) is cls


def test_a_class_registered_by_the_user_keeps_the_users_name() -> None:
    rl.nn.register_act("test_plain_relu", nn.ReLU)
    try:
        assert rl.resnet20(act=nn.ReLU).spec.act == "test_plain_relu"
    finally:
        rl.nn.ACTIVATIONS.unregister("test_plain_relu")
    assert rl.resnet20(act=nn.ReLU).spec.act == "relu"


@pytest.mark.parametrize(
    ("act", "error", "words"),
    [
        (
            nn.GELU(),
            TypeError,
            r"activation 'test_bad_act' must be a no-argument callable .*"
            r"not GELU\(.*\); register its class, GELU",
        ),
        (lambda: 3, ValueError, r"activation 'test_bad_act' must return an nn.Module .*got 3"),
        (lambda width: nn.ReLU(), ValueError, r"must be callable with no arguments"),
    ],
    ids=["instance", "not_a_module", "takes_an_argument"],
)
def test_registration_refuses_what_cannot_build_an_activation(
    act: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        rl.nn.register_act("test_bad_act", act)  # type: ignore[arg-type]
    assert "test_bad_act" not in rl.nn.ACTIVATIONS
