"""``resnetlib train`` / ``evaluate`` / ``reproduce``: outputs, exit codes and one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import resnetlib as rl
from resnetlib.cli import main

from .test_train_data import write_cifar10

FAST = ["--image-size", "8", "--no-progress", "--batch-size", "500"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration ResNet-20 (widths 4, 8, 16) run on the 8x8 digits, by default
    options: digits, the digits recipe, fine labels, the default split and seed."""
    out = tmp_path_factory.mktemp("tiny") / "r1"
    argv = ["train", "resnet20", "--widths", "4,8,16", "--iterations", "2", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([*argv, *FAST]) == 0
    return out


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"resnetlib [a-z]+: error: ", lines[0]), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_only_rank_0_reports_the_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun, fit() gives the other ranks no run directory: they print nothing, not
    an "outputs in" line before rank 0 has written the outputs."""
    import resnetlib.train.loop as loop

    def other_rank(model: rl.ResNet, *args: object, **kwargs: object) -> loop.FitResult:
        return loop.FitResult(metrics={"test_error": 0.5}, history=(), run_dir=None, model=model)

    monkeypatch.setattr(loop, "fit", other_rank)
    argv = ["train", "resnet20", "--iterations", "2", "--out", str(tmp_path / "r"), *FAST]
    assert run(argv, capsys)[:2] == (0, "")


@pytest.mark.parametrize("zero_init", [False, True])
def test_reproduce_degradation_names_all_it_writes(
    zero_init: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The closing line named the figure alone, not table.md or zero-init.png."""
    from resnetlib.train import reproduce

    def made(out: str, **options: object) -> reproduce.DegradationReport:
        return reproduce.DegradationReport(Path(out), Path(out) / "degradation.png", {})

    monkeypatch.setattr(reproduce, "degradation", made)
    argv = ["reproduce", "degradation", "--out", str(tmp_path), "--no-progress"]
    code, stdout, _ = run([*argv, *(["--zero-init-residual"] if zero_init else [])], capsys)
    assert code == 0
    named = "degradation.png, zero-init.png, table.md" if zero_init else "degradation.png, table.md"
    assert f"outputs in {tmp_path}/ ({named}, a run directory per model)" in stdout


def test_evaluate_on_other_data_feeds_a_run_at_the_size_it_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """evaluate --data FOLDER read the images at their own size and refused ("load the data
    with --image-size 8"), though the checkpoint says the size it trained at."""
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "f" / split / label).mkdir(parents=True)
            for index in range(3):
                shade = (index * 60 + (label == "a") * 40,) * 3
                Image.new("RGB", (12, 12), shade).save(
                    tmp_path / "f" / split / label / f"{index}.png"
                )
    argv = ["train", "resnet20", "--widths", "4,8,16", "--data", str(tmp_path / "f")]
    argv += ["--image-size", "8", "--iterations", "1", "--batch-size", "2", "--val-size", "0"]
    assert run([*argv, "--no-progress", "--out", str(tmp_path / "r")], capsys)[0] == 0
    final = str(tmp_path / "r" / "final.pt")
    code, own, err = run(["evaluate", final, "--data", str(tmp_path / "f")], capsys)
    assert code == 0, err
    code, sized, err = run(
        ["evaluate", final, "--data", str(tmp_path / "f"), "--image-size", "8"], capsys
    )
    assert code == 0, err
    assert own == sized


def test_evaluate_says_top5_only_of_more_than_five_classes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On three classes every image is right in the top five: evaluate printed "top-5
    accuracy 100.00%" as if it meant something."""
    few = ["evaluate", "resnet20", "--data", "digits", "--image-size", "32", "--widths", "4,8,16"]
    code, stdout, _ = run([*few, "--classes", "0,1,2", "--num-classes", "3"], capsys)
    assert code == 0
    assert "top-1 accuracy" in stdout
    assert "on 88 images" in stdout
    assert "top-5" not in stdout
    code, stdout, _ = run([*few, "--classes", "0,1,2,3,4,5", "--num-classes", "6"], capsys)
    assert code == 0
    assert "top-5 accuracy" in stdout


