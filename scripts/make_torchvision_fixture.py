"""Write ``tests/fixtures/torchvision_resnet.json``: torchvision's ResNet-18/50, ResNeXt-50 32x4d
and Wide ResNet-50-2 reference.

Run with an environment that has torchvision::

    python scripts/make_torchvision_fixture.py

Both models get the same generator-free weights (:func:`deterministic_fill_`) and the same
input (:func:`fixed_input`); the fixture records each model's ``state_dict`` keys and shapes
and its float64 eval-mode logits, so resnetlib can be checked against torchvision without
installing it. This module imports torchvision only inside :func:`main`, so the tests can
import the two helpers from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "torchvision_resnet.json"
MODELS = ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2")
INPUT_SHAPE = (2, 3, 64, 64)


_MODULUS = 1_000_003  # prime; phases are exact int64 residues, so no rounding drift
CONV_GAIN = 1.5  # sin has RMS 1/sqrt(2): conv weights get std ~1.06/sqrt(fan_in)


def _wave(numel: int, index: int) -> torch.Tensor:
    """``numel`` float64 values in [-1, 1]: ``sin`` of a quadratic phase of an ``arange``.

    The phase ``(a k^2 + b k + c) mod p`` is computed exactly in int64 and depends on
    ``index``; unlike a plain ``sin(w k)`` it does not cancel in convolutions and dot products.
    """
    k = torch.arange(numel, dtype=torch.int64)
    a = 1 + (7919 * (index + 1)) % (_MODULUS - 1)
    phase = ((k * k) % _MODULUS * a + k * (104729 + 31 * index) + 97 * index) % _MODULUS
    return torch.sin(phase.to(torch.float64) * (2 * math.pi / _MODULUS))


@torch.no_grad()
def deterministic_fill_(module: nn.Module) -> None:
    """Overwrite every floating parameter and buffer with generator-free values, in place.

    Each tensor's values come from ``torch.sin`` of an ``arange`` (computed in float64),
    keyed on the tensor's index among the sorted ``state_dict()`` keys, so two models with
    the same keys get the same values whatever their registration order or torch version.
    Convolution weights are ``1.5 sin / sqrt(fan_in)``, linear weights ``sin / sqrt(fan_in)``,
    norm weights ``1 + 0.1 sin``, running variances ``1 + 0.5 |sin|``, other floats
    ``0.1 sin``: a 50-layer net in eval mode gives logits of order 1.
    Values are cast to each tensor's dtype; integer buffers (``num_batches_tracked``) are
    left alone.
    """
    state = module.state_dict()
    for index, key in enumerate(sorted(state)):
        tensor = state[key]
        if not tensor.is_floating_point():
            continue
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name)
        wave = _wave(tensor.numel(), index).reshape(tensor.shape)
        if leaf == "weight" and isinstance(owner, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            value = CONV_GAIN * wave / math.sqrt(tensor[0].numel())
        elif leaf == "weight" and isinstance(owner, nn.Linear):
            value = wave / math.sqrt(tensor[0].numel())
        elif leaf == "weight" and isinstance(
            owner, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
        ):
            value = 1.0 + 0.1 * wave
        elif leaf == "running_var":
            value = 1.0 + 0.5 * wave.abs()
        else:  # biases, running means and anything else
            value = 0.1 * wave
        tensor.copy_(value.to(tensor.dtype))


def fixed_input() -> torch.Tensor:
    """A generator-free float64 batch of shape ``(2, 3, 64, 64)``, values in [-1, 1]."""
    k = torch.arange(math.prod(INPUT_SHAPE), dtype=torch.int64)
    phase = ((k * k) % _MODULUS * 12345 + k * 777) % _MODULUS
    return torch.cos(phase.to(torch.float64) * (2 * math.pi / _MODULUS)).reshape(INPUT_SHAPE)


def _dumps(value: Any, level: int = 0) -> str:
    """JSON that keeps short lists on one line (``[key, shape]`` pairs) and breaks long ones."""
    flat = json.dumps(value)
    if not isinstance(value, (list, dict)) or level + len(flat) <= 100:
        return flat
    pad = " " * (level + 1)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(key)}: {_dumps(item, level + 1)}" for key, item in value.items()
        ]
        brackets = "{}"
    else:
        items = [pad + _dumps(item, level + 1) for item in value]
        brackets = "[]"
    return brackets[0] + "\n" + ",\n".join(items) + "\n" + " " * level + brackets[1]


def reference_entry(name: str, model: nn.Module) -> dict[str, Any]:
    """Fill ``model``, run it in float64 eval mode on :func:`fixed_input`: layout and logits."""
    deterministic_fill_(model)
    model = model.double().eval()
    with torch.no_grad():
        logits = model(fixed_input())
    if not torch.isfinite(logits).all():
        raise RuntimeError(f"{name}: non-finite logits")
    print(f"{name}: logits std {logits.std().item():.4f}, max |.| {logits.abs().max():.4f}")
    return {
        "state_dict": [[key, list(t.shape)] for key, t in model.state_dict().items()],
        "logits": logits.tolist(),
    }


def write_fixture(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as compact, line-broken JSON and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(data) + "\n")
    print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size:,} bytes)")


def main() -> None:
    """Build torchvision's models, fill, run on :func:`fixed_input` and write the fixture."""
    import torchvision
    from torchvision import models

    data: dict[str, Any] = {
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "input_shape": list(INPUT_SHAPE),
        "models": {
            name: reference_entry(name, getattr(models, name)(weights=None)) for name in MODELS
        },
    }
    write_fixture(FIXTURE, data)


if __name__ == "__main__":
    main()
