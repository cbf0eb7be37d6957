"""Value checks shared by the validators: an int is an int, never a ``bool``.

``isinstance(True, int)`` holds in Python, so ``num_classes=True`` would pass a plain
``isinstance`` check; every validator in resnetlib refuses it through these.
"""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["is_int", "is_real"]


def is_int(value: object) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[int | float]:
    """True for an ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
