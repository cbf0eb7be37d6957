"""Conformance checks for extenders: does a block, shortcut or stem keep the library's contracts?

:func:`check_block` runs every block property the library relies on (shapes at each stride
and channel change under every shortcut strategy, gradients, zero-init, drop path,
dilation, norm and activation options, batch independence, serialization and a spec round
trip) against any :class:`~resnetlib.ResidualBlock` subclass, registered or not, and
returns a :class:`ConformanceReport` naming each violated check with a readable reason.
:func:`check_shortcut` and :func:`check_stem` do the same for shortcut strategies and
stems. The checks are seeded and leave the caller's random state untouched; they run on
the CPU unless given a ``device``. They need nothing beyond PyTorch (no test framework).

:func:`fuzz_block` goes further on generated whole networks of a block; it needs
hypothesis (``pip install 'resnetlib[testing]'``), as does
:mod:`resnetlib.testing.strategies`, whose strategies it draws from.

One module per subject: :mod:`~resnetlib.testing.blocks`,
:mod:`~resnetlib.testing.shortcuts`, :mod:`~resnetlib.testing.stems`,
:mod:`~resnetlib.testing.fuzz` and :mod:`~resnetlib.testing.strategies`, over the shared
machinery in :mod:`~resnetlib.testing.checks`.
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
