"""fit/evaluate on the built-in digits at 8x8 with a tiny CIFAR ResNet: learning, the run
record, resume bit-identity, the NaN stop and the modern options."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.train import (
    DIGITS,
    METRICS,
    DataSplits,
    Recipe,
    TrainingError,
    evaluate,
    fit,
    load_data,
    read_metrics,
)

from .helpers import tiny_cifar

TINY = dataclasses.replace(DIGITS, batch_size=100, epochs=3)  # 15 iterations an epoch


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data("digits", image_size=8)


def tiny_model(seed: int = 0, **overrides: Any) -> rl.ResNet:
    return tiny_cifar(seed, **overrides)


def test_fit_lowers_the_loss_and_records_the_run(digits: DataSplits, tmp_path: Path) -> None:
    model = tiny_model()
    result = fit(model, digits, TINY, out=tmp_path, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert result.run_dir == tmp_path
    assert {p.name for p in tmp_path.iterdir()} >= {
        "spec.json",
        "recipe.json",
        "metrics.csv",
        "last.pt",
        "state.pt",
        "final.pt",
        "curves.png",
    }
    assert rl.ResNetSpec.from_json((tmp_path / "spec.json").read_text()) == model.spec
    # The recipe as followed: counted in iterations, 3 epochs of 15, channels_last on the CPU.
    followed = dataclasses.replace(TINY.resolved(15), channels_last=True)
    assert Recipe.from_json((tmp_path / "recipe.json").read_text()) == followed
    convolutions = [p for p in model.parameters() if p.ndim == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    with open(tmp_path / "metrics.csv", newline="") as file:
        assert tuple(next(csv.reader(file))) == METRICS
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["iteration"] for row in rows] == [15, 30, 45]
    assert all(math.isnan(row["val_error"]) for row in rows)  # the recipe holds none out
    for row, recorded in zip(rows, result.history, strict=True):
        assert row["train_loss"] == pytest.approx(recorded["train_loss"], rel=1e-5)
        assert row["images_per_s"] > 0
    # final.pt is the trained model; evaluating it again gives the recorded test error.
    final = rl.load(tmp_path / "final.pt")
    assert all(p.is_contiguous() for p in final.parameters())  # saved in the standard layout
    assert rl.interop.read_checkpoint(tmp_path / "final.pt").metadata["epoch"] == 3
    scored = evaluate(final, digits)
    assert scored.count == len(digits.test)
    assert scored.error == pytest.approx(result.metrics["test_error"])
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (state["iteration"], state["epoch"]) == (45, 3)
    assert "torch" in state["rng"]


def test_an_existing_run_needs_resume(digits: DataSplits, tmp_path: Path) -> None:
    fit(tiny_model(), digits, TINY, out=tmp_path, progress=False, iterations=2)
    with pytest.raises(TrainingError, match="already holds a run"):
        fit(tiny_model(), digits, TINY, out=tmp_path, progress=False, iterations=2)
    with pytest.raises(TrainingError, match="another recipe or length"):
        fit(tiny_model(), digits, TINY, out=tmp_path, progress=False, resume=True)
    with pytest.raises(TrainingError, match="nothing to resume"):
        fit(tiny_model(), digits, TINY, out=tmp_path / "new", progress=False, resume=True)


def _interrupt_after(model: nn.Module, calls: int) -> None:
    """Make the model's ``calls + 1``-th training forward raise, as a Ctrl-C would."""
    count = 0

    def hook(module: nn.Module, inputs: Any) -> None:
        nonlocal count
        if module.training:
            count += 1
            if count > calls:
                raise KeyboardInterrupt

    model.register_forward_pre_hook(hook)


