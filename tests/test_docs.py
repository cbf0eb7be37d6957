"""The documentation works as written: every Python block runs, the model table is current."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs(page: Path) -> None:
    # One process per page: a page's blocks may build on each other, as a reader's would.
    source = "\n\n".join(python_blocks(page))
    result = subprocess.run(
        [sys.executable, "-c", source],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stderr}"


def load_docs_script() -> Any:
    script = ROOT / "scripts" / "make_model_docs.py"
    spec = importlib.util.spec_from_file_location("make_model_docs", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_pages_are_generated_from_the_code() -> None:
    module = load_docs_script()
    stale = "is stale: run python scripts/make_model_docs.py"
    assert (ROOT / "docs" / "models.md").read_text() == module.render(), f"models.md {stale}"
    pages = module.render_pages()
    assert sorted(pages) == sorted((ROOT / "docs" / "models").glob("*.md")), "pages differ"
    for path, text in pages.items():
        assert path.read_text() == text, f"{path.name} {stale}"


def test_readme_table_rows_are_the_generated_ones() -> None:
    generated = {
        line
        for page in (ROOT / "docs" / "models").glob("*.md")
        for line in page.read_text().splitlines()
    }
    rows = [
        line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")
    ]
    assert len(rows) >= 19
    assert [row for row in rows if row not in generated] == []
