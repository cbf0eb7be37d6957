"""The documentation works as written: every Python block runs, the model table is current."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.torch_version import TorchVersion

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A snippet that needs a newer torch than the library's floor is marked with an HTML
# comment on the line above its fence: <!-- requires torch >= 2.6 -->.
PYTHON_BLOCK = re.compile(
    r"^(?:<!-- requires torch >= ([0-9.]+) -->\n)?```python\n(.*?)^```", re.DOTALL | re.MULTILINE
)


def python_blocks(page: Path) -> list[str]:
    return [block for _, block in PYTHON_BLOCK.findall(page.read_text())]


def runnable_blocks(page: Path) -> tuple[list[str], list[str]]:
    """The blocks this torch can run, and a note for each one it cannot."""
    blocks, notes = [], []
    for number, (needs, block) in enumerate(PYTHON_BLOCK.findall(page.read_text()), start=1):
        if needs and TorchVersion(torch.__version__) < needs:
            notes.append(f"snippet {number} needs torch >= {needs}")
        else:
            blocks.append(block)
    return blocks, notes


SELF_CONTAINED = "Every snippet below is self-contained"
"""A page that says so has each block run alone; the others' blocks run in order, as one
session, as a reader would run them (docs/using-resnetlib.md says so)."""

# Each block in a fresh __main__ module (so pickling the classes it defines works), in one
# process: a block that uses a name from another fails with NameError.
RUN_EACH_ALONE = """
import json, sys, types
for number, source in enumerate(json.load(sys.stdin), start=1):
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    exec(compile(source, f"<snippet {number}>", "exec"), module.__dict__)
"""


def run_python(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        input=stdin,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs_as_the_page_says(page: Path) -> None:
    blocks, notes = runnable_blocks(page)
    text = " ".join(page.read_text().split())
    if SELF_CONTAINED in text:
        result = run_python(["-c", RUN_EACH_ALONE], stdin=json.dumps(blocks))
    else:
        result = run_python(["-c", "\n\n".join(blocks)])
    assert result.returncode == 0, f"{page.name}:\n{result.stderr}"
    if notes:  # the rest ran and passed; say what did not run
        pytest.skip(f"{page.name}: {'; '.join(notes)}; this is torch {torch.__version__}")


def test_a_snippet_for_a_newer_torch_is_left_out_with_a_note(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\n```\n\n<!-- requires torch >= 999.0 -->\n```python\ny = 2\n```\n"
    )
    assert runnable_blocks(page) == (["x = 1\n"], ["snippet 2 needs torch >= 999.0"])
    assert python_blocks(page) == ["x = 1\n", "y = 2\n"]


def test_a_self_contained_page_runs_each_snippet_alone() -> None:
    blocks = ["import pickle\nclass Shared:\n    pass\npickle.dumps(Shared())", "Shared"]
    result = run_python(["-c", RUN_EACH_ALONE], stdin=json.dumps(blocks))
    assert result.returncode != 0
    assert 'File "<snippet 2>"' in result.stderr
    assert "NameError: name 'Shared' is not defined" in result.stderr


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