def test_resume_is_bit_identical(digits: DataSplits, tmp_path: Path) -> None:
    # Augmentation and a stepped schedule make the replay depend on the loader's and the
    # schedule's state too.
    recipe = dataclasses.replace(
        TINY, epochs=4, milestones=(2,), augment=rl.train.Augment(pad=1, flip=True)
    )
    whole = fit(tiny_model(), digits, recipe, out=tmp_path / "whole", device="cpu", progress=False)

    interrupted = tiny_model()
    _interrupt_after(interrupted, calls=37)  # mid-epoch 3: epochs 1-2 are checkpointed
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, digits, recipe, out=tmp_path / "split", device="cpu", progress=False)
    assert read_metrics(tmp_path / "split" / "metrics.csv")[-1]["epoch"] == 2
    resumed = fit(
        tiny_model(seed=1),
        digits,
        recipe,
        out=tmp_path / "split",
        resume=True,
        device="cpu",  # bit-identity is promised on the CPU (cuDNN may be nondeterministic)
        progress=False,
    )
    expected, got = whole.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    assert len(read_metrics(tmp_path / "split" / "metrics.csv")) == 4


def test_resume_refuses_other_data_or_preprocessing(digits: DataSplits, tmp_path: Path) -> None:
    """resume=True compares what run.json recorded of the data and of how the model is fed:
    another split, image size, class order or statistics was taken silently."""
    interrupted = tiny_model()
    _interrupt_after(interrupted, calls=20)  # epoch 2: epoch 1 is saved
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, digits, TINY, out=tmp_path, progress=False, statistics="data")
    before = (tmp_path / "state.pt").read_bytes()
    others = {
        "statistics": ({"statistics": "model"}, "pretrained_cfg mean: the run's"),
        "split": ({"data": digits.hold_out(100, seed=3)}, "data.val_size: the run's 0, now 100"),
        "size": ({"data": load_data("digits", image_size=12)}, "pretrained_cfg input_size"),
    }
    for arguments, message in others.values():
        given = {"data": digits, "statistics": "data", **arguments}
        with pytest.raises(rl.train.RunDirectoryError, match=message) as raised:
            fit(tiny_model(), recipe=TINY, out=tmp_path, resume=True, progress=False, **given)
        assert "the run was started with other data or preprocessing" in str(raised.value)
    assert (tmp_path / "state.pt").read_bytes() == before  # nothing applied or written
    same = {"out": tmp_path, "resume": True, "progress": False, "statistics": "data"}
    resumed = fit(tiny_model(), digits, TINY, **same)
    assert len(resumed.history) == 3


