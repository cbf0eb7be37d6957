"""Hypothesis strategies for small, valid ResNet specs: the library's own, re-exported."""

from __future__ import annotations

import resnetlib as rl
from resnetlib.testing import strategies as testing_strategies
from resnetlib.testing.strategies import Case, block_options, cases, specs

BLOCKS = testing_strategies.BUILTIN_BLOCKS
STEMS = testing_strategies.BUILTIN_STEMS
SHORTCUTS = testing_strategies.BUILTIN_SHORTCUTS
RESIDUAL_SHORTCUTS = tuple(s for s in SHORTCUTS if rl.nn.SHORTCUTS.get(s).adds_shortcut)
NORMS = testing_strategies.BUILTIN_NORMS
ACTS = testing_strategies.BUILTIN_ACTS

__all__ = [
    "ACTS",
    "BLOCKS",
    "NORMS",
    "RESIDUAL_SHORTCUTS",
    "SHORTCUTS",
    "STEMS",
    "Case",
    "block_options",
    "cases",
    "specs",
]
