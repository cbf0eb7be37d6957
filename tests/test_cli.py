"""The ``resnetlib`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import resnetlib as rl
from resnetlib import cli
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
    """The stderr line of a command that must fail with exit status 2: one line, a flag
    argparse refuses too (naming the command and its --help, without the usage)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
        err = capsys.readouterr().err
        assert err.startswith(f"resnetlib {argv[0]}: error: argument ")
        assert err.rstrip().endswith(f"(see resnetlib {argv[0]} --help)")
    else:
        err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert code == 2
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_an_unknown_flag_is_refused_by_the_command_it_follows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["summary", "resnet20", "--bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "resnetlib summary: error: unrecognized arguments: --bogus (see resnetlib summary --help)\n"
    )


def test_ctrl_c_anywhere_in_a_command_is_one_line_and_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As while a command's modules are still importing (before its own handler is set)."""

    def interrupted(argv: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    assert main(["train", "resnet20"]) == 130
    assert capsys.readouterr().err == "resnetlib: interrupted\n"


def test_summary_errors_are_one_line_in_cli_terms_after_the_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = cli_error(["summary", "resnet5"], capsys)
    assert error.startswith("resnetlib summary: error: unknown model 'resnet5'")
    error = cli_error(["summary", "resnet56", "--input", "32x32"], capsys)
    assert "expected C,H,W of positive ints such as 3,224,224" in error
    assert error.endswith("got '32x32' (see resnetlib summary --help)")
    error = cli_error(["summary", "resnet56", "--input=-3,32,32"], capsys)
    assert "argument --input: expected C,H,W of positive ints" in error
    error = cli_error(["summary", "resnet56", "--widths", "16,0,64"], capsys)
    assert "argument --widths: expected comma-separated ints >= 1" in error
    error = cli_error(["summary", "resnet56", "--block-options", "groups"], capsys)
    assert "argument --block-options: expected KEY=VALUE" in error
    # a bare word is text, unless it spells another value: then it is refused, not passed on
    for word in ("True", "False", "None", "nan", "inf", "0x10", "1_000"):
        error = cli_error(["summary", "resnet50", "--block-options", f"flag={word}"], capsys)
        assert f"flag={word}: write true, false, null or a finite JSON number" in error
        assert f"""quote text: flag='"{word}"'""" in error
    error = cli_error(["summary", "resnet56", "--output-stride", "3"], capsys)
    assert error.startswith("resnetlib summary: error: output_stride must be one of [1, 2, 4]")
    assert cli_error(["summary", "missing.pt"], capsys).endswith(
        "missing.pt: no such checkpoint file"
    )
    error = cli_error(["list", "--import", "no_such_module_here"], capsys)
    assert error.endswith(
        "--import no_such_module_here: ModuleNotFoundError: No module named 'no_such_module_here'"
    )


def test_an_unregistered_name_on_the_command_line_says_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model name, a --block flag, a checkpoint and a local-dir: folder naming a part not
    registered here all say --import; a pretrained tag no module can add does not."""
    advice = "; if a module of yours registers the {}, add --import MODULE"

    @rl.register_block("test_cli_unregistered")
    class Mine(rl.BasicBlock):
        pass

    try:
        model = rl.resnet20(block="test_cli_unregistered")
        rl.save(model, tmp_path / "ext.pt")
        rl.save_pretrained(model, tmp_path / "folder")
    finally:
        rl.nn.BLOCKS.unregister("test_cli_unregistered")
    for argv in (
        ["summary", str(tmp_path / "ext.pt")],
        ["summary", f"local-dir:{tmp_path / 'folder'}"],
        ["summary", "resnet20", "--block", "test_cli_unregistered"],
    ):
        error = cli_error(argv, capsys)
        assert "unknown block 'test_cli_unregistered'" in error
        assert error.endswith(advice.format("block")), error
    assert cli_error(["summary", "resnet5"], capsys).endswith(advice.format("model"))
    assert "--import" not in cli_error(["summary", "resnet20.bogus"], capsys)


def test_a_directory_given_as_the_model_says_what_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory or a save_pretrained folder where a model belongs: one line saying it
    is a directory and what to give (run/final.pt, local-dir:DIR), not "unknown model"; a
    registered name that is also a directory here stays the model."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    for argv in (["predict", "run", str(image)], ["evaluate", "run"], ["summary", "run/"]):
        error = cli_error(argv, capsys)
        assert "is a directory, not a model name or checkpoint file" in error, error
        assert os.path.join("run", "final.pt") in error
        assert "unknown model" not in error
    rl.save_pretrained(rl.resnet20(), tmp_path / "shared")
    error = cli_error(["summary", "shared"], capsys)
    assert error.endswith(
        "give local-dir:shared for the save_pretrained folder it is, or a checkpoint file"
    )
    (tmp_path / "resnet20").mkdir()
    assert main(["summary", "resnet20"]) == 0
    assert "M parameters" in capsys.readouterr().out


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
    # JSON's false, and text that reads as the same word quoted (refused by the block's check)
    assert main(["summary", "resnet50", "--block-options", "stride_in_1x1=false"]) == 0
    capsys.readouterr()
    error = cli_error(["summary", "resnet50", "--block-options", 'stride_in_1x1="False"'], capsys)
    assert "stride_in_1x1 must be true or false; got 'False'" in error


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
        rl.models.MODELS.unregister("my_cli_resnet8")
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


def loaded_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after ``main(argv)`` (a help or usage exit too)."""
    code = (
        "import json, sys\n"
        "from resnetlib.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    src = str(Path(__file__).resolve().parent.parent / "src")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PYTHONPATH": src, "PATH": ""},
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        (["train", "--help"], ("resnetlib.deploy", "resnetlib.deploy.cli")),
        (["--debug", "evaluate", "--help"], ("resnetlib.deploy", "resnetlib.deploy.cli")),
        (["export", "--help"], ("resnetlib.train", "resnetlib.train.cli")),
        (["predict", "--help"], ("resnetlib.train", "resnetlib.train.cli")),
        (["list", "resnet2*"], ("resnetlib.train", "resnetlib.deploy")),
    ],
)
def test_a_command_imports_only_the_module_that_adds_it(
    argv: list[str], absent: tuple[str, ...]
) -> None:
    loaded = loaded_after(argv)
    assert "resnetlib.cli" in loaded
    home = cli.COMMANDS.get(argv[-2])
    if home is not None:
        assert home in loaded
    assert [name for name in absent if name in loaded] == []


