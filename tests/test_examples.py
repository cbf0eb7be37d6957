"""The examples run as scripts, each in a subprocess so its registrations stay out of here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_custom_block_example() -> None:
    result = run_example("custom_block.py")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    # ResNet-20 (269,722) plus 8,484 SE parameters; the 100-class head adds 5,850 more.
    for expected in (
        "spec se_basic: 9 SE blocks, 278,206 parameters, output shape (4, 10)",
        "create_model se_resnet20: 9 SE blocks, 284,056 parameters, output shape (4, 100)",
        "resnet20 without SE: 269,722 parameters",
        "zero_init_residual: last norm zeroed in 9 blocks",
    ):
        assert expected in result.stdout, f"missing {expected!r} in:\n{result.stdout}"
