"""The first runs a user makes (issue 25): model options that parse as typed, short runs
that are shorter recipes, validation splits that fit small data, a fine-tuning recipe, and
progress and resume lines that say what happens."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import resnetlib as rl
from resnetlib.cli import _parser, main
from resnetlib.train import FINETUNE, PAPER_CIFAR, PAPER_CIFAR_WARMUP, Recipe, load_data
from resnetlib.train.recipe import scaling_note

from .test_contract import (
    published,  # noqa: F401  (a fixture)
)
from .test_pretrained import (
    akamaster_file,  # noqa: F401  (a fixture)
    hub_dir,  # noqa: F401  (a fixture)
    offline,  # noqa: F401  (a fixture)
)
from .test_train_data import write_cifar10

DIGITS8 = ["--data", "digits", "--image-size", "8", "--no-progress", "--device", "cpu"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parse(argv: list[str]) -> Any:
    return _parser(argv).parse_args(argv)


# -- 1. model options parse as typed ----------------------------------------------------


def test_pretrained_is_a_flag_that_never_takes_the_next_word() -> None:
    args = parse(["evaluate", "--pretrained", "resnet20", "--data", "D"])
    assert (args.model, args.pretrained) == ("resnet20", True)
    args = parse(["export", "--pretrained", "resnet20", "--format", "onnx", "--out", "x.onnx"])
    assert (args.model, args.pretrained) == ("resnet20", True)
    args = parse(["train", "--pretrained", "resnet20"])
    assert (args.model, args.pretrained) == ("resnet20", True)
    args = parse(["summary", "resnet20", "--pretrained"])
    assert (args.model, args.pretrained) == ("resnet20", True)
    # --pretrained-tag names the weights, in either order with --pretrained
    for argv in (
        ["evaluate", "resnet20", "--pretrained", "--pretrained-tag", "t"],
        ["evaluate", "resnet20", "--pretrained-tag", "t", "--pretrained"],
    ):
        assert parse(argv).pretrained == "t"
    assert parse(["evaluate", "resnet20"]).pretrained is None


def test_predict_takes_the_model_then_images_around_pretrained(
    published: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from PIL import Image

    images = []
    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    code, out, err = run(["predict", "resnet20.test", "--pretrained", *images], capsys)
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == images
    code, out2, err = run(["predict", "resnet20", "--pretrained-tag", "test", *images], capsys)
    assert code == 0, err
    assert out2 == out
    # --checkpoint FILE alone names the model: every word is an image
    saved = tmp_path / "m.pt"
    rl.save(rl.create_model("resnet20", pretrained="test"), saved)
    code, out3, err = run(["predict", "--checkpoint", str(saved), *images], capsys)
    assert code == 0, err
    assert out3 == out
    code, out4, err = run(["predict", "--checkpoint", str(saved), images[0]], capsys)
    assert code == 0, err
    assert out4.splitlines() == out.splitlines()[:1]
    assert err == ""  # weights given: no note
    # a model name alone predicts with random weights, and says so (the results still print)
    code, out5, err = run(["predict", "resnet20", images[0]], capsys)
    assert code == 0, err
    assert out5.startswith(images[0] + ": ")
    assert err == (
        "note: resnet20 has random weights; give --pretrained or --checkpoint FILE for a "
        "trained one\n"
    )
    # so does a name with a weights tag: MODEL.TAG names the tag that --pretrained loads
    code, _, err = run(["predict", "resnet20.akamaster_cifar10", images[0]], capsys)
    assert code == 0, err
    assert err.startswith("note: resnet20.akamaster_cifar10 has random weights; give --pretrained")
    # evaluate and export say the same of what they use; summary and train do not need weights
    note = "note: resnet20 has random weights"
    code, _, err = run(["evaluate", "resnet20", "--data", "digits", "--image-size", "8"], capsys)
    assert err.count("\n") == 1  # a refusal is still one line, with no note beside it
    assert note not in err
    code, _, err = run(["evaluate", "resnet20", "--data", "digits", "--image-size", "32"], capsys)
    assert code == 0, err
    assert err.startswith(note)
    out = tmp_path / "r.pt2"  # export says it in the one line it prints
    code, stdout, err = run(["export", "resnet20", "--format", "pt2", "--out", str(out)], capsys)
    assert code == 0, err
    assert (
        stdout
        == f"wrote {out} (pt2, dynamic batch, random weights (no --pretrained or --checkpoint))\n"
    )
    code, _, err = run(["summary", "resnet20"], capsys)
    assert code == 0, err
    assert note not in err


def test_checkpoint_alone_names_the_model_to_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--iterations", "2", "--batch-size", "500", "--out", str(out)]
    assert run([*argv, *DIGITS8], capsys)[0] == 0
    final = str(out / "final.pt")
    code, stdout, err = run(["evaluate", "--checkpoint", final], capsys)  # the run's data
    assert code == 0, err
    assert "on 297 images of digits" in stdout
    code, stdout, err = run(["summary", "--checkpoint", final], capsys)
    assert code == 0, err
    assert "layer3" in stdout
    target = tmp_path / "m.pt2"
    code, stdout, err = run(
        ["export", "--checkpoint", final, "--format", "pt2", "--out", str(target)], capsys
    )
    assert code == 0, err
    assert target.is_file()
    # train: the checkpoint's network with a new head for the data's classes
    tuned = tmp_path / "tuned"
    code, _, err = run(
        ["train", "--checkpoint", final, "--classes", "0,1,2", "--iterations", "1",
         "--batch-size", "100", "--out", str(tuned), *DIGITS8],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    model = rl.load(tuned / "final.pt")
    assert model.num_classes == 3
    assert model.spec == dataclasses.replace(rl.load(final).spec, num_classes=3)
    # a plain state dict does not say its network: one line
    state = tmp_path / "state.pth"
    torch.save(rl.resnet20().state_dict(), state)
    code, _, err = run(["summary", "--checkpoint", str(state)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "name the model" in err


# -- 2. a short run is a shorter recipe -------------------------------------------------


def test_milestones_and_warmup_scale_with_the_length_in_one_place() -> None:
    plan = PAPER_CIFAR_WARMUP.resolved(390, iterations=400)
    assert plan.milestones == (200, 300)
    assert plan.warmup_max_iterations == round(2000 * 400 / 64000)
    assert plan.resolved(390) == plan  # a plan resolves to itself: recipe.json repeats it
    note = scaling_note(PAPER_CIFAR, PAPER_CIFAR.resolved(390, iterations=400), 390)
    assert note == "milestones 32000, 48000 scaled to 200, 300 for 400 iterations"
    assert scaling_note(PAPER_CIFAR, PAPER_CIFAR.resolved(390), 390) == ""
    assert PAPER_CIFAR.resolved(390).warmup_max_iterations == 2000


def test_train_scales_the_recipe_says_so_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--recipe", "paper", "--iterations", "4", "--batch-size", "100"]
    code, _, err = run([*argv, "--val-size", "0", "--out", str(out), *DIGITS8], capsys)
    assert code == 0, err
    assert "milestones 32000, 48000 scaled to 2, 3 for 4 iterations" in err
    followed = Recipe.from_json((out / "recipe.json").read_text())
    assert (followed.iterations, followed.milestones) == (4, (2, 3))
    # the recorded recipe repeats the run: the same plan, nothing scaled
    again = tmp_path / "again"
    argv = ["train", "resnet20", "--recipe", str(out / "recipe.json"), "--out", str(again)]
    code, _, err = run([*argv, *DIGITS8], capsys)
    assert code == 0, err
    assert "scaled" not in err
    assert (again / "recipe.json").read_text() == (out / "recipe.json").read_text()
    steps = (again / "steps.csv").read_text().splitlines()[1:]
    assert [float(line.split(",")[1]) for line in steps] == pytest.approx([0.1, 0.001])


# -- 3. the validation split fits the data ----------------------------------------------


def test_the_default_split_is_a_tenth_capped_and_leaves_a_batch() -> None:
    assert PAPER_CIFAR.val_images(50_000) == 5_000  # the paper's 45k/5k
    assert PAPER_CIFAR.val_images(2_000) == 200
    assert PAPER_CIFAR.val_images(1_000_000) == 5_000
    assert PAPER_CIFAR.val_images(135) == 7  # 135 - 7 = 128: one batch left
    assert PAPER_CIFAR.val_images(100) == 0
    assert dataclasses.replace(PAPER_CIFAR, val_size=0).val_images(50_000) == 0


def test_a_2000_image_set_trains_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cifar = tmp_path / "cifar-10-batches-py"
    write_cifar10(cifar, n=400)  # 2,000 training images
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--data", str(cifar), "--iterations", "1", "--out", str(out)]
    code, _, err = run([*argv, "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    info = json.loads((out / "run.json").read_text())
    assert info["split"]["val"] == 200
    assert info["split"]["train"] == 1_800
    assert info["data"]["val_size"] == 200  # evaluate and resume draw the same split
    assert Recipe.from_json((out / "recipe.json").read_text()).val_size == 200
    source = dict(info["data"])
    again = load_data(source.pop("data"), **source)
    assert again.sizes() == info["split"]


def test_table6_trains_on_all_training_images_and_says_so(tmp_path: Path) -> None:
    from resnetlib.train.reproduce import table6

    cifar = tmp_path / "cifar-10-batches-py"
    write_cifar10(cifar, n=4)
    report = table6(
        cifar, tmp_path / "t6", models=["resnet20"], iterations=1, batch_size=8,
        device="cpu", progress=False,
    )  # fmt: skip
    info = json.loads((report.runs[0].run_dir / "run.json").read_text())
    assert info["split"]["val"] == 0
    assert info["split"]["train"] == 20
    assert "Trained on all training images" in report.table()


# -- 4. a fine-tuning recipe ------------------------------------------------------------


def test_finetune_recipe_is_the_default_with_pretrained_weights(
    published: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (FINETUNE.lr, FINETUNE.schedule, FINETUNE.epochs) == (0.01, "cosine", 10)
    assert FINETUNE.warmup_lr is None
    cifar = tmp_path / "cifar-10-batches-py"
    write_cifar10(cifar, n=40)
    out = tmp_path / "tuned"
    argv = ["train", "resnet20.test", "--pretrained", "--data", str(cifar), "--classes"]
    argv += ["0,1,2,3,4", "--num-classes", "5", "--freeze", "1", "--lr", "0.01"]
    code, _, err = run([*argv, "--batch-size", "16", "--epochs", "1", "--out", str(out),
                        "--no-progress", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    assert "the fine-tuning recipe" in err
    followed = Recipe.from_json((out / "recipe.json").read_text())
    assert (followed.schedule, followed.lr, followed.warmup_lr) == ("cosine", 0.01, None)


# -- 5. progress and resume lines -------------------------------------------------------


def test_progress_shows_values_from_the_first_iteration_and_no_bar_before_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--data", "digits", "--image-size", "8", "--device", "cpu"]
    code, _, err = run([*argv, "--iterations", "2", "--batch-size", "500", "--out", str(out)],
                       capsys)  # fmt: skip
    assert code == 0, err
    before = err.split("ResNet-20 (")[0]
    assert "0/2" not in before, before
    assert "%|" not in before, before
    first = re.search(r"1/2 \[[^\]]*\]", err)
    assert first is not None, err
    assert "loss=" in first[0], first[0]
    assert "lr=0.1" in first[0], first[0]


def test_resume_says_where_it_goes_on_and_a_finished_run_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnetlib.train import loop

    out = tmp_path / "run"
    argv = ["train", "resnet20", "--iterations", "4", "--batch-size", "500", "--out", str(out)]
    calls = 0
    real_end = loop.Trainer.end_epoch

    def stop_after_first_epoch(self: Any) -> Any:
        nonlocal calls
        calls += 1
        row = real_end(self)
        if calls == 1:
            raise KeyboardInterrupt
        return row

    monkeypatch.setattr(loop.Trainer, "end_epoch", stop_after_first_epoch)
    code, _, _ = run([*argv, *DIGITS8], capsys)
    assert code == 130
    monkeypatch.setattr(loop.Trainer, "end_epoch", real_end)
    code, _, err = run(["train", "--out", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert f"resuming {out} at iteration 3 of 4" in err
    files = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"}
    code, _, err = run(["train", "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    assert "the run is finished (iteration 4 of 4)" in err
    assert "100%" not in err  # no bars
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"} == files
