"""torch.hub entry points: every registered resnetlib model, by its registry name.

    model = torch.hub.load("path/to/resnetlib", "resnet50", source="local", num_classes=10)

Each entry point takes :func:`resnetlib.create_model`'s keyword arguments (the factory
overrides, plus ``features_only`` and ``out_indices``). The entry points are generated from
the model registry, so every factory the package registers is one.
"""

from __future__ import annotations

import sys as _sys
from collections.abc import Callable as _Callable
from pathlib import Path as _Path
from typing import Any as _Any

dependencies = ["torch"]

_SRC = str(_Path(__file__).resolve().parent / "src")
if _SRC not in _sys.path:
    _sys.path.insert(0, _SRC)

import resnetlib as _rl  # noqa: E402


def _entry_point(name: str) -> _Callable[..., _Any]:
    factory = _rl.models.MODELS.get(name)

    def entry_point(**kwargs: _Any) -> _Any:
        return _rl.create_model(name, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__doc__ = (
        f"{factory.__doc__ or name}\n\n"
        "Keyword arguments: resnetlib.create_model's (overrides, features_only, out_indices)."
    )
    return entry_point


for _name in _rl.list_models():
    globals()[_name] = _entry_point(_name)
