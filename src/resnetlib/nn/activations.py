"""Activation layers by name (``ResNetSpec.act``), as :data:`ActLayer` factories."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from ..registry import Registry

ActLayer = Callable[[], nn.Module]
"""Makes an activation module (``relu`` by default: ``nn.ReLU(inplace=True)``)."""

__all__ = ["ACTIVATIONS", "ActLayer", "register_act", "relu"]


relu: Callable[[], nn.Module] = partial(nn.ReLU, inplace=True)
"""In-place ReLU, as torchvision's ResNet uses (a ``functools.partial`` of ``nn.ReLU``)."""


def _validate_act(name: str, item: ActLayer) -> None:
    if not callable(item):
        raise TypeError(f"activation {name!r} must be callable (no arguments -> module)")


ACTIVATIONS: Registry[ActLayer] = Registry("activation", _validate_act)
"""Activations by name (``ResNetSpec.act``): ``"relu"``, ``"silu"``, ``"gelu"``, ..."""
register_act = ACTIVATIONS.register
"""Register an activation: a no-argument callable returning a module."""

register_act("relu", relu)
register_act("silu", nn.SiLU)
register_act("gelu", nn.GELU)
register_act("mish", nn.Mish)
register_act("elu", nn.ELU)
register_act("leaky_relu", nn.LeakyReLU)
register_act("hardswish", nn.Hardswish)
register_act("identity", nn.Identity)


def as_registered_act(act: object) -> object:
    """``"relu"`` for ``nn.ReLU`` (the built-in ``"relu"`` is an in-place factory of it, while
    it is registered); anything else comes back unchanged."""
    builtin = "relu" in ACTIVATIONS and ACTIVATIONS["relu"] is relu
    if act is nn.ReLU and builtin and ACTIVATIONS.name_of(act) is None:
        return "relu"
    return act
