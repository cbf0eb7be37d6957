"""fit/evaluate on the built-in digits at 8x8 with a tiny CIFAR ResNet: learning, the run
record, resume bit-identity, the NaN stop and the modern options."""

from __future__ import annotations

import csv
import dataclasses
import math
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

TINY = dataclasses.replace(DIGITS, batch_size=100, epochs=3)  # 15 iterations an epoch


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data("digits", image_size=8)


def tiny_model(seed: int = 0, **overrides: Any) -> rl.ResNet:
    torch.manual_seed(seed)
    return rl.cifar_resnet(8, widths=(4, 8, 16), num_classes=10, **overrides)


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
    assert Recipe.from_json((tmp_path / "recipe.json").read_text()) == TINY
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
    assert rl.read_checkpoint(tmp_path / "final.pt").metadata["epoch"] == 3
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
    kept = rl.read_checkpoint(tmp_path / "last.pt")
    assert kept.metadata["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in kept.state_dict.values())
    assert not (tmp_path / "final.pt").exists()
    # Without a log point in the epoch the epoch's reduced loss catches it.
    model = tiny_model()
    _poison_after(model, calls=3)
    with pytest.raises(TrainingError, match="no checkpoint was written"):
        fit(model, digits, TINY, out=tmp_path / "early", progress=False, log_every=1000)


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


def test_evaluate_needs_the_training_mean_for_a_bare_data_set(digits: DataSplits) -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="training set's mean"):
        evaluate(model, digits.test)
    with pytest.raises(ValueError, match="split must be"):
        evaluate(model, digits, split="val")  # digits holds no validation split
    mean = rl.train.pixel_mean(digits.train)
    assert evaluate(model, digits.test, mean=mean) == evaluate(model, digits)
