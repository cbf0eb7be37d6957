"""The ``resnetlib`` command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import resnetlib as rl
from resnetlib.cli import _parser, main
from resnetlib.registry import natural_key


def test_list_filters_by_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "plain*"]) == 0
    names = capsys.readouterr().out.split()
    assert names == sorted(names, key=natural_key)
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


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The last stderr line of a command that must fail with exit status 2: a flag argparse
    refuses after the usage, any other mistake as one line."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
        err = capsys.readouterr().err
        assert err.startswith(f"usage: resnetlib {argv[0]} ")
    else:
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
    assert code == 2
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_summary_errors_are_one_line_in_cli_terms_after_the_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = cli_error(["summary", "resnet5"], capsys)
    assert error.startswith("resnetlib summary: error: unknown model 'resnet5'")
    error = cli_error(["summary", "resnet56", "--input", "32x32"], capsys)
    assert "expected C,H,W of positive ints such as 3,224,224" in error
    assert error.endswith("got '32x32'")
    error = cli_error(["summary", "resnet56", "--input=-3,32,32"], capsys)
    assert "argument --input: expected C,H,W of positive ints" in error
    error = cli_error(["summary", "resnet56", "--widths", "16,0,64"], capsys)
    assert "argument --widths: expected comma-separated ints >= 1" in error
    error = cli_error(["summary", "resnet56", "--block-options", "groups"], capsys)
    assert "argument --block-options: expected KEY=VALUE" in error
    error = cli_error(["summary", "resnet56", "--output-stride", "3"], capsys)
    assert error.startswith("resnetlib summary: error: output_stride must be one of [1, 2, 4]")
    assert cli_error(["summary", "missing.pt"], capsys).endswith(
        "missing.pt: no such checkpoint file"
    )
    error = cli_error(["list", "--import", "no_such_module_here"], capsys)
    assert error.endswith(
        "--import no_such_module_here: ModuleNotFoundError: No module named 'no_such_module_here'"
    )


def test_every_model_override_is_a_summary_option(capsys: pytest.CaptureFixture[str]) -> None:
    summary_parser = next(
        action.choices["summary"]
        for action in _parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    dests = {action.dest for action in summary_parser._actions}
    assert set(rl.ModelOverrides.__annotations__) <= dests
    argv = ["summary", "resnet56", "--input", "3,32,32", "--shortcut", "C"]
    argv += ["--width-multiplier", "2", "--num-classes", "7", "--no-zero-init-residual"]
    assert main(argv) == 0
    model = rl.resnet56(shortcut="C", width_multiplier=2, num_classes=7)
    total = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("total"))
    assert total.split()[1] == f"{rl.count_parameters(model):,}"
    argv = ["summary", "resnet50", "--block-options", "groups=2", "--block-options"]
    argv += ["width_per_group=32", "--widths", "8,16,32,64", "--act", "silu", "--input", "3,64,64"]
    assert main(argv) == 0
    model = rl.resnet50(block_options={"groups": 2, "width_per_group": 32}, widths=(8, 16, 32, 64))
    total = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("total"))
    assert total.split()[1] == f"{rl.count_parameters(model):,}"


def test_summary_of_a_checkpoint_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = rl.resnet20(num_classes=5, shortcut="B")
    rl.save(model, tmp_path / "r20.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["summary", "r20.pt"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "r20.pt"
    assert "input: 3x32x32" in out
    assert f"{rl.count_parameters(model):,}" in out
    error = cli_error(["summary", "r20.pt", "--num-classes", "3"], capsys)
    assert "--num-classes: a checkpoint (r20.pt) keeps the model it was saved as" in error


def test_import_loads_a_users_models_and_version_and_help_read_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_cli_models.py").write_text(
        "import resnetlib as rl\n"
        "@rl.register_model('my_cli_resnet8')\n"
        "def my_cli_resnet8(**overrides):\n"
        "    return rl.cifar_resnet(8, **overrides)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["list", "my_cli_*", "--import", "my_cli_models"]) == 0
        assert capsys.readouterr().out.split() == ["my_cli_resnet8"]
        assert main(["summary", "my_cli_resnet8", "--num-classes", "4"]) == 0
        assert "head    4" in capsys.readouterr().out
    finally:
        rl.MODELS.unregister("my_cli_resnet8")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"resnetlib {rl.__version__}"
    for argv in (["--help"], ["summary", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        help_text = capsys.readouterr().out
        assert "``" not in help_text
        assert ":data:" not in help_text


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
            "resnet18",
            "resnet18d",
            "resnet101",
            "resnet101d",
            "resnet110",
            "resnet152",
            "resnet152d",
            "resnet1202",
        ]