def _poison_after(model: nn.Module, calls: int) -> None:
    count = 0

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        nonlocal count
        if module.training:
            count += 1
            if count > calls:
                return output * math.nan
        return None

    model.register_forward_hook(hook)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    digits: DataSplits, tmp_path: Path
) -> None:
    model = tiny_model()
    _poison_after(model, calls=20)  # in epoch 2
    with pytest.raises(TrainingError, match="NaN or infinite") as raised:
        fit(model, digits, TINY, out=tmp_path, progress=False, log_every=5)
    assert str(tmp_path / "last.pt") in str(raised.value)
    kept = rl.interop.read_checkpoint(tmp_path / "last.pt")
    assert kept.metadata["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in kept.state_dict.values())
    assert not (tmp_path / "final.pt").exists()
    # Without a log point in the epoch the epoch's reduced loss catches it.
    model = tiny_model()
    _poison_after(model, calls=3)
    with pytest.raises(TrainingError, match="no checkpoint was written") as raised:
        fit(model, digits, TINY, out=tmp_path / "early", progress=False, log_every=1000)
    assert "by iteration 15 (epoch 1)" in str(raised.value)  # the epoch that just ended
    # A periodic save between log points does not replace last.pt with non-finite weights.
    model = tiny_model()
    _poison_after(model, calls=20)
    with pytest.raises(TrainingError, match=r"by iteration 22 \(epoch 2\)") as raised:
        fit(model, digits, TINY, out=tmp_path / "p", progress=False, log_every=1000, save_every=2)
    kept = rl.interop.read_checkpoint(tmp_path / "p" / "last.pt")
    assert kept.metadata["iteration"] == 20
    assert all(torch.isfinite(t).all() for t in kept.state_dict.values())


def _lr_of_first_epoch(recipe: Recipe, digits: DataSplits) -> float:
    return fit(tiny_model(), digits, recipe, iterations=4, progress=False).history[0]["lr"]


def test_warm_up_holds_its_lr_until_the_error_or_the_cap(digits: DataSplits) -> None:
    warm = dataclasses.replace(TINY, warmup_lr=0.01, warmup_error=0.0, warmup_max_iterations=100)
    assert _lr_of_first_epoch(warm, digits) == 0.01  # never below 0%: stays warm
    capped = dataclasses.replace(warm, warmup_max_iterations=2)
    assert _lr_of_first_epoch(capped, digits) == 0.1
    reached = dataclasses.replace(warm, warmup_error=0.99)
    assert _lr_of_first_epoch(reached, digits) == 0.1


@pytest.mark.parametrize(
    "options",
    [
        {"ema_decay": 0.9, "no_decay_norm_bias": True, "label_smoothing": 0.1},
        {"autocast": "bf16", "channels_last": True, "nesterov": True, "schedule": "cosine"},
    ],
    ids=["ema-nowd-smoothing", "bf16-channels_last-nesterov-cosine"],
)
def test_modern_options_train(digits: DataSplits, options: dict[str, Any], device: Any) -> None:
    recipe = dataclasses.replace(TINY, epochs=2, **options)
    model = tiny_model()
    result = fit(model, digits, recipe, device=device, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    if recipe.ema_decay is not None:  # the result is the averaged copy, not the raw model
        assert result.model is not model
        assert not torch.equal(result.model.fc.weight, model.fc.weight)
    else:
        assert result.model is model


def test_no_decay_norm_bias_groups(digits: DataSplits, tmp_path: Path) -> None:
    model = tiny_model()
    recipe = dataclasses.replace(TINY, no_decay_norm_bias=True)
    fit(model, digits, recipe, out=tmp_path, iterations=1, progress=False)
    groups = torch.load(tmp_path / "state.pt", weights_only=True)["optimizer"]["param_groups"]
    exempt = sum(len(g["params"]) for g in groups if g["weight_decay"] == 0.0)
    decayed = sum(len(g["params"]) for g in groups if g["weight_decay"] == recipe.weight_decay)
    one_d = sum(p.ndim == 1 for p in model.parameters())
    assert (exempt, decayed) == (one_d, len(list(model.parameters())) - one_d)
    assert one_d > 0


def test_evaluate_normalizes_as_the_model_says(digits: DataSplits) -> None:
    """evaluate() feeds (x / 255 - mean) / std with the model's own pretrained_cfg."""
    model = tiny_model().eval()
    model.pretrained_cfg.update(input_size=(3, 8, 8), mean=(0.2, 0.4, 0.6), std=(0.5, 0.3, 0.2))
    result = evaluate(model, digits.test)
    mean = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1)
    std = torch.tensor([0.5, 0.3, 0.2]).view(3, 1, 1)
    with torch.no_grad():
        logits = model((digits.test.images.float() / 255 - mean) / std)
    wrong = (logits.argmax(1) != digits.test.labels).float().mean().item()
    assert result.error == pytest.approx(wrong)
    top5 = logits.topk(5, 1).indices
    wrong5 = (top5 != digits.test.labels[:, None]).all(1).float().mean().item()
    assert result.top5_error == pytest.approx(wrong5)
    assert result.top5_error <= result.error
    assert result.accuracy == pytest.approx(1 - result.error)
    # Other statistics, other numbers: the config is really what is used.
    model.pretrained_cfg.update(mean=(0.9, 0.9, 0.9))
    assert evaluate(model, digits.test).loss != pytest.approx(result.loss)
    with pytest.raises(ValueError, match=r"digits holds out no validation split: .*--val-size N"):
        evaluate(model, digits, split="val")  # digits holds no validation split
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'val'; got 'dev'"):
        evaluate(model, digits, split="dev")


def test_evaluate_and_fit_refuse_weights_or_outputs_that_are_not_finite(
    digits: DataSplits, tmp_path: Path
) -> None:
    """Outputs that are not finite are refused, not ranked (a NaN logit's topk scores 10%);
    fit refuses such starting weights before the run directory is made, not blaming the lr."""
    model = tiny_model().eval()
    model.pretrained_cfg.update(input_size=(3, 8, 8))
    with torch.no_grad():
        model.fc.bias[3] = math.inf
    with pytest.raises(
        ValueError, match=r"outputs are not finite .*weights hold NaN or inf \(fc.bias\)"
    ):
        evaluate(model, digits.test)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(math.nan)
    with pytest.raises(ValueError, match=r"outputs are not finite .*checkpoint is damaged"):
        evaluate(model, digits.test)
    with pytest.raises(ValueError, match=r"starting weights hold NaN or inf \(conv1.weight, "):
        fit(model, digits, TINY, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    # finite float32 weights with a negative running variance: not "overflow, run in fp32"
    model = tiny_model().eval()
    model.pretrained_cfg.update(input_size=(3, 8, 8))
    model.bn1.running_var.fill_(-1.0)
    with pytest.raises(ValueError, match=r"weights are finite, yet a layer computes NaN") as info:
        evaluate(model, digits.test)
    assert "fp32" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_classes": 5}, "the model has 5 classes and digits has 10"),
        ({"in_channels": 1}, "the model takes 1-channel images and digits has 3 channels"),
        ({}, r"the model expects 32x32 images .* digits has 8x8; .*--image-size 32"),
    ],
    ids=["classes", "channels", "size"],
)
def test_data_that_does_not_fit_the_model_is_one_line(
    digits: DataSplits, overrides: dict[str, Any], message: str
) -> None:
    """Named before any forward pass, both sides in the message."""
    model = tiny_model(**overrides)
    with pytest.raises(ValueError, match=message) as raised:
        evaluate(model, digits)
    assert "\n" not in str(raised.value)


