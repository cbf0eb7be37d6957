"""Named registries for blocks, shortcuts, stems and model factories."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Generic, NoReturn, TypeVar, overload

from .validate import close_matches, refusal

T = TypeVar("T")

__all__ = ["Registry", "UnknownNameError"]


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the digit runs in ``name`` as numbers."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )


# What a registered name may not contain, and why: each would make the name unbuildable.
_NAME_RULES = (
    (".", "'.' separates a pretrained tag, as in resnet50.a1_in1k"),
    ("/", "a path separator makes it read as a file"),
    ("\\", "a path separator makes it read as a file"),
    (":", "':' makes it read as a local-dir: or hf-hub: folder"),
)


def check_name(kind: str, name: str) -> None:
    """Refuse (``ValueError``) a name that no lookup could find: the one rule of every
    registry."""
    if not name.isprintable() or any(char.isspace() for char in name):
        raise refusal(f"a {kind} name", "must not hold whitespace or control characters", name)
    for char, why in _NAME_RULES:
        if char in name:
            raise refusal(f"a {kind} name", f"must not contain {char!r} ({why})", name)


class UnknownNameError(KeyError):
    """A registry lookup failed; the message lists the known names and close matches.
    ``kind``: the registry's (``"block"``, ``"model"``, ...); empty for a lookup that no
    registration can answer (a pretrained tag)."""

    kind: str = ""

    def __str__(self) -> str:
        return str(self.args[0])


def subclass_of(base: type, kind: str) -> Callable[[str, object], None]:
    """A registry validator that admits only subclasses of ``base``."""

    def validate(name: str, item: object) -> None:
        if not (isinstance(item, type) and issubclass(item, base)):
            raise TypeError(f"{kind} {name!r} must be a {base.__name__} subclass; got {item!r}")

    return validate


class Registry(dict[str, T], Generic[T]):
    """A read-only mapping from names to objects of one kind, iterated in sorted order: an
    unknown name raises :class:`UnknownNameError` (a ``KeyError``) naming the known entries and
    the closest; entries change only through :meth:`register` and :meth:`unregister`."""

    def __init__(self, kind: str, validate: Callable[[str, T], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._validate = validate

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"the {self.kind} registry changes only through register and unregister")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _read_only

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    @overload
    def register(self, name: T) -> T: ...

    def register(self, name: str | T, obj: T | None = None) -> T | Callable[[T], T]:
        """Register ``obj`` under ``name`` and return it; without ``obj``, return a decorator
        that does. Used bare (``@register_model``), it registers what it decorates under its
        own ``__name__``.

        Raises:
            ValueError: ``name`` is empty, already registered, or holds whitespace, ``.``
                (a pretrained tag's separator), ``/``, ``\\`` or ``:`` (a path or folder).
            TypeError: ``obj`` is not of the registry's kind.

        Examples:
            >>> import resnetlib as rl
            >>> @rl.register_model
            ... def tiny_resnet(**overrides):
            ...     return rl.cifar_resnet(8, **overrides)
            >>> rl.create_model("tiny_resnet", num_classes=2).fc.out_features
            2
            >>> _ = rl.models.MODELS.unregister("tiny_resnet")
        """
        if obj is None and not isinstance(name, str) and callable(name):
            bare: T = name  # used bare: the decorated function or class itself
            own = getattr(bare, "__name__", None)
            if not isinstance(own, str) or not own or own == "<lambda>":
                raise ValueError(
                    f"{self.kind} {bare!r} has no name of its own; register it as "
                    f'register("name", obj) or decorate with @register("name")'
                )
            return self.register(own, bare)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string; got {name!r}")
        check_name(self.kind, name)
        key: str = name

        def add(item: T) -> T:
            if key in self:
                raise ValueError(
                    f"{self.kind} {key!r} is already registered "
                    f"(as {self[key]!r}); unregister it first or pick another name"
                )
            if self._validate is not None:
                self._validate(key, item)
            dict.__setitem__(self, key, item)
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what was registered (:class:`UnknownNameError` if none)."""
        item = self.get(name)
        dict.__delitem__(self, name)
        return item

    def get(self, name: str) -> T:  # type: ignore[override]
        """``registry[name]``, also for an unhashable ``name`` (an :class:`UnknownNameError`)."""
        try:
            return self[name]
        except TypeError:  # unhashable
            raise self._unknown(name) from None

    def __missing__(self, name: str) -> T:
        raise self._unknown(name)

    def name_of(self, obj: object) -> str | None:
        """The name ``obj`` is registered under, or ``None``."""
        return next((name for name, item in self.items() if item is obj), None)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, digit runs sorted as numbers."""
        matches = (n for n in dict.__iter__(self) if fnmatch.fnmatchcase(n, pattern))
        return sorted(matches, key=natural_key)

    def _unknown(self, name: object) -> UnknownNameError:
        known = sorted(self.keys())
        close = close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        error = UnknownNameError(
            f"unknown {self.kind} {name!r}; known: {', '.join(known) or '(none)'}{hint}"
        )
        error.kind = self.kind
        return error

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys()))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self.keys())})"
