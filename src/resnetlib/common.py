"""What every layer shares: the path type, optional imports and the inference context.

The bottom layer, beside :mod:`resnetlib.validate`: it imports nothing from resnetlib.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TypeAlias

import torch
from torch import nn

__all__ = ["PathLike", "evaluating", "optional_import"]

PathLike: TypeAlias = str | os.PathLike[str]
"""A file path as ``open`` takes it: a ``str`` or a ``pathlib.Path`` (any ``os.PathLike``)."""


def optional_import(module: str, needs: str, extra: str) -> ModuleType:
    """Import ``module`` from an optional dependency, or say which extra installs it.

    ``needs`` starts the message ("plotting needs matplotlib"); the pip command follows.

    Raises:
        ModuleNotFoundError: (an ``ImportError``) ``module`` is not installed; the message
            is ``'<needs>: pip install "resnetlib[<extra>]"'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ModuleNotFoundError(
            f'{needs}: pip install "resnetlib[{extra}]"', name=module.partition(".")[0]
        ) from error


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the duration; ``module``'s mode is restored after.

    Restores the mode of ``module`` itself (``train(mode)`` sets every submodule to it),
    also when the body raises.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)