def test_a_run_describes_itself_from_its_first_second(tmp_path: Path) -> None:
    """run.json, spec.json and recipe.json exist before the first iteration ends, and record
    what was used: the split held out by load_data, not the recipe's default."""
    data = load_data("digits", image_size=8, val_size=250)
    model = tiny_model()
    seen: list[set[str]] = []

    def look(module: nn.Module, inputs: Any) -> None:
        if module.training and not seen:
            seen.append({p.name for p in tmp_path.iterdir()})

    model.register_forward_pre_hook(look)
    recipe = dataclasses.replace(rl.train.PAPER_CIFAR, batch_size=100, iterations=3, augment=None)
    assert recipe.val_size == 5000
    lines: list[str] = []
    fit(model, data, recipe, out=tmp_path, progress=False, log=lines.append, run_info={"x": 1})
    assert {"run.json", "spec.json", "recipe.json"} <= seen[0]
    assert "state.pt" not in seen[0]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["x"] == 1
    assert info["split"] == {"train": 1250, "val": 250, "test": 297}
    assert info["data"]["val_size"] == 250
    assert info["data"]["data"] == "digits"
    assert info["pretrained_cfg"]["input_size"] == [3, 8, 8]
    assert Recipe.from_json((tmp_path / "recipe.json").read_text()).val_size == 250
    # The start-up line says what runs where.
    assert "ResNet-8" in lines[0]
    assert "1,250 train / 250 val / 297 test" in lines[0]
    assert "12 iterations an epoch" in lines[0]
    # The checkpoints carry the normalization the run used.
    assert rl.load(tmp_path / "final.pt").pretrained_cfg["input_size"] == (3, 8, 8)


