"""Activation layers by name: ``"relu"``, ``"silu"``, ``"gelu"``, ...

A spec names its activation (``ResNetSpec.act``); :func:`resnetlib.build` looks the name up
here and hands stems and blocks an :data:`ActLayer`, a callable that makes a fresh module.
Register your own with :func:`register_act`.
"""

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

# Torch classes that a built-in makes with other arguments: the built-in "relu" is a factory
# (in-place, as torchvision's), so ``nn.ReLU`` itself is not what is registered.
_MADE_BY_BUILTIN: dict[type[nn.Module], str] = {nn.ReLU: "relu"}


def as_registered_act(act: object) -> object:
    """``act``, or the built-in's name for a torch class one makes (``nn.ReLU`` -> ``"relu"``).

    Everything else comes back unchanged: a name, a registered callable (``nn.SiLU``), or
    something the caller then refuses as unregistered.
    """
    if isinstance(act, type) and ACTIVATIONS.name_of(act) is None:
        name = _MADE_BY_BUILTIN.get(act, "")
        if name in ACTIVATIONS and ACTIVATIONS.get(name) is relu:
            return name
    return act
