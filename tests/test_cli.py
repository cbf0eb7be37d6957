"""The ``resnetlib`` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from resnetlib.cli import main


def test_list_filters_by_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "plain*"]) == 0
    names = capsys.readouterr().out.split()
    assert names == sorted(names)
    assert {"plain18", "plain34", "plain20", "plain1202"} <= set(names)
    assert all(name.startswith("plain") for name in names)


def test_list_without_matches_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "vgg*"]) == 1
    assert "no models match 'vgg*'" in capsys.readouterr().err


def test_summary_prints_the_papers_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet56", "--input", "3,32,32"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "resnet56"
    assert "input: 3x32x32" in out
    assert any(line.startswith("layer3") and "64x8x8" in line for line in lines)
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1] == "853,018"  # paper: 0.85M; exact: 97,216 n - 21,926 with n = 9
    assert total.split()[2] == "125,485,696"


def test_summary_defaults_to_the_stems_input_size_and_takes_num_classes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["summary", "resnet18", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "input: 3x224x224" in out
    assert "head    10" in out
    # torchvision's 1.814 G with a 10-way head: 1,814,073,344 - 512 * (1000 - 10).
    assert "1,813,566,464" in out


def test_summary_errors_are_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnetlib: error: unknown model 'resnet5'")
    with pytest.raises(SystemExit):
        main(["summary", "resnet56", "--input", "32x32"])


def test_main_job_prints_only_the_summary() -> None:
    command = ["resnetlib", "summary", "resnet56", "--input", "3,32,32"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0] == "resnet56"
    assert "853,018" in result.stdout


def test_console_script_and_module_entry_point_run() -> None:
    for command in (
        ["resnetlib", "list", "resnet1*"],
        [sys.executable, "-m", "resnetlib", "list", "resnet1*"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            "resnet101",
            "resnet101d",
            "resnet110",
            "resnet1202",
            "resnet152",
            "resnet152d",
            "resnet18",
            "resnet18d",
        ]
