"""The fixture scripts' generator-free weights and input, importable by every test."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` by path (``scripts/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_script = load_script("make_torchvision_fixture")
deterministic_fill_: Callable[[nn.Module], None] = _script.deterministic_fill_
fixed_input: Callable[[], torch.Tensor] = _script.fixed_input