def test_train_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run(
        ["train", "resnet20", "--iterations", "2", "--out", str(out), *FAST], capsys
    )
    assert code == 0
    assert f"outputs in {out}/" in stdout
    for name in ("final.pt", "last.pt", "state.pt", "metrics.csv", "curves.png", "run.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run.json").read_text())
    assert info["command"]["model"]["name"] == "resnet20"
    assert info["data"]["image_size"] == 8
    model = rl.load(out / "final.pt")
    assert model.spec == rl.resnet20(num_classes=10).spec  # digits: 10 classes, 3 channels
    # The run's data, image size and seed come from its run.json.
    code, stdout, _ = run(["evaluate", str(out / "final.pt")], capsys)
    assert code == 0
    recorded = rl.interop.read_checkpoint(out / "final.pt").metadata["test_error"]
    assert f"(error {100 * recorded:.2f}%)" in stdout
    assert "on 297 images of digits" in stdout
    # A second run into the same directory must say --resume.
    code, _, err = run(["train", "resnet20", "--iterations", "2", "--out", str(out), *FAST], capsys)
    assert_one_line_error(code, err, str(out), "--resume")
    # Resuming a finished run with the same length changes nothing and succeeds.
    argv = ["train", "resnet20", "--iterations", "2", "--out", str(out), "--resume", *FAST]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert "after 2 iterations" in stdout


def test_missing_data_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "cifar-10-batches-py"
    code, _, err = run(["train", "resnet20", "--data", str(missing)], capsys)
    assert_one_line_error(code, err, str(missing))


def test_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["train", "resnet7"], capsys)
    assert_one_line_error(code, err, "resnet7")


def test_data_in_no_known_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not images")
    code, _, err = run(["train", "resnet20", "--data", str(tmp_path)], capsys)
    assert_one_line_error(code, err, str(tmp_path), "layout")


def test_missing_train_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    code, _, err = run(["train", "resnet20"], capsys)
    assert_one_line_error(code, err, "tqdm", 'pip install "resnetlib[train]"')


