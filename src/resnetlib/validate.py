"""Value checks shared by every validator in resnetlib: one wording for each kind of error
(and no ``bool`` passing for an ``int``)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeGuard

from .limits import MAX_CHANNELS, MAX_IMAGE_SIDE

__all__ = [
    "INPUT_SIZE_RULE",
    "check_input_size",
    "check_int",
    "check_keys",
    "check_patterns",
    "close_matches",
    "is_int",
    "is_real",
    "one_line",
]


def is_int(value: object) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[int | float]:
    """True for an ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def close_matches(word: str, known: Collection[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The (up to ``n``) entries of ``known`` closest to ``word``, ignoring case: the one
    "did you mean" of every unknown-name message."""
    by_lower = {name.lower(): name for name in known}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), by_lower, n, cutoff)]


def check_int(
    name: str, value: object, minimum: int = 1, maximum: int | None = None, *, bound: str = ""
) -> int:
    """``value`` if it is an int (not a bool) in ``[minimum, maximum]``, else a ``ValueError``
    naming ``name`` and what is allowed (``bound``: whose limit ``maximum`` is)."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    if maximum is not None and value > maximum:
        whose = f" ({bound})" if bound else ""
        raise ValueError(f"{name} must be an int <= {maximum:,}{whose}; got {value}")
    return value


def check_keys(
    owner: str,
    data: object,
    allowed: Collection[str],
    required: Collection[str] = (),
    *,
    what: str = "keys",
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """``data`` as a new dict: a mapping with no key outside ``allowed`` and all of
    ``required``, else a ``ValueError`` (``error`` for unknown keys, with close matches)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{owner} must be a dict; got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        hints = [
            f"{match[0]!r} for {key!r}"
            for key in unknown
            if isinstance(key, str) and (match := close_matches(key, allowed))
        ]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise error(f"{owner} has unknown {what} {unknown}{hint}; allowed: {sorted(allowed)}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise ValueError(f"{owner} is missing keys {missing}")
    return dict(data)


def refusal(name: str, rule: str, value: object) -> ValueError:
    """``ValueError("NAME RULE; got VALUE")``, the value as :func:`one_line` shows it."""
    return ValueError(f"{name} {rule}; got {one_line(value)}")


def one_line(value: object, limit: int = 200) -> str:
    """``repr(value)`` on one line (a module's repr spans many), cut at ``limit`` characters."""
    text = re.sub(r"\s*\n\s*", " ", repr(value))
    return text if len(text) <= limit else text[:limit] + "..."


def check_patterns(what: str, pattern: object) -> list[str]:
    """``pattern``, a shell-style pattern or an iterable of them (a list, tuple, set), as a
    list; anything else (bytes, a number, None) is a ``ValueError`` naming ``what``."""
    patterns: list[object] = [pattern]
    if isinstance(pattern, Iterable) and not isinstance(pattern, (str, bytes, Mapping)):
        patterns = list(pattern)
    for each in patterns:
        if not isinstance(each, str):
            rule = "must be a str such as 'resnet*' (or a list of them)"
            raise refusal(f"a {what} pattern", rule, each)
    return [str(each) for each in patterns]


INPUT_SIZE_RULE = (
    f"must be (channels, height, width): channels up to {MAX_CHANNELS:,}, sides up to "
    f"{MAX_IMAGE_SIDE:,} (resnetlib.limits)"
)
"""What :func:`check_input_size` allows, as its messages say it."""


def check_input_size(
    value: object, *, name: str = "input_size", in_channels: int | None = None
) -> tuple[int, int, int]:
    """``value`` (a tuple or list of three ints, not bools) as ``(channels, height, width)``
    within ``INPUT_SIZE_RULE``, with ``in_channels`` channels if given: the one check of
    an input size (data configs, ``--input``, exports).

    Raises:
        ValueError: naming ``name``, the value and what is allowed.
    """
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or not all(is_int(v) for v in value)
        or not 1 <= value[0] <= MAX_CHANNELS
        or not all(1 <= side <= MAX_IMAGE_SIDE for side in value[1:])
    ):
        takes = "" if in_channels is None else f" (the model takes {in_channels} channels)"
        raise refusal(name, f"{INPUT_SIZE_RULE}{takes}", value)
    if in_channels is not None and value[0] != in_channels:
        raise ValueError(
            f"{name} {tuple(value)} has {value[0]} channels; the model takes {in_channels} "
            "(its in_channels)"
        )
    return (int(value[0]), int(value[1]), int(value[2]))
