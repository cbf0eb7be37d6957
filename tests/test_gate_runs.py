"""A run directory through the one gate: data, never code; nothing destroyed, never a silent
restart; every mistake or tampering one line and exit status 2, Ctrl-C exit 130.

Each case is what a careless user or someone handing over a run directory would do to it:
edit run.json, delete or swap state.pt, plant a link or a FIFO, point reproduce at the
wrong data, press Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import resnetlib as rl
from resnetlib.cli import import_modules, main
from resnetlib.train import reproduce
from resnetlib.train.loop import TrainingInterrupted
from resnetlib.train.run_dir import RunDirectoryError, check_run_info, read_metrics

from .test_train_data import write_cifar10

FAST = ["--data", "digits", "--image-size", "8", "--batch-size", "500", "--no-progress"]
"""1,500 training images: 3 iterations an epoch."""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"resnetlib [a-z0-9 ]+: error: ", lines[0]), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime (links and FIFOs by their own lstat); not the lock,
    which each process that takes it rewrites with its pid."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name == ".lock":
            continue
        info = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        files[path.name] = (data, info.st_mtime_ns)
    return files


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two runs of 6 iterations with the same options (so: different run ids), and one
    stopped by a save every 2 iterations at iteration 4 (its state mid-run)."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name in ("first", "second"):
        out = root / name
        assert main(["train", "resnet20", "--iterations", "6", "--out", str(out), *FAST]) == 0
        made[name] = out
    return made


@pytest.fixture
def finished(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of a finished run for a test to damage."""
    out = tmp_path / "run"
    shutil.copytree(runs["first"], out, symlinks=True)
    return out


def resume(out: Path, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str, str]:
    return run(["train", "--out", str(out), "--resume", "--no-progress", *more], capsys)


# -- a run directory is data, never code ---------------------------------------------------


def _plant_module(directory: Path, name: str) -> Path:
    """A module whose import leaves a marker file: proof that code ran."""
    marker = directory / f"{name}.ran"
    (directory / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('code ran')\n"
    )
    return marker


def test_resume_never_imports_what_run_json_names(
    finished: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run directory received from someone else names a module planted beside it: resume
    refuses in one line naming it and the command that would import it; nothing runs."""
    marker = _plant_module(tmp_path, "gate_planted_module")
    monkeypatch.chdir(tmp_path)
    info = json.loads((finished / "run.json").read_text())
    info["command"]["model"]["imports"] = ["gate_planted_module"]
    (finished / "run.json").write_text(json.dumps(info))
    before = snapshot(finished)
    path_before = list(sys.path)
    code, _, err = resume(finished, capsys)
    line = one_line_error(code, err, "gate_planted_module")
    assert line.endswith(
        f"resume with: resnetlib train --out {finished} --resume --import gate_planted_module"
    )
    assert not marker.exists()
    assert "gate_planted_module" not in sys.modules
    assert sys.path == path_before
    assert snapshot(finished) == before


def test_a_run_started_with_import_resumes_only_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gate_user_models.py").write_text(
        "import resnetlib as rl\n"
        "@rl.register_model('gate_resnet8')\n"
        "def gate_resnet8(**overrides):\n"
        "    return rl.cifar_resnet(8, **overrides)\n"
    )
    monkeypatch.chdir(tmp_path)  # the user's module is in the working directory
    out = tmp_path / "mine"
    try:
        argv = ["train", "gate_resnet8", "--import", "gate_user_models", "--iterations", "6"]
        code, _, err = run([*argv, "--save-every", "2", "--out", str(out), *FAST], capsys)
        assert code == 0, err
        assert str(tmp_path) not in sys.path  # only while the import ran
        code, _, err = resume(out, capsys)
        one_line_error(code, err, f"--out {out} --resume --import gate_user_models")
        code, stdout, err = resume(out, capsys, "--import", "gate_user_models")
        assert code == 0, err
        assert "after 6 iterations" in stdout
    finally:
        rl.models.MODELS.unregister("gate_resnet8")
        sys.modules.pop("gate_user_models", None)


def test_import_modules_leaves_sys_path_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gate_path_module.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    try:
        import_modules(["gate_path_module"])
        assert sys.modules["gate_path_module"].VALUE == 7
        assert sys.path == before
        with pytest.raises(rl.cli.UsageError, match="gate_no_such_module"):
            import_modules(["gate_no_such_module"])
        assert sys.path == before
    finally:
        sys.modules.pop("gate_path_module", None)


# -- the lock --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_planted_lock_never_truncates_another_file(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("precious data\n")
    if kind == "symlink":
        (out / ".lock").symlink_to(victim)
    else:
        os.mkfifo(out / ".lock")
    code, _, err = run(["train", "resnet20", "--iterations", "1", "--out", str(out), *FAST], capsys)
    one_line_error(code, err, ".lock", "remove it")
    assert victim.read_text() == "precious data\n"
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


# -- every read through the gate ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "plant", "needle"),
    [
        ("recipe.json", "fifo", "a FIFO"),
        ("spec.json", "/dev/zero", "a character device"),
        ("run.json", "directory", "a directory"),
        ("state.pt", "fifo", "a FIFO"),
        ("state.pt", "directory", "a directory"),
        ("run.json", '{"seed": 0, "seed": 1}', "duplicate key 'seed'"),
        ("spec.json", "[" * 100 + "]" * 100, "nested more than"),
        ("recipe.json", '{"lr": 0.1, "lr": 10}', "duplicate key 'lr'"),
        ("run.json", " " * (2 << 20), "larger than"),
    ],
)
def test_run_files_that_are_not_what_they_claim_are_one_line(
    finished: Path, name: str, plant: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO cannot hang resume, a device is not read until memory runs out, JSON with a
    duplicate key is not silently the last value."""
    path = finished / name
    path.unlink()
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "directory":
        path.mkdir()
    elif plant.startswith("/dev/"):
        path.symlink_to(plant)
    else:
        path.write_text(plant)
    before = snapshot(finished)
    code, _, err = resume(finished, capsys)
    one_line_error(code, err, name, needle)
    assert snapshot(finished) == before


def test_a_recipe_file_with_a_duplicate_key_or_a_fifo_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"epochs": 1, "lr": 0.1, "lr": 100.0}')
    argv = ["train", "resnet20", "--recipe", str(recipe), "--out", str(tmp_path / "r"), *FAST]
    code, _, err = run(argv, capsys)
    one_line_error(code, err, "duplicate key 'lr'")
    recipe.unlink()
    os.mkfifo(recipe)
    code, _, err = run(argv, capsys)
    one_line_error(code, err, "a FIFO")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cell", ["1e999", "inf", "-inf", "nan", "NaN", "ten"])
