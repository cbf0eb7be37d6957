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
