"""Fine-tuning helpers: freeze early layers, hold norms in eval, per-stage learning rates."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from ..core.features import ResNetFeatures
from ..core.model import ResNet
from ..validate import is_int, is_real

_Backbone = ResNet | ResNetFeatures

__all__ = ["freeze", "param_groups", "unfreeze"]


def _check_model(model: object) -> None:
    if not isinstance(model, (ResNet, ResNetFeatures)):
        raise TypeError(
            f"expected a resnetlib ResNet or ResNetFeatures; got {type(model).__name__}"
        )


def freeze(model: _Backbone, *, stages: int) -> None:
    """Freeze the stem and the first ``stages`` stages (``0``: the stem only): their parameters
    stop requiring gradients and they stay in eval mode across later ``model.train()`` calls
    (mmdet's ``frozen_stages``). Freezing is cumulative: a smaller ``stages`` than an earlier
    call's changes nothing; :func:`unfreeze` undoes it.

    Raises:
        TypeError: ``model`` is neither a ``ResNet`` nor a ``ResNetFeatures``.
        ValueError: ``stages`` is not an int from 0 to the model's number of stages.

    Examples:
        >>> import resnetlib as rl
        >>> model = rl.resnet18()
        >>> rl.interop.freeze(model, stages=2)
        >>> model.layer2[0].conv1.weight.requires_grad, model.layer3[0].conv1.weight.requires_grad
        (False, True)
    """
    _check_model(model)
    count = len(model.stage_names)
    if not is_int(stages) or not 0 <= stages <= count:
        raise ValueError(
            f"stages must be an int in 0..{count} (stages frozen after the stem; the model has "
            f"{count}: {', '.join(model.stage_names)}); got {stages!r}"
        )
    model.frozen_stages = max(model.frozen_stages, stages)
    for name in model.stem_names + model.stage_names[: model.frozen_stages]:
        model.get_submodule(name).requires_grad_(False)
    model.train(model.training)


def unfreeze(model: _Backbone) -> None:
    """Make every parameter trainable again and release the modules :func:`freeze` held.

    Raises:
        TypeError: ``model`` is neither a ``ResNet`` nor a ``ResNetFeatures``.
    """
    _check_model(model)
    model.frozen_stages = -1
    model.requires_grad_(True)
    model.train(model.training)


def param_groups(
    model: _Backbone,
    *,
    lr: float,
    decay: float = 1.0,
    weight_decay: float | None = None,
    no_decay_norm_bias: bool = False,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups ``stem``, ``layer1`` .. ``layerN``, ``head``, in that order:
    the head (``fc``, a final norm) learns at ``lr``, each earlier group ``decay`` times slower
    (layer-wise learning-rate decay), recorded as its ``lr_scale``. ``weight_decay`` sets the
    groups' decay (default: the optimizer's); ``no_decay_norm_bias`` puts the 1-d parameters
    in ``<name>.no_decay`` groups with ``weight_decay=0``. Frozen parameters and empty groups
    are left out.

    Raises:
        TypeError: ``model`` is neither a ``ResNet`` nor a ``ResNetFeatures``.
        ValueError: ``lr`` or ``decay`` is not a number > 0, or ``weight_decay`` a
            number >= 0.

    Examples:
        >>> import torch, resnetlib as rl
        >>> groups = rl.interop.param_groups(rl.resnet20(), lr=0.1, decay=0.5)
        >>> [(group["name"], group["lr"]) for group in groups]
        [('stem', 0.00625), ('layer1', 0.0125), ('layer2', 0.025), ('layer3', 0.05), ('head', 0.1)]
        >>> optimizer = torch.optim.SGD(groups, momentum=0.9)
    """
    _check_model(model)
    for field, value in (("lr", lr), ("decay", decay)):
        if not is_real(value) or not 0 < value < math.inf:
            raise ValueError(f"{field} must be a number > 0; got {value!r}")
    if weight_decay is not None and not (is_real(weight_decay) and 0 <= weight_decay < math.inf):
        raise ValueError(f"weight_decay must be a number >= 0 or None; got {weight_decay!r}")
    order = ["stem", *model.stage_names, "head"]
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        top = name.split(".", 1)[0]
        owner = "stem" if top in model.stem_names else top if top in model.stage_names else "head"
        exempt = no_decay_norm_bias and parameter.ndim <= 1
        buckets.setdefault((owner, exempt), []).append(parameter)
    groups: list[dict[str, Any]] = []
    for index, name in enumerate(order):
        scale = float(decay) ** (len(order) - 1 - index)
        for exempt, group_decay in ((False, weight_decay), (True, 0.0)):
            if params := buckets.get((name, exempt)):
                group: dict[str, Any] = {
                    "name": f"{name}.no_decay" if exempt else name,
                    "params": params,
                    "lr": lr * scale,
                    "lr_scale": scale,
                }
                if group_decay is not None:
                    group["weight_decay"] = float(group_decay)
                groups.append(group)
    return groups
