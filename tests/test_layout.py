"""The package layout keeps one direction of imports, and ``import resnetlib`` stays light.

Every module of src/resnetlib belongs to a layer (the most specific prefix below wins); a
module may import its own layer and the layers below it, never one above. Imports inside
functions and under ``TYPE_CHECKING`` count too: a lazy import is still a dependency.
docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "resnetlib"

# Lowest first. A module's layer is that of the longest prefix naming it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "resnetlib.common",
            "resnetlib.files",
            "resnetlib.images",
            "resnetlib.limits",
            "resnetlib.registry",
            "resnetlib.validate",
        ),
    ),
    ("data", ("resnetlib.core.spec", "resnetlib.core.data_config")),
    ("parts", ("resnetlib.nn",)),
    ("core", ("resnetlib.core",)),
    ("interop", ("resnetlib.interop",)),
    ("models", ("resnetlib.models",)),
    (
        "tools",
        (
            "resnetlib.analysis",
            "resnetlib.testing",
            "resnetlib.train",
            "resnetlib.deploy",
        ),
    ),
    # The package's front door and the command line (the subcommand modules plug into it).
    (
        "entry",
        (
            "resnetlib",
            "resnetlib.__main__",
            "resnetlib.cli",
            "resnetlib.train.cli",
            "resnetlib.deploy.cli",
        ),
    ),
]

# The tools are independent of one another: each builds on the layers below only.
INDEPENDENT = ("resnetlib.testing", "resnetlib.train", "resnetlib.deploy", "resnetlib.analysis")

# (importer, imported) pairs allowed to break the rules above, each with its reason (none
# today: add one only with a reason a reader accepts).
ALLOWED: dict[tuple[str, str], str] = {}

# (importer, imported module, name): imports of another module's private name allowed, each
# with its reason (none today: add one only with a reason a reader accepts).
PRIVATE_ALLOWED: dict[tuple[str, str, str], str] = {}

# Loaded by none of what `import resnetlib` runs.
NOT_ON_IMPORT = (
    "resnetlib.testing",
    "resnetlib.train",
    "resnetlib.deploy",
    "hypothesis",
    "matplotlib",
    "onnx",
    "onnxruntime",
    "PIL",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> tuple[int, str]:
    """(layer index, the prefix that placed it) for the longest matching prefix."""
    matches = [
        (len(prefix), index, prefix)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if within(name, prefix)
    ]
    if not matches:
        raise LookupError(f"{name} is in no layer: add it to LAYERS in tests/test_layout.py")
    _, index, prefix = max(matches)
    return index, prefix


def import_source(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` in ``package`` reads from."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imports_of(path: Path) -> set[str]:
    """The package's own modules that ``path`` imports, wherever the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = import_source(node, package)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if is_module(submodule) else source)
    return {m for m in found if m == "resnetlib" or m.startswith("resnetlib.")}


