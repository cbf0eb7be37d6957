"""griffe extensions for the documentation site (loaded by mkdocs.yml, in this order).

``RuntimeFunctions``: a function made at run time and bound to a module name (the model
factories, ``resnet18 = _imagenet(...)``) is documented as the function it is, with its
signature and docstring, not as an attribute showing its source.

``SphinxRoles``: resnetlib's docstrings name other objects with Sphinx roles (``:func:`build```,
``:class:`~resnetlib.ResNet```), which read well in source and in ``help()``. mkdocstrings
renders Markdown, so this turns each role into a cross-reference that mkdocs-autorefs
resolves (``[`build`][build]``, scoped to the docstring's object); the strict build fails
on any that does not resolve. Roles naming torch's objects become code without a link.
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


class RuntimeFunctions(griffe.Extension):
    """Replaces module attributes whose value is a function with that function."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for module in _modules(pkg):
            attributes = [
                name
                for name, member in module.members.items()
                if not member.is_alias and member.is_attribute
            ]
            if not attributes:
                continue
            try:
                inspected = griffe.inspect(module.path)
            except ImportError:  # needs an optional package (testing_strategies: hypothesis)
                continue
            for name in attributes:
                runtime = inspected.members.get(name)
                if runtime is None or runtime.is_alias or not runtime.is_function:
                    continue
                static = module.members[name]
                function = griffe.Function(
                    name,
                    lineno=static.lineno,
                    endlineno=static.endlineno,
                    parameters=runtime.parameters,
                    returns=runtime.returns,
                    docstring=runtime.docstring,
                )
                for expression in [runtime.returns, *(p.annotation for p in runtime.parameters)]:
                    if isinstance(expression, griffe.Expr):
                        for part in expression.iterate(flat=False):
                            if isinstance(part, griffe.ExprName):
                                part.parent = module
                module.set_member(name, function)
                if function.docstring is not None:
                    function.docstring.parent = function


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


def _modules(module: griffe.Module) -> Iterator[griffe.Module]:
    yield module
    for member in module.members.values():
        if not member.is_alias and isinstance(member, griffe.Module):
            yield from _modules(member)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and everything defined in it (not what it imports)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            yield from _objects(member)
