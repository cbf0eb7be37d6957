"""Recipes: validation, JSON round trip, the paper's schedule and warm-up rule."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from resnetlib.train import (
    DIGITS,
    PAPER_CIFAR,
    Augment,
    Recipe,
    paper_recipe,
    recipe_for,
)

# He et al. (2015), section 4.2.
PAPER = {
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "batch_size": 128,
    "iterations": 64_000,
    "milestones": (32_000, 48_000),
    "gamma": 0.1,
    "val_size": 5_000,
}


def test_paper_recipe_is_the_papers() -> None:
    for name, value in PAPER.items():
        assert getattr(PAPER_CIFAR, name) == value, name
    assert PAPER_CIFAR.optimizer == "sgd"
    assert not PAPER_CIFAR.nesterov
    assert PAPER_CIFAR.augment == Augment(pad=4, flip=True)
    assert PAPER_CIFAR.warmup_lr is None
    # Every modern option is off.
    assert PAPER_CIFAR.autocast is None
    assert PAPER_CIFAR.channels_last is None  # a memory format: on for a CPU run only
    assert not PAPER_CIFAR.compile
    assert PAPER_CIFAR.label_smoothing == 0.0
    assert not PAPER_CIFAR.no_decay_norm_bias
    assert PAPER_CIFAR.ema_decay is None


@pytest.mark.parametrize(
    ("iteration", "lr"),
    [(0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01), (48_000, 0.001), (63_999, 0.001)],
)
def test_paper_schedule_at_its_boundaries(iteration: int, lr: float) -> None:
    assert PAPER_CIFAR.lr_at(iteration) == pytest.approx(lr, rel=1e-12)


def test_warm_up_for_resnet110_and_deeper() -> None:
    for depth in (20, 56, 109):
        assert paper_recipe(depth) is PAPER_CIFAR
    for name in ("resnet20", "resnet56", "plain56"):
        assert recipe_for(name) is PAPER_CIFAR
    for deep in (paper_recipe(110), paper_recipe(1202), recipe_for("resnet110")):
        assert deep.warmup_lr == 0.01
        assert deep.warmup_error == 0.8
        assert deep.lr_at(0, warmed_up=False) == 0.01
        assert deep.lr_at(0, warmed_up=True) == 0.1
        assert deep.lr_at(32_000, warmed_up=True) == pytest.approx(0.01)
        # The switch: a batch below 80% training error ends it, or the iteration cap.
        assert not deep.warmup_over(1, 0.85)
        assert not deep.warmup_over(1, 0.8)
        assert deep.warmup_over(1, 0.79)
        assert deep.warmup_over(deep.warmup_max_iterations, 0.95)
        assert not deep.warmup_over(deep.warmup_max_iterations - 1, 0.95)
    # Without a warm-up there is nothing to wait for.
    assert PAPER_CIFAR.warmup_over(0, 1.0)
    assert PAPER_CIFAR.lr_at(0, warmed_up=False) == 0.1


def test_cosine_schedule() -> None:
    cosine = dataclasses.replace(PAPER_CIFAR, schedule="cosine", iterations=1_000)
    assert cosine.lr_at(0) == pytest.approx(0.1)
    assert cosine.lr_at(500) == pytest.approx(0.05)
    assert cosine.lr_at(1_000) == pytest.approx(0.0, abs=1e-12)
    values = [cosine.lr_at(i) for i in range(0, 1_000, 50)]
    assert values == sorted(values, reverse=True)


def test_resolved_counts_in_iterations_and_scales_milestones() -> None:
    same = PAPER_CIFAR.resolved(351)
    assert same == PAPER_CIFAR
    half = PAPER_CIFAR.resolved(351, iterations=32_000)
    assert (half.iterations, half.milestones) == (32_000, (16_000, 24_000))
    by_epochs = PAPER_CIFAR.resolved(100, epochs=320)
    assert (by_epochs.iterations, by_epochs.milestones) == (32_000, (16_000, 24_000))
    # Epoch-counted recipes give their milestones in epochs.
    stepped = Recipe(iterations=None, epochs=10, milestones=(5, 8))
    plan = stepped.resolved(7)
    assert (plan.iterations, plan.epochs, plan.milestones) == (70, None, (35, 56))
    assert plan.lr_at(34) == pytest.approx(0.1)
    assert plan.lr_at(35) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="lr_at needs a recipe counted in iterations"):
        stepped.lr_at(0)
    with pytest.raises(ValueError, match="not both"):
        PAPER_CIFAR.resolved(10, iterations=5, epochs=5)


def _every_option() -> Recipe:
    return Recipe(
        lr=0.2,
        nesterov=True,
        batch_size=256,
        iterations=None,
        epochs=90,
        schedule="cosine",
        milestones=(30, 60),
        warmup_lr=0.02,
        warmup_max_iterations=100,
        augment=Augment(pad=2, flip=False),
        val_size=0,
        autocast="bf16",
        channels_last=True,
        compile=True,
        label_smoothing=0.1,
        no_decay_norm_bias=True,
        ema_decay=0.999,
    )


@pytest.mark.parametrize("recipe", [PAPER_CIFAR, paper_recipe(110), DIGITS, _every_option()])
def test_json_round_trip(recipe: Recipe) -> None:
    text = recipe.to_json()
    assert json.loads(text) == recipe.to_dict()
    assert Recipe.from_json(text) == recipe
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_dict({"augment": None}).augment is None


def test_digits_recipe() -> None:
    assert (DIGITS.epochs, DIGITS.iterations) == (30, None)
    assert (DIGITS.lr, DIGITS.batch_size, DIGITS.momentum) == (0.1, 128, 0.9)
    assert DIGITS.milestones == ()
    assert DIGITS.augment is None
    assert Recipe.from_dict({"epochs": 3}).iterations is None


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("optimizer", "adam", "one of ['sgd']"),
        ("lr", 0.0, "> 0"),
        ("lr", -1.0, "a number in"),
        ("lr", float("nan"), "a number in"),
        ("momentum", 1.0, "a number in [0.0, 1"),
        ("weight_decay", "1e-4", "a number in"),
        ("batch_size", 0, "an int >= 1"),
        ("batch_size", True, "an int >= 1"),
        ("iterations", 0, "an int >= 1"),
        ("schedule", "linear", "one of ['step', 'cosine']"),
        ("milestones", (48_000, 32_000), "strictly increasing"),
        ("milestones", "32000", "a tuple of increasing ints"),
        ("gamma", 1.5, "a number in"),
        ("warmup_error", 1.0, "a number in"),
        ("augment", {"pad": 4}, "an Augment or None"),
        ("val_size", -1, "an int >= 0"),
        ("autocast", "fp8", "one of [None, 'bf16', 'fp16']"),
        ("channels_last", 1, "a bool"),
        ("label_smoothing", 1.0, "a number in"),
        ("ema_decay", 1.0, "a number in"),
    ],
)
def test_invalid_fields_name_field_value_and_allowed(field: str, value: Any, allowed: str) -> None:
    with pytest.raises(ValueError, match=f"Recipe.{field}") as raised:
        dataclasses.replace(PAPER_CIFAR, **{field: value})
    message = str(raised.value)
    assert f"Recipe.{field}" in message
    assert repr(value) in message
    assert allowed in message


def test_length_needs_exactly_one_of_iterations_and_epochs() -> None:
    with pytest.raises(ValueError, match="exactly one of iterations and epochs"):
        Recipe(iterations=None, epochs=None)
    with pytest.raises(ValueError, match="exactly one of iterations and epochs"):
        Recipe(iterations=10, epochs=10)


def test_from_dict_rejects_unknown_keys_and_bad_json() -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        Recipe.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="not valid JSON"):
        Recipe.from_json("{lr: 0.1")
    with pytest.raises(ValueError, match="Augment"):
        Recipe.from_dict({"augment": {"pad": -1}})


def test_imports_stay_light() -> None:
    # tqdm is left out: torch itself imports it.
    import subprocess
    import sys

    code = (
        "import sys, resnetlib; assert 'resnetlib.train' not in sys.modules; "
        "import resnetlib.train, resnetlib.train.cli; "
        "assert 'resnetlib.train.loop' not in sys.modules; "  # `resnetlib list` stays light
        "[getattr(resnetlib.train, name) for name in resnetlib.train.__all__]; "
        "loaded = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted({'matplotlib', 'PIL', 'sklearn'} & loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