def test_evaluate_and_resume_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["evaluate", str(tmp_path / "final.pt")], capsys)
    assert_one_line_error(code, err, "final.pt", "no such checkpoint")
    not_a_checkpoint = tmp_path / "bad.pt"
    not_a_checkpoint.write_bytes(b"garbage")
    code, _, err = run(["evaluate", str(not_a_checkpoint)], capsys)
    assert_one_line_error(code, err, str(not_a_checkpoint))
    code, _, err = run(["train", "resnet20", "--resume", "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "no run to resume")
    code, _, err = run(["train", "resnet20", "--recipe", str(tmp_path / "r.json")], capsys)
    assert_one_line_error(code, err, "--recipe")
    (tmp_path / "r.json").write_text('{"lr": -1}')
    code, _, err = run(["train", "resnet20", "--recipe", str(tmp_path / "r.json")], capsys)
    assert_one_line_error(code, err, "Recipe.lr")


def test_length_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "resnet20", "--epochs", "1", "--iterations", "5"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_reproduce_degradation_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnetlib.train import DIGITS, reproduce

    report = reproduce.degradation(
        tmp_path,
        epochs=1,
        models=("plain20", "resnet20"),
        recipe=dataclasses.replace(DIGITS, batch_size=500),
        image_size=8,
        progress=False,
    )
    assert set(report.runs) == {"plain-20", "ResNet-20"}
    assert report.figure == tmp_path / "degradation.png"
    assert report.figure.read_bytes().startswith(b"\x89PNG")
    table = (tmp_path / "table.md").read_text()
    assert "| plain-20 |" in table
    assert "| ResNet-20 |" in table
    for name in ("plain20", "resnet20"):
        assert (tmp_path / name / "final.pt").is_file()
    # the digits' own statistics, as train gives a model from scratch (were CIFAR-10's)
    from resnetlib.train import load_data
    from resnetlib.train.data import data_statistics

    data = load_data("digits", image_size=8, val_size=DIGITS.val_size, seed=0)
    mean, std = data_statistics(data.train)
    config = rl.load(tmp_path / "resnet20" / "final.pt").pretrained_cfg
    assert config["mean"] == pytest.approx(mean)
    assert config["std"] == pytest.approx(std)


def test_reproduce_resumes_a_run_with_the_statistics_it_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A degradation run started when reproduce gave the digits CIFAR-10's statistics was
    refused on resume ("other data or preprocessing ... pretrained_cfg mean"), with advice no
    reproduce option could follow: a resumed run keeps the statistics it recorded."""
    from resnetlib.train import DIGITS, reproduce

    options: dict[str, Any] = {
        "epochs": 1,
        "models": ("resnet20",),
        "recipe": dataclasses.replace(DIGITS, batch_size=500),
        "image_size": 8,
        "progress": False,
    }
    fit = reproduce.fit

    def as_before(*args: Any, **kwargs: Any) -> Any:
        return fit(*args, **{**kwargs, "statistics": "model"})  # the model's CIFAR-10 ones

    monkeypatch.setattr(reproduce, "fit", as_before)
    reproduce.degradation(tmp_path, **options)
    monkeypatch.setattr(reproduce, "fit", fit)
    report = reproduce.degradation(tmp_path, **options)  # the finished run, read again
    assert set(report.runs) == {"ResNet-20"}
    mean = rl.load(tmp_path / "resnet20" / "final.pt").pretrained_cfg["mean"]
    assert mean == pytest.approx(rl.resnet20().pretrained_cfg["mean"])


def test_channels_last_is_the_cpu_default_and_can_be_turned_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def recorded(out: Path) -> object:
        return json.loads((out / "recipe.json").read_text())["channels_last"]

    on, off = tmp_path / "on", tmp_path / "off"
    argv = ["train", "resnet20", "--iterations", "1", *FAST]
    assert run([*argv, "--out", str(on)], capsys)[0] == 0
    assert recorded(on) is True  # a CPU run records the memory format it used
    assert run([*argv, "--out", str(off), "--no-channels-last"], capsys)[0] == 0
    assert recorded(off) is False
    # The choice is part of the run: resuming with the other one is refused, naming both.
    code, _, err = run(["train", "--out", str(off), "--resume", "--channels-last"], capsys)
    assert_one_line_error(code, err, "--channels-last: the run's False, now True")
    code, _, err = run(["train", "--out", str(off), "--resume", "--no-channels-last"], capsys)
    assert code == 0, err


def test_every_recipe_field_is_a_flag_checked_by_recipe_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnetlib.cli import _parser
    from resnetlib.train import Recipe

    parser = _parser(["train"])
    train = next(
        action.choices["train"] for action in parser._actions if hasattr(action, "choices")
        and isinstance(action.choices, dict) and "train" in action.choices
    )  # fmt: skip
    flags = {flag for action in train._actions for flag in action.option_strings}
    for field in dataclasses.fields(Recipe):
        if field.name != "augment":
            assert "--" + field.name.replace("_", "-") in flags, field.name
    # One set of bounds: Recipe's message, naming the flag.
    cases = [
        (["--lr", "-1"], "--lr must be"),
        (["--momentum", "1.5"], "--momentum must be"),
        (["--batch-size", "0"], "--batch-size"),
        (["--iterations", "0"], "iterations"),
        (["--warmup-error", "nan"], "--warmup-error must be"),
        (["--label-smoothing", "2"], "--label-smoothing must be"),
    ]
    for extra, needle in cases:
        code, _, err = run(["train", "resnet20", "--out", str(tmp_path / "x"), *extra], capsys)
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "x").exists()
    # Shorthands and lists: --cosine is --schedule cosine; --milestones a list.
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--out", str(out), "--iterations", "2", "--cosine"]
    argv += ["--milestones", "1,2", "--no-decay-norm-bias", "--ema", "0.5", *FAST]
    assert run(argv, capsys)[0] == 0
    recipe = Recipe.from_json((out / "recipe.json").read_text())
    assert (recipe.schedule, recipe.no_decay_norm_bias, recipe.ema_decay) == ("cosine", True, 0.5)
    with pytest.raises(SystemExit):
        main(["train", "resnet20", "--cosine", "--schedule", "step"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_freeze_beyond_the_stage_count_is_refused(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--freeze 9 on a 3-stage ResNet-20 was clamped to 3 (only fc trained); freeze() decides."""
    out = tmp_path / "x"
    argv = ["train", "--checkpoint", str(tiny_run / "final.pt"), "--iterations", "1"]
    code, _, err = run([*argv, "--freeze", "9", "--out", str(out), *FAST], capsys)
    assert_one_line_error(code, err, "--freeze 9: stages must be an int in 0..3", "the model has 3")
    assert not out.exists()
    code, _, err = run([*argv, "--freeze", "3", "--out", str(out), *FAST], capsys)
    assert code == 0, err
    assert "frozen (weights fixed, norms in eval mode): conv1, bn1, layer1, layer2, layer3" in err
    # from scratch, the frozen layers are random: said, not silent
    scratch = ["train", "resnet20", "--widths", "4,8,16", "--iterations", "1", "--freeze", "1"]
    code, _, err = run([*scratch, "--out", str(tmp_path / "s"), *FAST], capsys)
    assert code == 0, err
    assert "frozen at their random initialization (no weights loaded) (weights fixed" in err
    assert "conv1, bn1, layer1" in err


def test_paper_recipe_for_a_checkpoint_alone_is_the_checkpoints_depths(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--recipe paper looked the recipe up by the model name, empty for --checkpoint alone
    ("unknown model ''"); the checkpoint names the model, and its depth picks the recipe."""
    deep = tmp_path / "deep.pt"
    rl.save(rl.cifar_resnet(110, widths=(2, 2, 2), num_classes=10), deep)
    for checkpoint, warmup_lr in ((tiny_run / "final.pt", None), (deep, 0.01)):
        out = tmp_path / checkpoint.stem
        argv = ["train", "--checkpoint", str(checkpoint), "--recipe", "paper", "--iterations"]
        code, _, err = run([*argv, "1", "--out", str(out), *FAST], capsys)
        assert code == 0, err
        assert "the paper's CIFAR recipe" in err
        assert json.loads((out / "recipe.json").read_text())["warmup_lr"] == warmup_lr


def test_a_relative_data_path_is_the_same_data_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run.json recorded --data as typed and evaluate/--resume re-read it relative to the
    current directory: from elsewhere they used other data, or none."""
    first, other = tmp_path / "first", tmp_path / "other"
    write_cifar10(first / "cifar-10-batches-py", n=20)
    other.mkdir()
    monkeypatch.chdir(first)
    argv = ["train", "resnet20", "--widths", "4,8,16", "--data", "cifar-10-batches-py"]
    argv += ["--iterations", "2", "--batch-size", "10", "--val-size", "0", "--no-progress"]
    code, _, err = run([*argv, "--out", "run"], capsys)
    assert code == 0, err
    recorded = json.loads((first / "run" / "run.json").read_text())["data"]["data"]
    assert recorded == str((first / "cifar-10-batches-py").resolve())
    code, here, err = run(["evaluate", "run/final.pt"], capsys)
    assert code == 0, err
    monkeypatch.chdir(other)
    code, there, err = run(["evaluate", "../first/run/final.pt"], capsys)
    assert code == 0, err
    assert there.replace("../first/", "") == here
    code, _, err = run(["train", "--out", "../first/run", "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert "the run is finished" in err


def test_resume_compares_options_with_what_the_run_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An option given again on --resume was compared with the command's record, None where
    the run took a default (--data digits: "the run's None, now 'digits'"), and paths and
    class indices as typed; it is refused only if it differs from what the run used."""
    monkeypatch.chdir(tmp_path)
    small = ["--widths", "4,8,16", "--iterations", "2", "--no-progress"]
    code, _, err = run(["train", "resnet20", *small, "--batch-size", "500", "--out", "d"], capsys)
    assert code == 0, err
    same = ["--data", "digits", "--recipe", "digits", "--image-size", "16", "--labels", "fine"]
    same += ["--classes", ",".join(map(str, range(10))), "--seed", "0"]
    code, _, err = run(["train", "--out", "d", "--resume", *same, "--no-progress"], capsys)
    assert code == 0, err
    assert "the run is finished" in err
    for flag, value, message in (
        ("--image-size", "8", "--image-size: the run's 16, now 8"),
        ("--recipe", "paper", "--recipe: the run's 'digits', now 'paper'"),
        ("--labels", "coarse", "--labels: the run's 'fine', now 'coarse'"),
    ):
        code, _, err = run(["train", "--out", "d", "--resume", flag, value], capsys)
        assert_one_line_error(code, err, "d was started with other options: " + message)
    write_cifar10(tmp_path / "cifar-10-batches-py", n=20)
    argv = ["train", "resnet20", *small, "--data", "cifar-10-batches-py", "--batch-size", "10"]
    code, _, err = run([*argv, "--classes", "cat,deer", "--out", "c"], capsys)
    assert code == 0, err
    for same in (
        ["--classes", "3,4"],
        ["--classes", "cat,deer"],
        ["--data", "./cifar-10-batches-py"],
        ["--data", str(tmp_path / "cifar-10-batches-py")],
        ["--recipe", "paper"],
    ):
        code, _, err = run(["train", "--out", "c", "--resume", *same, "--no-progress"], capsys)
        assert code == 0, (same, err)
    code, _, err = run(["train", "--out", "c", "--resume", "--classes", "4,3"], capsys)
    message = "--classes: the run's ['cat', 'deer'], now ['deer', 'cat']"
    assert_one_line_error(code, err, message)
    code, _, err = run(["train", "--out", "c", "--resume", "--data", "digits"], capsys)
    recorded = str((tmp_path / "cifar-10-batches-py").resolve())  # its last 60 characters
    assert len(repr(recorded)) > 60
    assert_one_line_error(code, err, "--data: the run's ...", f"{recorded[-20:]}', now 'digits'")


def test_a_new_run_refuses_a_run_without_its_run_json(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory whose run.json was deleted was taken as free: a new run replaced its
    final.pt, state.pt and metrics.csv and left the old best.pt beside them."""
    import shutil

    out = tmp_path / "norj"
    shutil.copytree(tiny_run, out)
    (out / "run.json").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    argv = ["train", "resnet20", "--widths", "4,8,16", "--iterations", "2", "--out", str(out)]
    code, _, err = run([*argv, *FAST], capsys)
    assert_one_line_error(code, err, "spec.json: a new run would overwrite it", "another --out")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_evaluate_names_a_file_that_holds_no_weights(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """evaluate RUN/metrics.csv printed the unpickler's "IndexError: pop from empty list"."""
    code, _, err = run(["evaluate", str(tiny_run / "metrics.csv")], capsys)
    assert_one_line_error(code, err, "metrics.csv: not a checkpoint, state dict or ONNX file")
    assert "IndexError" not in err


def test_classes_named_by_numbers_are_chosen_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--classes 3,2 on class folders 2,3,5,8 trained on folders "8" and "5" (the items read
    as indices); --classes 8,5 on --resume was then refused as an index out of range."""
    from .test_train_data import _png

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    for seed, name in enumerate(("2", "3", "5", "8")):
        for split in ("train", "test"):
            _png(tmp_path / "numbers" / split / name / "a.png", seed)
    argv = ["train", "resnet20", "--widths", "4,8,16", "--data", "numbers", "--iterations", "1"]
    argv += ["--batch-size", "2", "--no-progress", "--out", "runs/numbers"]
    code, _, err = run([*argv, "--classes", "3,2"], capsys)
    assert code == 0, err
    assert json.loads(Path("runs/numbers/run.json").read_text())["classes"] == ["3", "2"]
    for same in ("3,2", "1,0"):
        resume = ["train", "--out", "runs/numbers", "--resume", "--classes", same, "--no-progress"]
        code, _, err = run(resume, capsys)
        assert code == 0, (same, err)
        code, _, err = run(["evaluate", "runs/numbers/final.pt", "--classes", same], capsys)
        assert code == 0, (same, err)
    code, _, err = run(["train", "--out", "runs/numbers", "--resume", "--classes", "8,5"], capsys)
    assert_one_line_error(code, err, "--classes: the run's ['3', '2'], now ['8', '5']")


def test_evaluate_refuses_classes_other_than_the_models_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """evaluate checked only the number of classes: data of other classes, or of the model's
    in another order, was scored with mislabelled classes. Fine-tuning may relabel."""
    cifar = tmp_path / "cifar-10-batches-py"
    write_cifar10(cifar, n=20)
    argv = ["train", "resnet20", "--widths", "4,8,16", "--data", str(cifar), "--iterations"]
    argv += ["1", "--batch-size", "10", "--no-progress", "--out", str(tmp_path / "c")]
    code, _, err = run([*argv, "--classes", "cat,deer,bird"], capsys)
    assert code == 0, err
    final = str(tmp_path / "c" / "final.pt")
    for classes, names in (("deer,cat,bird", "deer, cat, bird"), ("0,1,2", "airplane, automo")):
        code, _, err = run(["evaluate", final, "--data", str(cifar), "--classes", classes], capsys)
        assert_one_line_error(
            code,
            err,
            "the model's classes are cat, deer, bird (its pretrained_cfg label_names)",
            f"cifar10's are {names}",
            "--classes cat,deer,bird",
        )
    code, stdout, err = run(["evaluate", final, "--data", str(cifar), "--classes", "3,4,2"], capsys)
    assert code == 0, err
    code, same, err = run(["evaluate", final], capsys)  # the run's own data
    assert code == 0, err
    assert stdout == same
    # Fine-tuning on other classes of the same number gives the head a new meaning.
    tuned = tmp_path / "t"
    argv = ["train", "--checkpoint", final, "--data", str(cifar), "--classes", "dog,deer,bird"]
    code, _, err = run(
        [*argv, "--iterations", "1", "--batch-size", "10", "--out", str(tuned)], capsys
    )
    assert code == 0, err
    assert rl.load(tuned / "final.pt").pretrained_cfg["label_names"] == ["dog", "deer", "bird"]


def test_evaluate_applies_data_options_to_a_runs_data(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """evaluate RUN/final.pt without --data ignored --classes, --image-size, --val-size and
    --seed (it evaluated on the run's data as recorded); each given now replaces the run's."""
    final = str(tiny_run / "final.pt")
    code, _, err = run(["evaluate", final, "--classes", "0,1"], capsys)
    assert_one_line_error(code, err, "the model has 10 classes and digits has 2")
    code, _, err = run(["evaluate", final, "--image-size", "16"], capsys)
    assert_one_line_error(code, err, "the model expects 8x8 images", "digits has 16x16")
    code, _, err = run(["evaluate", final, "--labels", "coarse"], capsys)
    assert_one_line_error(code, err, "coarse labels exist only for CIFAR-100")
    outputs = []
    for seed in ("0", "3"):
        argv = ["evaluate", final, "--split", "val", "--val-size", "100", "--seed", seed]
        code, stdout, err = run(argv, capsys)
        assert code == 0, err
        assert "on 100 images of digits" in stdout
        outputs.append(stdout)
    assert outputs[0] != outputs[1]  # another seed, another validation split
    code, stdout, err = run(["evaluate", final, "--classes", ",".join(map(str, range(10)))], capsys)
    assert code == 0, err
    assert "on 297 images of digits" in stdout


def test_resume_compares_model_options_with_the_spec_and_files_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model option was compared with what was typed ("--shortcut: the run's None, now
    'A'" for the default given again), a --checkpoint path as typed; and a run started from
    --checkpoint FILE alone could not be resumed at all (its run.json's model name is null)."""
    monkeypatch.chdir(tmp_path)
    small = ["--iterations", "2", "--no-progress", "--batch-size", "500"]
    code, _, err = run(["train", "resnet20", "--widths", "4,8,16", *small, "--out", "d"], capsys)
    assert code == 0, err
    same = ["--widths", "4,8,16", "--shortcut", "A", "--block", "basic", "--num-classes", "10"]
    code, _, err = run(["train", "--out", "d", "--resume", *same, "--no-progress"], capsys)
    assert code == 0, err
    assert "the run is finished" in err
    code, _, err = run(["train", "--out", "d", "--resume", "--shortcut", "B"], capsys)
    assert_one_line_error(code, err, "--shortcut: the run's 'A', now 'B'")
    code, _, err = run(["train", "--out", "d", "--resume", "--widths", "8,16,32"], capsys)
    assert_one_line_error(code, err, "--widths: the run's [4, 8, 16], now [8, 16, 32]")
    code, _, err = run(["train", "--checkpoint", "./d/final.pt", *small, "--out", "f"], capsys)
    assert code == 0, err
    for where, checkpoint in ((".", "d/final.pt"), ("d", "final.pt")):
        monkeypatch.chdir(tmp_path / where)
        out = str(tmp_path / "f")
        argv = ["train", "--out", out, "--resume", "--checkpoint", checkpoint, "--no-progress"]
        code, _, err = run(argv, capsys)
        assert code == 0, err
        assert "the run is finished" in err


def test_milestones_given_with_a_length_count_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--milestones with --epochs/--iterations were read in the recipe's own length and
    scaled (10,15 of 20 iterations became none; epochs 1,2 of 3 became iterations 2,5), and
    the same command with --resume was refused."""
    small = ["resnet20", "--widths", "4,8,16", *FAST]
    argv = ["train", *small, "--epochs", "3", "--milestones", "1,2", "--out", str(tmp_path / "e")]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    plan = json.loads((tmp_path / "e" / "recipe.json").read_text())
    per_epoch = plan["iterations"] // 3
    assert plan["milestones"] == [per_epoch, 2 * per_epoch]
    code, _, err = run([*argv, "--resume"], capsys)
    assert code == 0, err
    assert "the run is finished" in err
    out = str(tmp_path / "i")
    argv = ["train", *small, "--recipe", "paper", "--iterations", "20", "--milestones", "10,15"]
    code, _, err = run([*argv, "--warmup-max-iterations", "4", "--out", out], capsys)
    assert code == 0, err
    plan = json.loads((tmp_path / "i" / "recipe.json").read_text())
    assert (plan["milestones"], plan["iterations"]) == ([10, 15], 20)
    assert plan["warmup_max_iterations"] == 4
    code, _, err = run(["train", "--out", out, "--resume", "--milestones", "10,16"], capsys)
    assert_one_line_error(code, err, "--milestones: the run's [10, 15], now [10, 16]")


def test_a_recipe_files_length_scales_the_schedule_as_the_flag_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recipe file giving a length but no milestones kept the paper's 32000, 48000 for a
    4-iteration run (the lr never decayed); it now scales them as --iterations does."""
    (tmp_path / "short.json").write_text(json.dumps({"iterations": 4, "val_size": 0}))
    small = ["resnet20", "--widths", "4,8,16", *FAST, "--recipe", str(tmp_path / "short.json")]
    plans = []
    for name, extra in (("file", []), ("flag", ["--iterations", "4"])):
        code, _, err = run(["train", *small, *extra, "--out", str(tmp_path / name)], capsys)
        assert code == 0, err
        plans.append(json.loads((tmp_path / name / "recipe.json").read_text()))
    assert (plans[0]["iterations"], plans[0]["milestones"]) == (4, [2, 3])
    assert plans[0] == plans[1]
    # a warm-up cap the file gives counts in its length, as the flag's does; and a length in
    # epochs scales the paper's milestones (counted in iterations) too, from a file or flags
    (tmp_path / "capped.json").write_text(
        json.dumps({"iterations": 4, "warmup_max_iterations": 4, "val_size": 0})
    )
    argv = ["train", *small[:-1], str(tmp_path / "capped.json")]
    assert run([*argv, "--out", str(tmp_path / "capped")], capsys)[0] == 0
    capped = json.loads((tmp_path / "capped" / "recipe.json").read_text())
    assert (capped["iterations"], capped["warmup_max_iterations"]) == (4, 4)
    # A length in epochs from a file is read as --epochs: the paper's milestones scale to the
    # run's iterations (3 an epoch here: 3 and 4.5 of 6, not whole epochs' 3 and 6), and the
    # start-up line says so, as for the flag.
    (tmp_path / "epochs.json").write_text(json.dumps({"epochs": 2, "val_size": 0}))
    plans, lines = {}, {}
    for name, extra in (
        ("epochs-file", ["--recipe", str(tmp_path / "epochs.json")]),
        ("epochs-flag", ["--recipe", "paper", "--epochs", "2", "--val-size", "0"]),
        ("epochs-flags", ["--recipe", "paper", "--epochs", "2", "--warmup-max-iterations", "3"]),
    ):
        argv = ["train", "resnet20", "--widths", "4,8,16", *FAST, *extra]
        code, _, err = run([*argv, "--out", str(tmp_path / name)], capsys)
        assert code == 0, err
        plans[name] = json.loads((tmp_path / name / "recipe.json").read_text())
        lines[name] = err.splitlines()[0]
    assert plans["epochs-file"]["iterations"] == 6
    assert plans["epochs-file"]["milestones"] == [3, 4]  # round(4.5): to even
    assert plans["epochs-file"] == plans["epochs-flag"]
    assert "milestones 32000, 48000 scaled to 3, 4 for 6 iterations" in lines["epochs-file"]
    # a warm-up cap given with a length counts in it, and so do the milestones scaled with it
    # (in whole epochs: the data's batches are not known yet), not 64000, 96000
    per_epoch = plans["epochs-flags"]["iterations"] // 2
    assert plans["epochs-flags"]["milestones"] == [per_epoch, 2 * per_epoch]
    # a bad length in the file is the file's, not a flag the user never gave
    (tmp_path / "bad.json").write_text(json.dumps({"iterations": -5}))
    code, _, err = run(["train", *small[:-1], str(tmp_path / "bad.json")], capsys)
    assert_one_line_error(code, err, "bad.json: Recipe.iterations must be an int >= 1; got -5")


def test_a_runs_recipe_json_repeats_its_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--recipe RUN/recipe.json held out a tenth, at most its val_size (150 of 1,500 digits)
    where the run held out 200: another split, other numbers."""
    small = ["resnet20", "--widths", "4,8,16", "--iterations", "2", *FAST]
    first, again = tmp_path / "first", tmp_path / "again"
    code, _, err = run(["train", *small, "--val-size", "200", "--out", str(first)], capsys)
    assert code == 0, err
    code, _, err = run(
        ["train", *small, "--recipe", str(first / "recipe.json"), "--out", str(again)], capsys
    )
    assert code == 0, err
    assert "1,300 train / 200 val" in err
    assert (first / "recipe.json").read_text() == (again / "recipe.json").read_text()
    rows = [(r / "metrics.csv").read_text().splitlines()[1].split(",") for r in (first, again)]
    assert rows[0][:9] == rows[1][:9]  # the same numbers, but for the timings


def test_a_run_stopped_before_its_first_save_starts_over_as_it_started(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Starting over built spec.json afresh, unseeded: a fine-tune from --checkpoint went on
    from random weights, and two restarts of one run ended differently."""
    import shutil

    small = ["--iterations", "2", *FAST, "--batch-size", "100"]
    starts = {
        "scratch": ["resnet20", "--widths", "4,8,16", "--classes", "0,1,2", "--seed", "3"],
        "fine-tune": ["--checkpoint", str(tiny_run / "final.pt"), "--classes", "0,1,2"],
    }
    for name, start in starts.items():
        whole, restarted = tmp_path / name, tmp_path / f"{name}-restarted"
        code, _, err = run(["train", *start, *small, "--out", str(whole)], capsys)
        assert code == 0, err
        restarted.mkdir()
        for record in ("run.json", "spec.json", "recipe.json"):  # stopped before its first save
            shutil.copy(whole / record, restarted / record)
        code, _, err = run(["train", "--out", str(restarted), "--resume", "--no-progress"], capsys)
        assert code == 0, err
        rows = [(r / "metrics.csv").read_text().splitlines()[1:] for r in (whole, restarted)]
        assert [row.split(",")[:9] for row in rows[0]] == [row.split(",")[:9] for row in rows[1]]


def test_a_model_that_does_not_fit_the_data_is_refused_by_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--in-channels 1 on 3-channel data was blamed on a pretrained_cfg mean the user never
    set; --num-classes 5 on 10 classes got evaluate's advice."""
    argv = ["train", "resnet20", "--iterations", "1", *FAST, "--out", str(tmp_path / "r")]
    code, _, err = run([*argv, "--in-channels", "1"], capsys)
    assert_one_line_error(code, err, "the model takes 1-channel images and digits has 3 channels")
    code, _, err = run([*argv, "--num-classes", "5"], capsys)
    assert_one_line_error(code, err, "has 10; train it with --num-classes 10 (the default)")
    assert not (tmp_path / "r").exists()


def test_resume_takes_the_runs_own_length_in_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume --epochs N was refused ("the run's None, now N") when N epochs was the
    recipe's own length, though --iterations of the same length was accepted."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"epochs": 2, "iterations": None, "val_size": 0}))
    out = str(tmp_path / "r")
    argv = ["train", "resnet20", "--widths", "4,8,16", "--recipe", str(recipe), *FAST]
    code, _, err = run([*argv, "--out", out], capsys)
    assert code == 0, err
    code, _, err = run(["train", "--out", out, "--resume", "--epochs", "2"], capsys)
    assert code == 0, err
    assert "the run is finished" in err
    code, _, err = run(["train", "--out", out, "--resume", "--epochs", "3"], capsys)
    assert_one_line_error(code, err, "--epochs: the run's 2, now 3")


def test_reproduce_checks_its_recipe_flags_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--epochs 0 / --iterations 0 announced the first run, then failed naming Recipe's
    fields rather than the flags."""
    for argv, flag in (
        (["degradation", "--epochs", "0"], "--epochs"),
        (["table6", "--data", str(tmp_path), "--iterations", "0"], "--iterations"),
        (["table6", "--data", str(tmp_path), "--batch-size", "0"], "--batch-size"),
    ):
        code, _, err = run(["reproduce", *argv, "--out", str(tmp_path / "out")], capsys)
        assert_one_line_error(code, err, f"{flag} must be an int >= 1; got 0")
    assert not (tmp_path / "out").exists()


def test_the_image_size_advice_is_one_the_flag_can_follow() -> None:
    """--image-size resizes to squares: a model of a non-square size is not told to use it."""
    from resnetlib.core.data_config import set_data_config
    from resnetlib.train.data import load_data
    from resnetlib.train.loop import check_data_fits

    test = load_data("digits").test  # 16x16
    model = rl.resnet20(num_classes=10)
    for size, advice in (
        ((3, 8, 8), "load the data with --image-size 8"),
        ((3, 12, 20), "give data of that size (--image-size resizes to squares only)"),
    ):
        set_data_config(model, {**model.pretrained_cfg, "input_size": size})
        with pytest.raises(ValueError, match=f"expects {size[1]}x{size[2]} images") as info:
            check_data_fits(model, test)
        assert str(info.value).endswith(advice)


def test_a_run_file_of_an_unregistered_part_names_the_runs_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate and predict of a run's checkpoint whose block is not registered say which
    --import the run was trained with (as train --resume does); nothing is imported."""
    from resnetlib.nn import BLOCKS

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run_parts_module.py").write_text(
        "import resnetlib as rl\n"
        "from resnetlib.nn import BasicBlock\n\n"
        "@rl.register_block('run_parts_basic')\n"
        "class RunPartsBasic(BasicBlock):\n"
        "    pass\n"
    )
    monkeypatch.delitem(sys.modules, "run_parts_module", raising=False)
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--import", "run_parts_module", "--block", "run_parts_basic"]
    argv += ["--data", "digits", "--image-size", "8", "--iterations", "1", "--out", str(out)]
    code, _, err = run([*argv, "--batch-size", "500", "--no-progress"], capsys)
    assert code == 0, err
    BLOCKS.unregister("run_parts_basic")  # a fresh process that has not imported it
    (tmp_path / "x.png").write_bytes(b"")  # predict looks at the model before the image
    final = str(out / "final.pt")
    for command in (["evaluate", final], ["predict", final, "x.png"]):
        code, _, err = run(command, capsys)
        assert_one_line_error(
            code,
            err,
            "unknown block 'run_parts_basic'",
            "records that the run was trained with --import run_parts_module: if you trust "
            "run_parts_module, add --import run_parts_module",
        )
        assert "add --import MODULE" not in err  # the run's own advice, not a generic one too


def test_the_paper_recipe_with_warm_up_is_named_so_as_reproduce_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train resnet110 said "the paper's CIFAR recipe" where reproduce table6 says "... with
    warm-up" for the same recipe; the run resumes with --recipe paper either way."""
    out = str(tmp_path / "r110")
    argv = ["train", "resnet110", "--widths", "4,8,8", "--iterations", "1", *FAST]
    code, _, err = run([*argv, "--recipe", "paper", "--val-size", "0", "--out", out], capsys)
    assert code == 0, err
    assert "(the paper's CIFAR recipe with warm-up, batch 500" in err
    assert json.loads(Path(out, "run.json").read_text())["recipe_name"].endswith("with warm-up")
    code, _, err = run(["train", "--out", out, "--resume", "--recipe", "paper", *FAST[2:]], capsys)
    assert code == 0, err
    assert "the run is finished" in err
