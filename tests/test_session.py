"""The test session's own settings (tests/conftest.py): threads and the skip summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from . import conftest, devices


def test_torch_runs_on_the_session_thread_count_here_and_in_subprocesses() -> None:
    expected = int(os.environ.get("RESNETLIB_TEST_THREADS", "1"))
    assert expected == conftest.THREADS
    assert torch.get_num_threads() == expected
    child = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(child.stdout) == expected


def test_a_bad_thread_count_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNETLIB_TEST_THREADS", "two")
    with pytest.raises(pytest.UsageError, match="RESNETLIB_TEST_THREADS must be an int >= 1"):
        conftest.session_threads()


def skipped(where: str, reason: str) -> pytest.TestReport:
    path, line = where.split(":")
    return pytest.TestReport(
        f"{path}::test",
        (path, int(line), "test"),
        {},
        "skipped",
        (path, int(line), reason),
        "setup",
    )


def test_cuda_skips_fold_into_one_line_and_other_skips_keep_their_place() -> None:
    reports = [
        skipped("tests/test_a.py:10", f"Skipped: {devices.CUDA_REASON}"),
        skipped("tests/test_b.py:20", f"Skipped: {devices.CUDA_REASON}"),
        skipped("tests/test_b.py:30", "needs torchvision installed"),
    ]
    for report in reports:
        conftest.fold_cuda_skip(report)
    where = {report.longrepr for report in reports}
    assert where == {
        (str(Path(devices.__file__)), None, f"Skipped: {devices.CUDA_REASON}"),
        ("tests/test_b.py", 30, "needs torchvision installed"),
    }
