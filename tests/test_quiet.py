"""The commands print only their own output: no warning from an import before it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_numpy_is_a_dependency() -> None:
    # Without numpy, `import torch` itself prints "Failed to initialize NumPy" on stderr
    # before any of resnetlib's code runs, so no filter in the command could stop it.
    match = re.search(r"^dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M)
    assert match is not None
    assert re.findall(r'"([\w-]+)', match.group(1)) == ["torch", "typing-extensions", "numpy"]


def test_the_readmes_first_command_prints_only_its_output() -> None:
    # The console script installed beside this interpreter.
    command = [
        Path(sys.executable).parent / "resnetlib",
        "summary",
        "resnet56",
        "--input",
        "3,32,32",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.splitlines()[0] == "resnet56"
