"""The API reference covers every public name, each with a docstring, and is current."""

from __future__ import annotations

import doctest
import importlib.util
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_script() -> Any:
    script = ROOT / "scripts" / "make_api_docs.py"
    spec = importlib.util.spec_from_file_location("make_api_docs", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_modules_include_the_public_ones() -> None:
    modules = load_script().documented_modules()
    assert {"resnetlib", "resnetlib.testing", "resnetlib.testing_strategies"} <= set(modules)


def test_api_pages_are_generated_from_the_code() -> None:
    script = load_script()
    pages = script.render_pages()
    assert sorted(pages) == sorted((ROOT / "docs" / "api").glob("*.md")), "pages differ"
    stale = "is stale: run python scripts/make_api_docs.py"
    for path, text in pages.items():
        assert path.read_text() == text, f"{path.name} {stale}"


def test_every_public_name_has_a_docstring() -> None:
    assert load_script().undocumented() == []


def test_every_public_name_appears_in_the_api_pages() -> None:
    script = load_script()
    rendered = {
        match
        for page in (ROOT / "docs" / "api").glob("*.md")
        for match in re.findall(r"^::: ([\w.]+)$", page.read_text(), re.MULTILINE)
    }
    missing = []
    for module_name in script.documented_modules():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if isinstance(getattr(module, name), type(module)):
                assert getattr(module, name).__name__ in script.documented_modules()
                continue
            where, local = script.home(module_name, name)
            if f"{where}.{local}" not in rendered:
                missing.append(f"{module_name}.{name}")
    assert missing == []


def test_the_examples_in_the_docstrings_run() -> None:
    script = load_script()
    homes = {
        script.home(module_name, name)[0]
        for module_name in script.documented_modules()
        for name in importlib.import_module(module_name).__all__
        if not isinstance(getattr(importlib.import_module(module_name), name), type(doctest))
    }
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    attempted = 0
    for module_name in sorted(homes):
        result = doctest.testmod(importlib.import_module(module_name), optionflags=flags)
        assert result.failed == 0, module_name
        attempted += result.attempted
    assert attempted >= 20


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert [page for page in pages if not re.search(rf"\s{re.escape(page)}\s*$", nav, re.M)] == []
