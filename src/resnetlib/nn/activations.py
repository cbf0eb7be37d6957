"""Activation layers by name (``ResNetSpec.act``), as :data:`ActLayer` factories."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from ..common import first_line
from ..registry import Registry
from ..validate import one_line

ActLayer = Callable[[], nn.Module]
"""Makes an activation module (``relu`` by default: ``nn.ReLU(inplace=True)``)."""

__all__ = ["ACTIVATIONS", "ActLayer", "register_act", "relu"]


relu: Callable[[], nn.Module] = partial(nn.ReLU, inplace=True)
"""In-place ReLU, as torchvision's ResNet uses (a ``functools.partial`` of ``nn.ReLU``)."""


def check_factory(who: str, item: object, makes: str) -> None:
    """Refuse (``TypeError``) a module instance or a non-callable where a registry keeps a
    factory of modules (``makes``: what it is called with and returns, and an example)."""
    if isinstance(item, nn.Module) or not callable(item):
        instead = f"; register its class, {type(item).__name__}" if callable(item) else ""
        raise TypeError(f"{who} must be {makes}, not {one_line(item)}{instead}")


def _validate_act(name: str, item: ActLayer) -> None:
    """Refuse (``TypeError``) a module instance or a non-callable, and (``ValueError``) a
    callable that, called once with no arguments on the CPU, raises or returns no module."""
    who = f"activation {name!r}"
    check_factory(who, item, "a no-argument callable returning a module (nn.GELU, a function)")
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        try:
            made = item()
        except Exception as error:
            raise ValueError(
                f"{who} must be callable with no arguments (blocks build it as act_layer()); "
                f"calling it raised {type(error).__name__}: {first_line(error, 200)}"
            ) from error
    if not isinstance(made, nn.Module):
        raise ValueError(
            f"{who} must return an nn.Module when called with no arguments; got {one_line(made)}"
        )


ACTIVATIONS: Registry[ActLayer] = Registry("activation", _validate_act)
"""Activations by name (``ResNetSpec.act``): ``"relu"``, ``"silu"``, ``"gelu"``, ..."""
register_act = ACTIVATIONS.register
"""Register an activation: a no-argument callable returning a module (a class such as
``nn.GELU``, not an instance); registration calls it once and refuses what fails."""

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
