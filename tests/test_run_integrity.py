"""Nothing lost, nothing silently wrong: damaged run files, failed writes and refused
devices end in one line and exit status 2, and leave the previous files intact."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import resnetlib as rl
from resnetlib.cli import main

FAST = ["--data", "digits", "--image-size", "8", "--batch-size", "500", "--no-progress"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"resnetlib [a-z]+: error: ", lines[0]), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "run"
    code, _, err = run(["train", "resnet20", "--iterations", "3", "--out", str(out), *FAST], capsys)
    assert code == 0, err
    return out


class _CodeMarker:
    """Unpickling this would run code (it may not)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "code"])
def test_a_damaged_trainer_state_is_one_line_on_resume(
    finished_run: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = finished_run / "state.pt"
    data = state.read_bytes()
    if damage == "truncated":
        state.write_bytes(data[: len(data) // 3])
    elif damage == "random":
        state.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    elif damage == "empty":
        state.write_bytes(b"")
    else:
        torch.save({"format": "resnetlib.trainer-state", "x": _CodeMarker()}, state)
    code, out, err = run(["train", "--out", str(finished_run), "--resume"], capsys)
    line = one_line_error(code, err)
    assert str(state) in line
    assert "code ran" not in out + err


@pytest.mark.parametrize("content", ["[]", "{not json", '{"data": 3}'])
def test_a_damaged_run_json_names_the_file(
    finished_run: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    info = finished_run / "run.json"
    info.write_text(content)
    code, _, err = run(["evaluate", str(finished_run / "final.pt")], capsys)
    line = one_line_error(code, err)
    assert "run.json" in line or "data" in line


def test_a_damaged_recipe_json_names_the_file(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (finished_run / "recipe.json").write_text('{"lr": "fast"}')
    code, _, err = run(["train", "--out", str(finished_run), "--resume"], capsys)
    assert "recipe.json" in one_line_error(code, err)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_meta_device_is_refused(
    finished_run: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "resnet20" if command == "train" else str(finished_run / "final.pt")
    argv = [command, target, "--device", "meta"]
    if command == "train":
        argv += [*FAST, "--out", str(finished_run.parent / "meta")]
    code, _, err = run(argv, capsys)
    assert "--device meta" in one_line_error(code, err)


def test_a_failed_export_leaves_the_previous_file(
    finished_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "model.pt2"
    argv = ["export", str(finished_run / "final.pt"), "--format", "pt2", "--out", str(target)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    good = target.read_bytes()

    def fail_halfway(program: object, path: object, *args: object, **options: object) -> None:
        Path(str(path)).write_bytes(b"half a program")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", fail_halfway)
    code, _, err = run(argv, capsys)
    assert "No space left on device" in one_line_error(code, err)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_into_a_read_only_directory_is_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        argv = ["export", str(finished_run / "final.pt"), "--format", "pt2"]
        code, _, err = run([*argv, "--out", str(locked / "m.pt2")], capsys)
        if code == 0:  # root writes anywhere: then the file must be whole
            assert (locked / "m.pt2").stat().st_size > 0
        else:
            assert "not writable" in one_line_error(code, err)
    finally:
        locked.chmod(0o700)


def test_a_full_disk_during_training_is_one_line_and_keeps_the_last_save(
    finished_run: Path, tmp_path: Path
) -> None:
    """A file-size limit (as a full disk: writes fail with an OSError) in a subprocess: the
    run stops with one line, exit 2, and the files already saved stay whole."""
    out = tmp_path / "full"
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from resnetlib.cli import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail instead of killing us
        limit = 200_000  # bytes: the run's JSON and CSV files fit, its checkpoints do not
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        sys.exit(main(["train", "resnet20", "--iterations", "3", "--out", {str(out)!r},
                       {", ".join(map(repr, FAST))}]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the start-up line
    assert line.startswith("resnetlib train: error: ")
    assert "could not be written" in line
    assert "disk full" in line
    assert json.loads((out / "run.json").read_text())["split"]["train"] == 1500
    assert [p.name for p in out.iterdir() if p.name.endswith(".partial")] == []
    assert not (out / "state.pt").exists()  # never a partial file under the real name


def test_resume_after_an_interrupted_first_epoch_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped before its first save holds run.json only: --resume starts it again."""
    out = tmp_path / "early"
    code, _, _ = run(["train", "resnet20", "--iterations", "2", "--out", str(out), *FAST], capsys)
    assert code == 0
    for name in ("state.pt", "last.pt", "final.pt", "metrics.csv", "steps.csv", "curves.png"):
        (out / name).unlink()  # as a run stopped before its first save (state.pt first)
    code, stdout, err = run(["train", "--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert "after 2 iterations" in stdout
    assert rl.load(out / "final.pt").pretrained_cfg["input_size"] == (3, 8, 8)


def test_a_stop_while_the_run_ends_leaves_it_to_finish_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """final.pt marks a run done: it was written before curves.png, so a Ctrl-C while the
    curves were drawn left a "finished" run that never got them."""
    from resnetlib.train.run_dir import RunDirectory

    out = tmp_path / "r"
    real_plot = RunDirectory.plot

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDirectory, "plot", interrupted)
    code, _, err = run(["train", "resnet20", "--iterations", "2", "--out", str(out), *FAST], capsys)
    assert code == 130, err
    assert not (out / "final.pt").exists()
    monkeypatch.setattr(RunDirectory, "plot", real_plot)
    code, _, err = run(["train", "--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert (out / "final.pt").is_file()
    assert (out / "curves.png").is_file()


def test_best_pt_is_written_before_the_state_that_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """state.pt recorded a new best validation error before best.pt was written: a failure
    between the two left an older best.pt for good (resume never rewrote it)."""
    from resnetlib.train.run_dir import RunDirectory

    written: list[str] = []
    real_save_model, real_save = RunDirectory.save_model, RunDirectory.save_state

    def save_model(self: RunDirectory, name: str, *args: object) -> Path:
        written.append(name)
        return real_save_model(self, name, *args)  # type: ignore[arg-type]

    def save_state(self: RunDirectory, *args: object, **kwargs: object) -> None:
        written.append("state.pt")
        real_save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RunDirectory, "save_model", save_model)
    monkeypatch.setattr(RunDirectory, "save_state", save_state)
    argv = ["train", "resnet20", "--epochs", "1", "--val-size", "200", "--out", str(tmp_path / "r")]
    code, _, err = run([*argv, *FAST], capsys)
    assert code == 0, err
    assert written.index("best.pt") < written.index("state.pt")


def test_record_differences_name_the_nested_field_and_miss_nothing() -> None:
    """A nested record named the field that differs; where the inner fields agree but for a
    key one lacks and the other holds as None, the whole value is named (not "no difference")."""
    from resnetlib.train.run_dir import record_differences

    run = {"data": {"path": "/d", "seed": 0}, "classes": ["a", "b"]}
    assert record_differences(run, {**run, "data": {"path": "/d", "seed": 1}}, ["data"]) == [
        "data.seed: the run's 0, now 1"
    ]
    lacking = {"data": {"path": "/d", "seed": 0, "image_size": None}}
    assert record_differences(run, lacking, ["data"]) == [
        f"data: the run's {run['data']!r}, now {lacking['data']!r}"
    ]
    assert record_differences(run, dict(run), ["data", "classes"]) == []
