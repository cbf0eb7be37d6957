"""Deprecated: the strategies moved to :mod:`resnetlib.testing.strategies`.

Importing this module still works and warns (``DeprecationWarning``); it will be removed
in a later release.
"""

from __future__ import annotations

import warnings

from .testing.strategies import (
    BUILTIN_ACTS,
    BUILTIN_BLOCKS,
    BUILTIN_NORMS,
    BUILTIN_SHORTCUTS,
    BUILTIN_STEMS,
    Case,
    block_options,
    cases,
    specs,
)

__all__ = [
    "BUILTIN_ACTS",
    "BUILTIN_BLOCKS",
    "BUILTIN_NORMS",
    "BUILTIN_SHORTCUTS",
    "BUILTIN_STEMS",
    "Case",
    "block_options",
    "cases",
    "specs",
]

warnings.warn(
    "resnetlib.testing_strategies is deprecated: import resnetlib.testing.strategies instead",
    DeprecationWarning,
    stacklevel=2,
)