def test_best_checkpoint_steps_and_curves(tmp_path: Path) -> None:
    data = load_data("digits", image_size=8, val_size=200)
    result = fit(tiny_model(), data, TINY, out=tmp_path, progress=False, log_every=4)
    best = min(row["val_error"] for row in result.history)
    assert rl.interop.read_checkpoint(tmp_path / "best.pt").metadata["val_error"] == pytest.approx(
        best
    )
    steps = read_metrics(tmp_path / "steps.csv")
    assert [row["iteration"] for row in steps][:3] == [1, 4, 8]
    assert all(row["lr"] == 0.1 for row in steps)
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    rows = read_metrics(tmp_path / "metrics.csv")
    assert all(not math.isnan(row["val_loss"]) and not math.isnan(row["test_loss"]) for row in rows)


def _sigint_after(model: nn.Module, calls: int) -> None:
    """Send this process a real SIGINT (Ctrl-C) during the ``calls``-th training forward."""
    count = 0

    def hook(module: nn.Module, inputs: Any) -> None:
        nonlocal count
        if module.training:
            count += 1
            if count == calls:
                os.kill(os.getpid(), signal.SIGINT)

    model.register_forward_pre_hook(hook)


def test_ctrl_c_saves_mid_epoch_and_resume_is_bit_identical(
    digits: DataSplits, tmp_path: Path
) -> None:
    recipe = dataclasses.replace(TINY, epochs=2, augment=rl.train.Augment(pad=1, flip=True))
    whole = fit(tiny_model(), digits, recipe, out=tmp_path / "whole", device="cpu", progress=False)
    model = tiny_model()
    _sigint_after(model, calls=20)  # iteration 20: mid-epoch 2
    with pytest.raises(rl.train.TrainingInterrupted) as raised:
        fit(model, digits, recipe, out=tmp_path / "split", device="cpu", progress=False)
    assert raised.value.iteration == 20
    assert raised.value.run_dir == tmp_path / "split"
    assert torch.load(tmp_path / "split" / "state.pt", weights_only=True)["iteration"] == 20
    assert rl.interop.read_checkpoint(tmp_path / "split" / "last.pt").metadata["iteration"] == 20
    resumed = fit(
        tiny_model(seed=1),
        digits,
        recipe,
        out=tmp_path / "split",
        resume=True,
        device="cpu",
        progress=False,
    )
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    whole_steps = read_metrics(tmp_path / "whole" / "steps.csv")
    assert read_metrics(tmp_path / "split" / "steps.csv") == whole_steps


def test_periodic_saves_lose_iterations_not_epochs(digits: DataSplits, tmp_path: Path) -> None:
    model = tiny_model()
    _interrupt_after(model, calls=10)  # a crash in iteration 11, before the epoch ends
    with pytest.raises(KeyboardInterrupt):
        fit(model, digits, TINY, out=tmp_path, progress=False, save_every=4)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["iteration"] == 8


def test_a_run_directory_has_one_owner(digits: DataSplits, tmp_path: Path) -> None:
    """A second process training into a directory another one holds is refused, and the
    first one's files stay untouched."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, resnetlib.train.run_dir as r; d = r.RunDirectory(sys.argv[1]); "
            "d.acquire(); d.write_info({'owner': 'first'}); print('ready', flush=True); "
            "sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(rl.train.RunDirectoryError, match=rf"in use by pid {holder.pid}"):
            fit(tiny_model(), digits, TINY, out=tmp_path, progress=False, iterations=1)
        assert json.loads((tmp_path / "run.json").read_text()) == {"owner": "first"}
        assert not (tmp_path / "spec.json").exists()
    finally:
        holder.communicate("")
    # Its lock died with it: the directory can be taken again (and holds a run now).
    with pytest.raises(TrainingError, match="already holds a run"):
        fit(tiny_model(), digits, TINY, out=tmp_path, progress=False, iterations=1)


def test_a_new_run_refuses_a_directory_holding_a_runs_files(
    digits: DataSplits, tmp_path: Path
) -> None:
    """Only run.json marked a run: a new run overwrote the final.pt, metrics.csv, ... of a
    run whose run.json was gone, or a user's own files of those names."""
    for name in ("final.pt", "metrics.csv", "best.pt", "spec.json"):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text("mine")
        message = rf"{name}: a new run would overwrite it .*choose another --out, or delete it"
        with pytest.raises(rl.train.RunDirectoryError, match=message):
            fit(tiny_model(), digits, TINY, out=out, progress=False, iterations=1)
        assert (out / name).read_text() == "mine"
        assert not (out / "run.json").exists()


