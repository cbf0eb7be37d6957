"""Each policy is decided in one function (issue 26): a source scan that fails when a second
place starts deciding it again, beside the behaviour tests of each function."""

from __future__ import annotations

import ast
from pathlib import Path

import resnetlib

SRC = Path(resnetlib.__file__).parent


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(SRC).as_posix(): ast.parse(path.read_text(), str(path))
        for path in sorted(SRC.rglob("*.py"))
    }


def _functions_doing(tree: ast.Module, found: type[ast.AST], test: object) -> list[str]:
    """The names of the functions (``<module>`` at top level) holding a node that passes."""
    places = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, found) and test(inner):  # type: ignore[operator]
                    places.append(node.name)
    return places


def _writes_pretrained_cfg(node: ast.AST) -> bool:
    if isinstance(node, ast.AnnAssign) and node.value is None:  # a declaration
        return False
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[attr-defined]
    for target in targets:
        while isinstance(target, ast.Subscript):  # cfg["mean"] = ...
            target = target.value
        if isinstance(target, ast.Attribute) and target.attr == "pretrained_cfg":
            return True
    return False


def _calls(attribute: str, owner: str | None = None) -> object:
    def test(node: ast.Call) -> bool:
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr == attribute):
            return False
        return owner is None or ast.unparse(func.value).endswith(owner)

    return test


def test_a_models_data_config_is_set_by_set_data_config_alone() -> None:
    writers = {
        f"{name}:{function}"
        for name, tree in _modules().items()
        for kind in (ast.Assign, ast.AugAssign, ast.AnnAssign)
        for function in _functions_doing(tree, kind, _writes_pretrained_cfg)
    }
    updates = {
        f"{name}:{function}"
        for name, tree in _modules().items()
        for function in _functions_doing(tree, ast.Call, _calls("update", "pretrained_cfg"))
    }
    # timm's older name for the attribute (default_cfg) is the same property, no writer.
    assert writers == {"core/data_config.py:set_data_config"}
    assert not updates


def test_the_device_is_resolved_in_one_function() -> None:
    deciders = {
        f"{name}:{function}"
        for name, tree in _modules().items()
        for function in _functions_doing(tree, ast.Call, _calls("is_available", "cuda"))
    }
    assert deciders == {"common.py:resolve_device"}


def test_checkpoint_or_state_dict_is_decided_by_is_checkpoint() -> None:
    from resnetlib.interop import checkpoint

    source = (SRC / "interop" / "checkpoint.py").read_text()
    assert source.count('.get("format") == FORMAT') == 1
    tree = ast.parse(source)
    users = set(_functions_doing(tree, ast.Call, lambda n: ast.unparse(n.func) == "is_checkpoint"))
    assert "read_weights_file" in users
    assert checkpoint.is_checkpoint({"format": checkpoint.FORMAT})
    assert not checkpoint.is_checkpoint({"fc.weight": 0})
