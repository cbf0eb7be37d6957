"""A griffe extension for the documentation site: Sphinx roles in docstrings become links.

resnetlib's docstrings name other objects with Sphinx roles (``:func:`build```,
``:class:`~resnetlib.ResNet```), which read well in source and in ``help()``. mkdocstrings
renders Markdown, so this turns each role into a cross-reference that mkdocs-autorefs
resolves (``[`build`][build]``, scoped to the docstring's object); the strict build fails
on any that does not resolve. Roles naming torch's objects become code without a link.
Loaded by mkdocs.yml (``extensions: scripts/griffe_sphinx_roles.py:SphinxRoles``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|exc|mod|data|attr|obj|const):`(~?)([\w.]+)(\(\))?`")
EXTERNAL = ("torch.", "nn.", "typing.", "collections.", "os.", "pathlib.", "hypothesis.")


def to_markdown(text: str, canonical: Callable[[str], str] = str) -> str:
    """``text`` with every Sphinx role replaced by a Markdown cross-reference.

    ``canonical`` maps a target to the path it is documented under (a re-exported name's
    own module), so that ``resnetlib.ResidualBlock.init_weights`` links to the method.
    """

    def replace(match: re.Match[str]) -> str:
        short, target, _ = match.groups()
        shown = target.rpartition(".")[2] if short else target
        if target.startswith(EXTERNAL):
            return f"`{shown}`"
        return f"[`{shown}`][{canonical(target)}]"

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles in every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        def canonical(target: str) -> str:
            if not target.startswith(f"{pkg.name}."):
                return target  # a name in the docstring's scope (scoped_crossrefs)
            try:
                return str(loader.modules_collection[target].canonical_path)
            except (KeyError, griffe.AliasResolutionError):
                return target  # left for the strict build to report

        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(obj.docstring.value, canonical)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and everything defined in it (not what it imports)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            yield from _objects(member)