def test_own_optimizer_param_groups_and_epoch_callback(digits: DataSplits) -> None:
    model = tiny_model()
    groups = rl.interop.param_groups(model, lr=TINY.lr, decay=0.5)
    rows: list[tuple[float, int]] = []
    result = fit(
        model,
        digits,
        TINY,
        param_groups=groups,
        progress=False,
        iterations=15,
        on_epoch_end=lambda row, m: rows.append((row["epoch"], id(m))),
    )
    assert rows == [(1.0, id(result.model))]
    lrs = {group["name"]: group["lr"] for group in groups}
    assert lrs["head"] == pytest.approx(0.1)
    assert lrs["layer3"] == pytest.approx(0.05)
    adam_model = tiny_model()
    adam = torch.optim.Adam(adam_model.parameters(), lr=1.0)
    before = adam_model.fc.weight.detach().clone()
    fit(adam_model, digits, TINY, optimizer=adam, progress=False, iterations=2)
    assert adam.param_groups[0]["lr"] == TINY.lr  # the schedule drives the user's optimizer
    assert adam.state  # ... and Adam, not the recipe's SGD, took the steps
    assert not torch.equal(before, adam_model.fc.weight)
    with pytest.raises(ValueError, match="optimizer or param_groups, not both"):
        fit(tiny_model(), digits, TINY, optimizer=adam, param_groups=groups, progress=False)
    # the recipe's own groups without weight decay cannot apply to the user's groups
    no_decay = dataclasses.replace(TINY, no_decay_norm_bias=True)
    with pytest.raises(ValueError, match="no_decay_norm_bias makes fit's own parameter groups"):
        fit(tiny_model(), digits, no_decay, param_groups=groups, progress=False)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"seed": -1}, ValueError, r"seed must be an int >= 0; got -1"),
        ({"seed": 2**63}, ValueError, r"seed must be an int <= 9,223,372,036,854,775,807"),
        ({"seed": 1.5}, ValueError, r"seed must be an int >= 0; got 1.5"),
        ({"log_every": 0}, ValueError, r"log_every must be an int >= 1"),
        ({"on_epoch_end": 5}, TypeError, r"on_epoch_end must be callable or None; got 5"),
        ({"run_info": [1]}, TypeError, r"run_info must be a mapping or None; got list"),
    ],
)
def test_fit_refuses_arguments_before_anything_runs(
    digits: DataSplits, tmp_path: Path, arguments: dict[str, Any], error: type, message: str
) -> None:
    """Each was taken and failed later: a seed run.json's reader refuses on resume, a
    division by zero after the first step, a callback after an epoch, a half-written run."""
    with pytest.raises(error, match=message):
        fit(tiny_model(), digits, TINY, out=tmp_path / "r", progress=False, **arguments)
    assert not (tmp_path / "r").exists()
    with pytest.raises(TypeError, match="fit\\(\\) takes data as a DataSplits; got ImageDataset"):
        fit(tiny_model(), digits.train, TINY, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fit\\(\\) takes recipe as a Recipe; got dict"):
        fit(tiny_model(), digits, {"lr": 0.1}, progress=False)  # type: ignore[arg-type]


def test_a_batch_larger_than_the_split_is_refused_in_both_vocabularies(
    digits: DataSplits, tmp_path: Path
) -> None:
    """fit() is called from Python and from the command line: the refusal names both."""
    large = dataclasses.replace(TINY, batch_size=2_000)
    with pytest.raises(ValueError, match="smaller than one batch of 2000") as raised:
        fit(tiny_model(), digits, large, out=tmp_path / "r", progress=False)
    assert "recipe.batch_size and the data's val_size; --batch-size, --val-size" in str(
        raised.value
    )
    assert not (tmp_path / "r").exists()


def test_plots_draw_one_epoch_as_points_and_the_lr_as_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-epoch run's Figure 6 was an empty frame (a line needs two points); the lr
    panel joined log points with ramps where the schedule steps."""
    from matplotlib.axes import Axes

    from resnetlib.train import plot_run, plot_runs

    drawn: list[dict[str, Any]] = []
    original = Axes.plot

    def spy(self: Axes, *args: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    row = {"iteration": 10.0, "train_error": 0.5, "test_error": 0.6}
    plot_runs({"ResNet-20": [row]}, tmp_path / "one.png")
    assert [kwargs["marker"] for kwargs in drawn] == ["o", "o"]
    drawn.clear()
    plot_runs({"ResNet-20": [row, {**row, "iteration": 20.0}]}, tmp_path / "two.png")
    assert [kwargs["marker"] for kwargs in drawn] == [None, None]
    drawn.clear()
    steps = [{"iteration": float(i), "lr": 0.1 if i < 5 else 0.01, "train_loss": 1.0,
              "train_error": 0.5} for i in range(1, 9)]  # fmt: skip
    plot_run("ResNet-20", [], steps, tmp_path / "curves.png")
    assert drawn[2]["drawstyle"] == "steps-post"  # errors, losses, then the lr


def test_the_classes_advice_is_whole_where_the_flag_can_take_it() -> None:
    """The advice cut ten names to six and "... (4 more)", which --classes cannot take."""
    from resnetlib.train.loop import check_classes_fit

    model = rl.resnet20(widths=(4, 8, 16))
    names = [f"class{i}" for i in range(10)]
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": names}
    with pytest.raises(ValueError, match=r"--classes ([a-z0-9]+,){9}class9\)"):
        check_classes_fit(model, names[::-1], 3, "the data")
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": ["a, b", *names[1:]]}
    with pytest.raises(ValueError, match=r"\(--classes with its 10 label_names\)"):
        check_classes_fit(model, names, 3, "the data")


def test_resume_refuses_another_network_or_feeding_of_the_same_shapes(
    digits: DataSplits, tmp_path: Path
) -> None:
    """fit(resume=True) with a GELU, drop-path twin (the same weight shapes) trained it on as
    if it were the run's network; an edited run.json fed the data otherwise, unseen."""
    model = tiny_model()
    _sigint_after(model, calls=5)
    with pytest.raises(rl.train.TrainingInterrupted):
        fit(model, digits, TINY, out=tmp_path, device="cpu", progress=False)
    twin = tiny_model(act="gelu", drop_path_rate=0.2)
    refused = rl.train.RunDirectoryError
    with pytest.raises(refused, match=r"another network \(act: the run's 'relu', now"):
        fit(twin, digits, TINY, out=tmp_path, device="cpu", resume=True, progress=False)
    info = json.loads((tmp_path / "run.json").read_text())
    info["pretrained_cfg"]["mean"] = [0.5, 0.5, 0.5]  # run.json edited: what fit sets from it
    (tmp_path / "run.json").write_text(json.dumps(info))
    fed = tiny_model()
    fed.pretrained_cfg.update(mean=(0.5, 0.5, 0.5))
    with pytest.raises(refused, match=r"state.pt: .*other data or preprocessing"):
        fit(fed, digits, TINY, out=tmp_path, device="cpu", resume=True, progress=False)