def test_a_metrics_number_out_of_range_is_a_run_directory_error(
    finished: Path, cell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = finished / "metrics.csv"
    lines = metrics.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[-1].split(",")
    row[header.index("test_error")] = cell
    metrics.write_text("\n".join([*lines[:-1], ",".join(row)]) + "\n")
    with pytest.raises(RunDirectoryError, match=r"metrics\.csv, line \d+: "):
        read_metrics(metrics)


# -- run.json: one check -------------------------------------------------------------------


def _edit(info: dict[str, Any], entry: str, value: Any) -> None:
    *parents, last = entry.split(".")
    for key in parents:
        info = info[key]
    if value is _DELETE:
        del info[last]
    else:
        info[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("entry", "value", "needle"),
    [
        ("seed", 1.5, "entry 'seed' must be an int"),
        ("seed", -1, "entry 'seed' must be an int"),
        ("seed", 2**64, "entry 'seed' must be an int"),
        ("seed", "0", "entry 'seed' must be an int"),
        ("seed", _DELETE, "entry 'seed' is missing"),
        ("seed", float("inf"), "Infinity is not a number JSON allows"),
        ("command", [], "entry 'command' must be an object"),
        ("command", "resnet20", "entry 'command' must be an object"),
        ("command.given", 3, "entry 'command.given' must be an object"),
        ("command.model.imports", "os", "entry 'command.model.imports'"),
        ("command.model.imports", ["os; rm -rf ~"], "entry 'command.model.imports'"),
        ("command.freeze", True, "entry 'command.freeze'"),
        ("data", None, "entry 'data' must be an object"),
        ("data.data", 5, "entry 'data.data'"),
        ("data.image_size", 0, "entry 'data.image_size'"),
        ("data.labels", "all", "entry 'data.labels'"),
        ("data.classes", "0,1", "entry 'data.classes'"),
        ("length", None, "entry 'length' must be an object"),
        ("length.iterations", -6, "entry 'length.iterations'"),
        ("iterations", 6.0, "entry 'iterations' must be an int"),
        ("pretrained_cfg", [], "entry 'pretrained_cfg'"),
        ("pretrained_cfg.std", [1e-300, 1, 1], "entry 'pretrained_cfg'"),
        ("run_id", 7, "entry 'run_id' must be text"),
    ],
)
def test_a_tampered_run_json_is_one_line_naming_the_entry(
    finished: Path, entry: str, value: Any, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    info = json.loads((finished / "run.json").read_text())
    _edit(info, entry, value)
    text = json.dumps(info)  # writes Infinity for inf, as a careless editor might
    (finished / "run.json").write_text(text)
    before = snapshot(finished)
    code, _, err = resume(finished, capsys)
    one_line_error(code, err, "run.json", needle)
    code, _, err = run(["evaluate", str(finished / "final.pt")], capsys)
    one_line_error(code, err, "run.json", needle)
    assert snapshot(finished) == before


def test_check_run_info_accepts_what_fit_writes(finished: Path) -> None:
    info = json.loads((finished / "run.json").read_text())
    assert check_run_info(info) == info
    del info["command"]  # a run started by fit() from Python has none
    del info["run_id"]  # nor had runs of earlier versions
    assert check_run_info(info) == info


# -- never restarted silently -----------------------------------------------------------


@pytest.mark.parametrize("kept", ["last.pt", "metrics.csv", "steps.csv"])
def test_a_deleted_state_never_restarts_the_run(
    finished: Path, kept: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """state.pt deleted to save space: resume says so and overwrites nothing."""
    for name in ("state.pt", "last.pt", "final.pt", "best.pt", "metrics.csv", "steps.csv"):
        if name != kept:
            (finished / name).unlink(missing_ok=True)
    before = snapshot(finished)
    code, _, err = resume(finished, capsys)
    one_line_error(code, err, f"{finished / 'state.pt'}: missing", kept, "Restore state.pt")
    assert snapshot(finished) == before


def _edit_state(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state[key] = value

    return change


def _set_loader(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["loader"][key] = value

    return change


def _drop_layer(state: dict[str, Any]) -> None:
    state["model"].pop("fc.bias")


def _widen(state: dict[str, Any]) -> None:
    state["model"]["fc.weight"] = torch.zeros(11, 64)


def _state_tensor_of_doubles(state: dict[str, Any]) -> None:
    state["model"]["fc.weight"] = state["model"]["fc.weight"].double()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (_set("iteration", 4), "disagree with the loader"),
        (_set("iteration", -1), "field 'iteration' must be an int from 0 to 6"),
        (_set("iteration", 10**9), "field 'iteration' must be an int from 0 to 6"),
        (_set("iteration", 6.0), "field 'iteration' must be an int"),
        (_set("iteration", "6"), "field 'iteration' must be an int"),
        (_set("epoch", 99), "field 'epoch' must be an int"),
        (_set("epoch", 1), "field 'history' holds 2 rows, more than the 1"),
        (_set_loader("position", 2), "disagree with the loader"),
        (_set_loader("epoch", "1"), "disagree with the loader"),
        (_set("elapsed", "fast"), "field 'elapsed'"),
        (_set("elapsed", float("nan")), "field 'elapsed'"),
        (_set("epoch_seconds", -1.0), "field 'epoch_seconds'"),
        (_set("best_val", None), "field 'best_val'"),
        (_set("warmed_up", 1), "field 'warmed_up'"),
        (_set("history", "rows"), "field 'history'"),
        (_set("history", [{"epoch": "one"}, {}]), "field 'history'"),
        (_set("history", []), "field 'history' must be one row for each"),
        (_set("steps", [None]), "field 'steps'"),
        (_set("sums", [0.0, 0.0, 0.0]), "field 'sums'"),
        (_set("logged", torch.zeros(3)), "field 'logged'"),
        (_set("optimizer", None), "field 'optimizer'"),
        (_set("optimizer", {"state": {}, "param_groups": []}), "does not fit this run"),
        (_set("scaler", []), "field 'scaler'"),
        (_set("rng", {}), "field 'rng'"),
        (_set("rng", {"torch": torch.zeros(3, dtype=torch.uint8)}), "does not fit this run"),
        (_set("loader", None), "field 'loader'"),
        (_set_loader("seed", 5), "started with other data or another seed"),
        (_set("plan", 3), "field 'plan'"),
        (_set("plan", '{"lr": 0.5}'), "another recipe or length"),
        (_set("run", "0123456789abcdef"), "the state of another run"),
        (_drop_layer, "another network"),
        (_widen, "another network"),
        (_state_tensor_of_doubles, "another network"),
    ],
)
def test_an_edited_state_is_one_line_and_overwrites_nothing(
    finished: Path, change: Callable[[dict[str, Any]], None], needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    state = finished / "state.pt"
    _edit_state(state, change)
    before = snapshot(finished)
    code, _, err = resume(finished, capsys)
    one_line_error(code, err, str(state), needle)
    assert snapshot(finished) == before


def test_the_state_of_another_run_is_refused(
    finished: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs with the same options: one's state.pt copied into the other."""
    shutil.copy(runs["second"] / "state.pt", finished / "state.pt")
    before = snapshot(finished)
    code, _, err = resume(finished, capsys)
    one_line_error(code, err, str(finished / "state.pt"), "the state of another run")
    assert snapshot(finished) == before


def test_a_mid_run_state_resumes_and_a_finished_run_stays_finished(
    finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checks pass what training writes: resuming a finished run changes nothing in
    its record."""
    code, stdout, err = resume(finished, capsys)
    assert code == 0, err
    assert "after 6 iterations" in stdout
    state = torch.load(finished / "state.pt", weights_only=True)
    assert state["iteration"] == 6
    assert state["run"] == json.loads((finished / "run.json").read_text())["run_id"]


def test_ctrl_c_before_a_run_starts_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnetlib.train import cli as train_cli

    def interrupted(*args: object, **options: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "_load", interrupted)
    out = tmp_path / "new"
    code, _, err = run(["train", "resnet20", "--out", str(out), *FAST], capsys)
    assert code == 130
    assert err.strip() == "interrupted before the run started; nothing was written"
    assert not out.exists()


# -- reproduce -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cifar-10-batches-py"
    write_cifar10(root, n=8)
    return root


def _table6_argv(cifar: Path, out: Path) -> list[str]:
    return ["reproduce", "table6", "--data", str(cifar), "--models", "resnet20",
            "--iterations", "6", "--val-size", "0", "--batch-size", "8", "--device", "cpu",
            "--out", str(out), "--no-progress"]  # fmt: skip


def test_ctrl_c_in_reproduce_table6_names_the_command_that_goes_on(
    cifar: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real Ctrl-C (SIGINT) at the third training step: the run saves, one line names the
    command that continues it, exit 130; that command finishes the table."""
    real_create: Any = vars(reproduce)["create_model"]
    steps = [0]

    def interrupting(name: str, **options: Any) -> Any:
        model = real_create(name, **options)

        def hook(module: torch.nn.Module, inputs: object) -> None:
            if module.training:
                steps[0] += 1
                if steps[0] == 3:
                    os.kill(os.getpid(), signal.SIGINT)

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(reproduce, "create_model", interrupting)
    out = tmp_path / "t6"
    code, _, err = run(_table6_argv(cifar, out), capsys)
    assert code == 130, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    prefix = f"interrupted at iteration 3 in {out / 'resnet20-seed0'}; resume with: "
    assert line.startswith(prefix), line
    again = shlex.split(line.removeprefix(prefix))
    assert again[:3] == ["resnetlib", "reproduce", "table6"]
    monkeypatch.setattr(reproduce, "create_model", real_create)
    code, stdout, err = run(again[1:], capsys)
    assert code == 0, err
    assert "| ResNet-20 | 269,722 | 1 |" in stdout
    state = torch.load(out / "resnet20-seed0" / "state.pt", weights_only=True)
    assert state["iteration"] == 6


@pytest.mark.parametrize("experiment", ["table6", "degradation"])
@pytest.mark.parametrize("stop", ["saved", "at once"])
def test_ctrl_c_in_any_reproduce_command_is_one_line_and_exit_130(
    experiment: str,
    stop: str,
    cifar: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted_fit(model: object, data: object, recipe: object, **options: Any) -> None:
        if stop == "saved":
            raise TrainingInterrupted(2, Path(options["out"]))
        raise KeyboardInterrupt  # a second Ctrl-C, or one while data loads

    monkeypatch.setattr(reproduce, "fit", interrupted_fit)
    out = tmp_path / "out"
    if experiment == "table6":
        argv = _table6_argv(cifar, out)
    else:
        argv = ["reproduce", "degradation", "--epochs", "1", "--out", str(out), "--no-progress"]
    code, _, err = run(argv, capsys)
    assert code == 130, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "resume with: resnetlib reproduce " + experiment in line
    assert f"--out {out}" in line
    if stop == "saved":
        assert line.startswith("interrupted at iteration 2 in ")


@pytest.mark.parametrize("data", ["cifar100", "folder", "digits"])
def test_table6_refuses_data_that_is_not_cifar10(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table stands beside the paper's CIFAR-10 column: other data is refused before
    anything is trained or written."""
    from .test_train_data import write_cifar100

    if data == "cifar100":
        root = tmp_path / "cifar-100-python"
        write_cifar100(root)
        where = str(root)
    elif data == "folder":
        root = tmp_path / "pets"
        for split in ("train", "val"):
            (root / split / "cat").mkdir(parents=True)
        where = str(root)
    else:
        where = "digits"
    out = tmp_path / "t6"
    argv = ["reproduce", "table6", "--data", where, "--models", "resnet20", "--out", str(out)]
    code, _, err = run(argv, capsys)
    one_line_error(code, err, "not CIFAR-10", "table6 reproduces the paper's CIFAR-10 table")
    assert not out.exists()