def private_imports(name: str, tree: ast.Module, *, is_package: bool = False) -> list[str]:
    """``module.name`` for each underscore name (not a dunder) that module ``name`` imports
    from another of the package's modules, wherever the import statement is."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.startswith("resnetlib")
                and any(is_private(part) for part in alias.name.split("."))
            ]
        elif isinstance(node, ast.ImportFrom):
            source = import_source(node, package)
            if not within(source, "resnetlib") or source == name:
                continue
            found += [f"{source}.{alias.name}" for alias in node.names if is_private(alias.name)]
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 30
    for path in MODULES:
        layer_of(module_name(path))


def violations(importer: str, imported_modules: set[str]) -> list[str]:
    """The imports of ``importer`` that go up a layer or across to another tool."""
    own, _ = layer_of(importer)
    upward = []
    for imported in sorted(imported_modules):
        if (importer, imported) in ALLOWED:
            continue
        theirs, _ = layer_of(imported)
        if theirs > own:
            upward.append(f"{imported} ({LAYERS[theirs][0]})")
        mine = next((p for p in INDEPENDENT if within(importer, p)), None)
        other = next((p for p in INDEPENDENT if within(imported, p)), None)
        if theirs == own and mine and other and mine != other:
            upward.append(f"{imported} (another tool)")
    return upward


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    importer = module_name(path)
    layer = LAYERS[layer_of(importer)[0]][0]
    assert violations(importer, imports_of(path)) == [], f"{importer} ({layer})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    """A name another module shares has no leading underscore (and stays out of its
    ``__all__`` unless users need it): ``_name`` means nothing outside its module uses it."""
    importer = module_name(path)
    tree = ast.parse(path.read_text())
    found = private_imports(importer, tree, is_package=path.name == "__init__.py")
    allowed = {f"{source}.{name}" for (who, source, name) in PRIVATE_ALLOWED if who == importer}
    assert [name for name in found if name not in allowed] == [], importer


def test_the_private_import_rule_catches_one() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from torch.nn.modules.batchnorm import _BatchNorm\n"
        "from . import __version__\n"
        "from .checks import ShapeCase, _Case\n"
        "from ..core.model import _StagedNet\n"
        "import resnetlib._hidden\n"
        "if TYPE_CHECKING:\n"
        "    from resnetlib.train.loop import _Trainer\n"
        "def f() -> None:\n"
        "    from ..nn import _blocks\n"
    )
    found = private_imports("resnetlib.testing.blocks", ast.parse(source))
    assert found == [
        "resnetlib.testing.checks._Case",
        "resnetlib.core.model._StagedNet",
        "resnetlib._hidden",
        "resnetlib.train.loop._Trainer",
        "resnetlib.nn._blocks",
    ]
    package = private_imports("resnetlib.testing", ast.parse(source), is_package=True)
    assert "resnetlib.checks._Case" not in package
    assert "resnetlib.testing.checks._Case" in package
    assert all(key[0] in {module_name(p) for p in MODULES} for key in PRIVATE_ALLOWED)


def test_the_parts_import_nothing_of_core() -> None:
    """nn/ is below core/, as docs/architecture.md draws it: shared limits live in
    resnetlib.limits, not in the spec."""
    for path in sorted((PACKAGE / "nn").glob("*.py")):
        assert not [m for m in imports_of(path) if m.startswith("resnetlib.core")], path.name


def test_the_rule_catches_an_upward_import() -> None:
    # The checker itself: the parts sit below the builder, the builder below the zoo.
    assert layer_of("resnetlib.nn.blocks")[0] < layer_of("resnetlib.core.build")[0]
    assert layer_of("resnetlib.core.spec")[0] < layer_of("resnetlib.nn.blocks")[0]
    assert layer_of("resnetlib.core.model")[0] < layer_of("resnetlib.models.zoo")[0]
    assert layer_of("resnetlib.models.zoo")[0] < layer_of("resnetlib.testing.blocks")[0]
    assert layer_of("resnetlib.train.loop")[0] < layer_of("resnetlib.train.cli")[0]
    blocks = PACKAGE / "nn" / "blocks.py"
    assert "resnetlib.limits" in imports_of(blocks)
    assert "resnetlib.nn.preact" in imports_of(PACKAGE / "models" / "zoo.py")  # from ..nn import
    assert violations("resnetlib.nn.blocks", {"resnetlib.core.build"}) == [
        "resnetlib.core.build (core)"
    ]
    assert violations("resnetlib.core.model", {"resnetlib.models.zoo", "resnetlib.nn"}) == [
        "resnetlib.models.zoo (models)"
    ]
    assert violations("resnetlib.train.loop", {"resnetlib.deploy.fuse"}) == [
        "resnetlib.deploy.fuse (another tool)"
    ]
    assert violations("resnetlib.cli", {"resnetlib.train.cli", "resnetlib.models.zoo"}) == []
    assert violations("resnetlib.testing.fuzz", {"resnetlib.testing.strategies"}) == []


def test_import_resnetlib_stays_light() -> None:
    code = "import json, sys\nimport resnetlib\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    )
    loaded = json.loads(result.stdout)
    assert "resnetlib.models.zoo" in loaded  # building models is what it loads
    heavy = [
        name
        for name in loaded
        for banned in NOT_ON_IMPORT
        if name == banned or name.startswith(banned + ".")
    ]
    assert heavy == []


def test_the_old_strategies_path_is_gone() -> None:
    # resnetlib.testing_strategies was deprecated before any release and is removed: the
    # strategies have one home.
    pytest.importorskip("hypothesis")
    from resnetlib.testing import strategies

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("resnetlib.testing_strategies")
    assert "specs" in strategies.__all__


def test_the_testing_package_keeps_its_public_names() -> None:
    import resnetlib.testing as testing
    from resnetlib.testing import blocks, checks, fuzz, shortcuts, stems

    assert sorted(testing.__all__) == [
        "BLOCK_CHECKS",
        "CheckResult",
        "ConformanceError",
        "ConformanceReport",
        "FUZZ_PROPERTIES",
        "SHORTCUT_CHECKS",
        "STEM_CHECKS",
        "check_block",
        "check_shortcut",
        "check_stem",
        "fuzz_block",
    ]
    homes = {name: getattr(testing, name).__module__ for name in ("check_block", "fuzz_block")}
    assert homes == {"check_block": blocks.__name__, "fuzz_block": fuzz.__name__}
    assert testing.check_shortcut is shortcuts.check_shortcut
    assert testing.check_stem is stems.check_stem
    assert testing.ConformanceReport is checks.ConformanceReport