def test_help_and_unknown_commands_list_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    every = ["list", "summary", *cli.COMMANDS]
    for argv in (["--help"], ["--debug", "--help"], [], ["no-such-command"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr()
        text = out.out if "--help" in argv else out.err
        assert "{" + ",".join(every) + "}" in text, argv
    assert cli._command_word(["--debug", "train", "--out", "x"]) == "train"
    assert cli._command_word(["-h", "train"]) is None
    assert cli._command_word(["--deb", "train"]) is None  # an abbreviation: all, to be safe


def test_the_command_table_names_what_each_module_adds() -> None:
    added: dict[str, str] = {}
    for module in cli.SUBCOMMAND_MODULES:
        commands = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).add_commands(commands)
        added.update(dict.fromkeys(commands.choices, module))
    assert added == cli.COMMANDS
    assert cli.SUBCOMMAND_MODULES == ("resnetlib.train.cli", "resnetlib.deploy.cli")


def test_a_users_subcommand_module_still_plugs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_cli_commands.py").write_text(
        "def add_commands(commands):\n"
        "    hello = commands.add_parser('hello', help='say hello')\n"
        "    hello.set_defaults(run=lambda args: print('hello') or 0)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "my_cli_commands"))
    assert main(["hello"]) == 0
    assert capsys.readouterr().out == "hello\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hello" in capsys.readouterr().out
    # The table does not name it, so it may add any command: every command imports it.
    monkeypatch.delitem(sys.modules, "my_cli_commands")
    assert main(["list", "resnet20"]) == 0
    assert "my_cli_commands" in sys.modules


def test_an_error_message_is_printed_escaped_and_bounded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A library's message (torch.export's has colour codes) never drives the terminal."""
    import argparse

    from resnetlib.cli import guarded

    def failing(args: argparse.Namespace) -> int:
        raise RuntimeError("step \x1b[96m1/3\x1b[0m failed\n" + "more\n" * 20)

    assert guarded(failing)(argparse.Namespace(command="export")) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert err.startswith("resnetlib export: error: step \\x1b[96m1/3\\x1b[0m failed\n")
    assert err.count("\n") == 13  # twelve lines, then how many more
    assert err.endswith("... (9 more lines)\n")


@pytest.mark.parametrize("command", ["summary", "evaluate", "predict", "train"])
def test_checkpoint_option_naming_a_directory_says_so(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"predict": [str(tmp_path / "img.png")], "evaluate": ["--data", "digits"]}
    argv = [command, "resnet20", "--checkpoint", str(tmp_path), *extra.get(command, [])]
    if command == "train":
        argv += ["--out", str(tmp_path / "run")]
    if command == "predict":
        (tmp_path / "img.png").write_bytes(b"")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is a directory" in err, err
    assert "no such file" not in err


@pytest.mark.parametrize("form", ["positional", "option"])
def test_a_checkpoint_link_to_no_file_is_named_a_link_not_missing(
    form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library named a dangling link as one; the command line said "no such file"."""
    link = tmp_path / "dang.pt"
    link.symlink_to(tmp_path / "nowhere.pt")
    argv = ["summary", str(link)] if form == "positional" else ["summary", "resnet20"]
    assert main([*argv, *(["--checkpoint", str(link)] if form == "option" else [])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "a symbolic link to" in err, err
    assert "which leads to no file" in err
