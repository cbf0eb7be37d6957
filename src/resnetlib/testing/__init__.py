"""Conformance checks for extenders: does a block, shortcut or stem keep the library's contracts?

:func:`check_block`, :func:`check_shortcut` and :func:`check_stem` run seeded checks on a
class, registered or not, leaving the caller's random state alone. :func:`fuzz_block` and
:mod:`resnetlib.testing.strategies` need hypothesis (``pip install 'resnetlib[testing]'``).
"""

from __future__ import annotations

from .blocks import BLOCK_CHECKS, check_block
from .checks import CheckResult, ConformanceError, ConformanceReport
from .fuzz import FUZZ_PROPERTIES, fuzz_block
from .shortcuts import SHORTCUT_CHECKS, check_shortcut
from .stems import STEM_CHECKS, check_stem

__all__ = [
    "BLOCK_CHECKS",
    "FUZZ_PROPERTIES",
    "SHORTCUT_CHECKS",
    "STEM_CHECKS",
    "CheckResult",
    "ConformanceError",
    "ConformanceReport",
    "check_block",
    "check_shortcut",
    "check_stem",
    "fuzz_block",
]
