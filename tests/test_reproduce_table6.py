"""``resnetlib reproduce table6`` and :func:`resnetlib.train.reproduce.table6` on a tiny
CIFAR-10 written in the published format: files, table contents, resume, one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import shutil
import statistics
from pathlib import Path

import pytest
import torch

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.train import load_data, read_metrics, recipe_for
from resnetlib.train.reproduce import Table6Report, table6
from resnetlib.train.run_dir import RunDirectoryError

from .test_train_cli import assert_one_line_error, run
from .test_train_data import write_cifar10

SMALL = {"iterations": 6, "val_size": 0, "batch_size": 8, "device": "cpu", "progress": False}
"""40 training images: 5 batches of 8 an epoch, so 6 iterations cross an epoch boundary."""


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cifar-10-batches-py"
    write_cifar10(root, n=8)
    return root


def small_table(cifar: Path, out: Path, seeds: int = 2) -> Table6Report:
    return table6(cifar, out, models=("resnet20", "resnet32"), seeds=seeds, **SMALL)  # type: ignore[arg-type]


def test_table_files_and_contents(cifar: Path, tmp_path: Path) -> None:
    announced: list[tuple[int, int, str, int]] = []
    report = table6(
        cifar,
        tmp_path,
        models=("resnet20", "resnet32"),
        seeds=2,
        announce=lambda i, n, model, seed, _: announced.append((i, n, model, seed)),
        **SMALL,  # type: ignore[arg-type]
    )
    # seeds outside: the first seed of every model first
    assert announced == [(1, 4, "resnet20", 0), (2, 4, "resnet32", 0),
                         (3, 4, "resnet20", 1), (4, 4, "resnet32", 1)]  # fmt: skip
    assert all(one.trained for one in report.runs)
    for one in report.runs:
        assert one.run_dir == tmp_path / f"{one.model}-seed{one.seed}"
        rows = read_metrics(one.run_dir / "metrics.csv")
        assert one.test_error == rows[-1]["test_error"]
        assert one.iterations == 6 == int(rows[-1]["iteration"])
        assert one.seconds == rows[-1]["elapsed_s"] > 0
        assert (one.run_dir / "final.pt").is_file()
    # the seeds differ: different initial weights, so different runs
    r20 = [run for run in report.runs if run.model == "resnet20"]
    first, second = (rl.load(run.run_dir / "final.pt") for run in r20)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)

    with open(tmp_path / "table6.csv", newline="") as file:
        rows = {row["model"]: row for row in csv.DictReader(file)}
    assert list(rows) == ["resnet20", "resnet32"]
    assert int(rows["resnet20"]["parameters"]) == rl.count_parameters(rl.resnet20()) == 269_722
    assert int(rows["resnet32"]["parameters"]) == rl.count_parameters(rl.resnet32())
    assert float(rows["resnet20"]["paper"]) == 8.75
    assert float(rows["resnet32"]["akamaster"]) == 7.37
    errors = [100 * run.test_error for run in r20]
    assert float(rows["resnet20"]["test_error_mean"]) == pytest.approx(
        statistics.fmean(errors), abs=1e-4
    )
    assert float(rows["resnet20"]["test_error_std"]) == pytest.approx(
        statistics.stdev(errors), abs=1e-4
    )
    assert float(rows["resnet20"]["test_error_min"]) == pytest.approx(min(errors), abs=1e-4)
    assert float(rows["resnet20"]["seconds_total"]) == pytest.approx(
        sum(run.seconds for run in r20), rel=1e-3
    )

    table = (tmp_path / "table6.md").read_text()
    assert table == report.table() + "\n"
    line = next(line for line in table.splitlines() if line.startswith("| ResNet-20 | 269,722"))
    assert "| 2 |" in line
    assert "8.75%" in line
    assert "8.27%" in line
    assert f"{statistics.fmean(errors):.2f}% ± {statistics.stdev(errors):.2f}" in line
    assert str(tmp_path / "resnet32-seed1") in table


def test_a_partly_done_table_resumes(cifar: Path, tmp_path: Path) -> None:
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    first = small_table(cifar, out, seeds=1)
    final = out / "resnet20-seed0" / "final.pt"
    stamp = final.stat().st_mtime_ns
    # resnet32 seed 1 is interrupted after its first epoch (5 of 6 iterations, saved)
    data = load_data(cifar, val_size=0, seed=1)
    torch.manual_seed(1)
    model = rl.create_model("resnet32", num_classes=10)
    recipe = dataclasses.replace(recipe_for("resnet32"), val_size=0, batch_size=8)

    def stop(row: dict[str, float], _: rl.ResNet) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rl.train.fit(
            model, data, recipe, out=out / "resnet32-seed1", device="cpu", iterations=6,
            progress=False, seed=1, on_epoch_end=stop,
        )  # fmt: skip
    assert not (out / "resnet32-seed1" / "final.pt").exists()

    report = small_table(cifar, out, seeds=2)
    trained = {(run.model, run.seed): run.trained for run in report.runs}
    assert trained == {("resnet20", 0): False, ("resnet32", 0): False,
                       ("resnet20", 1): True, ("resnet32", 1): True}  # fmt: skip
    assert final.stat().st_mtime_ns == stamp  # not retrained, not rewritten
    assert report.runs[:2] == tuple(dataclasses.replace(r, trained=False) for r in first.runs)
    # the resumed run ends where an uninterrupted one does (bit-identical on a CPU)
    whole = small_table(cifar, fresh, seeds=2)
    assert [run.test_error for run in report.runs] == [run.test_error for run in whole.runs]
    resumed = rl.load(out / "resnet32-seed1" / "final.pt").state_dict()
    straight = rl.load(fresh / "resnet32-seed1" / "final.pt").state_dict()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_a_finished_run_of_another_length_is_refused(cifar: Path, tmp_path: Path) -> None:
    table6(cifar, tmp_path, models=("resnet20",), **SMALL)  # type: ignore[arg-type]
    with pytest.raises(RunDirectoryError, match="6 iterations and 7 were asked"):
        table6(cifar, tmp_path, models=("resnet20",), **{**SMALL, "iterations": 7})  # type: ignore[arg-type]
    # another recipe was read as if it were the one asked (and the table said so)
    for change, message in (("batch_size", "batch_size: the run's 8, now 4"), ("val_size", "val")):
        with pytest.raises(RunDirectoryError, match=f"another recipe.*{message}"):
            table6(cifar, tmp_path, models=("resnet20",), **{**SMALL, change: 4})  # type: ignore[arg-type]
    assert table6(cifar, tmp_path, models=("resnet20",), **SMALL).runs[0].trained is False  # type: ignore[arg-type]
    # a finished run on other data was read as if it were on the data asked
    other = tmp_path / "other" / "cifar-10-batches-py"
    shutil.copytree(cifar, other)
    with pytest.raises(RunDirectoryError, match=r"finished run on other data \(data: the run's"):
        table6(other, tmp_path, models=("resnet20",), **SMALL)  # type: ignore[arg-type]


def test_library_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one model"):
        table6("nowhere", models=())
    with pytest.raises(ValueError, match="seeds must be"):
        table6("nowhere", seeds=0)
    with pytest.raises(KeyError, match="resnet7"):
        table6("nowhere", models=("resnet7",))


def test_command(cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["reproduce", "table6", "--data", str(cifar), "--models", "resnet20", "--seeds", "1",
            "--iterations", "2", "--val-size", "0", "--batch-size", "8", "--device", "cpu",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert f"[1/1] resnet20 seed 0: {tmp_path / 'resnet20-seed0'}" in err.splitlines()
    assert "| ResNet-20 | 269,722 | 1 |" in stdout
    assert f"outputs in {tmp_path}/ (table6.md, table6.csv)" in stdout
    assert (tmp_path / "table6.csv").is_file()
    # resumable from its directory alone, like any run, and by the recipe --recipe names
    for given in ([], ["--recipe", "paper"], ["--data", str(cifar), "--seed", "0"]):
        code, _, err = run(["train", "--out", str(tmp_path / "resnet20-seed0"), "--resume",
                            *given, "--no-progress"], capsys)  # fmt: skip
        assert code == 0, err
        assert "the run is finished" in err
    # a second call reads the finished run
    code, stdout, err = run(argv, capsys)
    assert code == 0
    assert "[1/1] resnet20 seed 0" in err

    # errors are one line
    def with_value(flag: str, value: str) -> list[str]:
        at = argv.index(flag) + 1
        return [*argv[:at], value, *argv[at + 1 :]]

    code, _, err = run(with_value("--models", "resnet20,resnet7"), capsys)
    assert_one_line_error(code, err, "resnet7")
    code, _, err = run(with_value("--data", str(tmp_path / "none")), capsys)
    assert_one_line_error(code, err, "none: no such data directory")
    (tmp_path / "a.csv").write_text("x\n")  # a file is not a directory, not missing
    code, _, err = run(with_value("--data", str(tmp_path / "a.csv")), capsys)
    assert_one_line_error(code, err, "a.csv: not a directory")
    code, _, err = run(with_value("--iterations", "3"), capsys)
    assert_one_line_error(code, err, "2 iterations and 3 were asked")
    code, _, err = run(with_value("--models", " , "), capsys)
    assert_one_line_error(code, err, "--models")
    with pytest.raises(SystemExit):
        main(with_value("--seeds", "0"))
    assert "--seeds" in capsys.readouterr().err


def test_a_warm_up_run_resumes_with_its_recipe_named(
    cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ResNet-110's run recorded "the paper's CIFAR recipe with warm-up", which no --recipe
    value names: `train --resume --recipe paper` was refused ("the run's None")."""
    table6(cifar, tmp_path, models=("resnet110",), seeds=1, **{**SMALL, "iterations": 1})  # type: ignore[arg-type]
    argv = ["train", "--out", str(tmp_path / "resnet110-seed0"), "--resume", "--recipe"]
    code, _, err = run([*argv, "paper", "--no-progress"], capsys)
    assert code == 0, err
    assert "the run is finished" in err
    code, _, err = run([*argv, "digits"], capsys)
    assert_one_line_error(code, err, "--recipe: the run's 'paper', now 'digits'")
