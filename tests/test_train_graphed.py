"""The training step as one CUDA graph (:mod:`resnetlib.train.graphed`): where it falls
back and why, the step's logic run uncaptured on the CPU against eager training, resume,
and (cuda-marked) replayed steps against eager steps."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import resnetlib as rl
from resnetlib.train import DIGITS, DataSplits, Recipe, fit, graphed, load_data, read_metrics

from .devices import CUDA

# 15 iterations an epoch; a stepped schedule and the warm-up inside 20 iterations
RECIPE = dataclasses.replace(
    DIGITS,
    batch_size=100,
    lr=0.05,
    epochs=None,
    iterations=20,
    milestones=(12,),
    warmup_lr=0.02,
    warmup_error=0.5,
    warmup_max_iterations=9,
    augment=rl.train.Augment(pad=1, flip=True),
)


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data("digits", image_size=8)


def tiny_model(seed: int = 0) -> rl.ResNet:
    torch.manual_seed(seed)
    return rl.cifar_resnet(8, widths=(4, 8, 16), num_classes=10)


def record_graphed(monkeypatch: pytest.MonkeyPatch) -> list[graphed.GraphedTraining]:
    """The graphed-training objects the runs from now on make, in order."""
    made: list[graphed.GraphedTraining] = []
    choose = graphed.choose

    def recording(trainer: Any, *, own_optimizer: bool) -> Any:
        result = choose(trainer, own_optimizer=own_optimizer)
        if result[0] is not None:
            made.append(result[0])
        return result

    monkeypatch.setattr(graphed, "choose", recording)
    return made


@pytest.fixture
def uncaptured(monkeypatch: pytest.MonkeyPatch) -> list[graphed.GraphedTraining]:
    """Run the graphed path on the CPU (the same step, not captured); collect its objects."""
    monkeypatch.setattr(graphed, "_REPLAY_DEVICES", frozenset({"cpu", "cuda"}))
    return record_graphed(monkeypatch)


def train(digits: DataSplits, recipe: Recipe, device: Any = "cpu", **options: Any) -> Any:
    lines: list[str] = []
    options.setdefault("log_every", 1)
    result = fit(tiny_model(), digits, recipe, device=device, progress=False, log=lines.append,
                 **options)  # fmt: skip
    return result, lines


def assert_close_runs(a: Any, b: Any, rtol: float, atol: float) -> None:
    left, right = a.model.state_dict(), b.model.state_dict()
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=rtol, atol=atol)


# -- where it does not apply -----------------------------------------------------------------


def test_cpu_falls_back_with_one_line_and_trains_as_eager(digits: DataSplits) -> None:
    eager, quiet = train(digits, RECIPE)
    asked, lines = train(digits, dataclasses.replace(RECIPE, cuda_graphs=True))
    notes = [line for line in lines if line.startswith("cuda graphs")]
    assert notes == ["cuda graphs: off on cpu (they need a CUDA device); training eagerly"]
    assert not any(line.startswith("cuda graphs") for line in quiet)
    for key, value in eager.model.state_dict().items():
        assert torch.equal(value, asked.model.state_dict()[key]), key
    _, off = train(digits, dataclasses.replace(RECIPE, cuda_graphs=False))
    assert not any(line.startswith("cuda graphs") for line in off)
    assert graphed.GRAPHS_BY_DEFAULT is False  # eager by default until measured on a GPU


def fake_trainer(**changes: Any) -> Any:
    model = torch.nn.Linear(2, 2)
    values: dict[str, Any] = {
        "device": torch.device("cuda"),
        "process": SimpleNamespace(world_size=1),
        "ema": None,
        "amp_dtype": None,
        "recipe": Recipe(cuda_graphs=True),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
    }
    values.update(changes)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    ("changes", "own", "reason"),
    [
        ({"device": torch.device("cpu")}, True, "on cpu (they need a CUDA device)"),
        ({"process": SimpleNamespace(world_size=2)}, True, "under torchrun"),
        ({"ema": object()}, True, "with an EMA of the weights"),
        ({"amp_dtype": torch.float16}, True, "with fp16 autocast"),
        ({"recipe": Recipe(compile=True, cuda_graphs=True)}, True, "with --compile"),
        ({}, False, "with your own optimizer"),
        (
            {"optimizer": torch.optim.Adam(torch.nn.Linear(1, 1).parameters())},
            True,
            "with your own optimizer",
        ),
    ],
)
def test_each_obstacle_has_its_reason(changes: dict[str, Any], own: bool, reason: str) -> None:
    trainer = fake_trainer(**changes)
    found = graphed.obstacle(trainer, own_optimizer=own)
    assert found.startswith(reason)
    step, note = graphed.choose(trainer, own_optimizer=own)
    assert step is None
    assert note == f"cuda graphs: off {found}; training eagerly"
    assert "\n" not in note
    assert graphed.obstacle(fake_trainer(amp_dtype=torch.bfloat16), own_optimizer=True) == ""


def test_user_optimizer_falls_back(digits: DataSplits, uncaptured: list[Any]) -> None:
    model = tiny_model()
    lines: list[str] = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, digits, dataclasses.replace(RECIPE, cuda_graphs=True), device="cpu",
        iterations=2, progress=False, optimizer=optimizer, log=lines.append)  # fmt: skip
    assert any("off with your own optimizer" in line for line in lines)
    assert uncaptured == []
    assert not isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)


# -- the graphed step's logic, uncaptured on the CPU ------------------------------------------


def test_uncaptured_step_equals_eager(digits: DataSplits, uncaptured: list[Any]) -> None:
    eager, _ = train(digits, RECIPE)
    replayed, lines = train(digits, dataclasses.replace(RECIPE, cuda_graphs=True))
    assert len(uncaptured) == 1
    assert not any(line.startswith("cuda graphs") for line in lines)
    step = uncaptured[0]
    assert all(isinstance(group["lr"], torch.Tensor) for group in step.optimizer.param_groups)
    assert step.optimizer.param_groups[0]["fused"] is True
    # fused SGD against the single-tensor loop: the same arithmetic up to rounding
    assert_close_runs(eager, replayed, rtol=1e-4, atol=1e-5)
    # the schedule and the warm-up switch (log_every=1: checked every step, as eager)
    assert [row["lr"] for row in replayed.history] == [row["lr"] for row in eager.history]
    for a, b in zip(eager.history, replayed.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["train_error"] == pytest.approx(a["train_error"], abs=1e-9)


def test_warm_up_switches_as_eager_training_does(
    digits: DataSplits, uncaptured: list[Any], tmp_path: Path
) -> None:
    recipe = dataclasses.replace(RECIPE, warmup_error=0.95, warmup_max_iterations=100)
    train(digits, recipe, out=tmp_path / "eager", log_every=5)
    train(digits, dataclasses.replace(recipe, cuda_graphs=True), out=tmp_path / "g", log_every=5)
    eager = read_metrics(tmp_path / "eager" / "steps.csv")
    graph = read_metrics(tmp_path / "g" / "steps.csv")
    # the graphed step's warm-up reads each batch's error as eager training does: both
    # switch after iteration 1, so the lr of each logged interval is the same
    assert [row["lr"] for row in graph] == [row["lr"] for row in eager]
    assert graph[0]["iteration"] == 1
    assert graph[1]["lr"] == RECIPE.lr


def test_the_cap_ends_the_warm_up_without_a_boundary(
    digits: DataSplits, uncaptured: list[Any], tmp_path: Path
) -> None:
    recipe = dataclasses.replace(RECIPE, warmup_error=0.0, warmup_max_iterations=7)
    fit(tiny_model(), digits, dataclasses.replace(recipe, cuda_graphs=True), device="cpu",
        out=tmp_path, progress=False, log_every=1000)  # fmt: skip
    # the last iterations ran by the schedule (a warm run would still be at warmup_lr)
    assert uncaptured[0].lr == pytest.approx(RECIPE.lr * RECIPE.gamma)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["warmed_up"] is True


def test_uncaptured_resume_is_bit_identical(
    digits: DataSplits, uncaptured: list[Any], tmp_path: Path
) -> None:
    recipe = dataclasses.replace(RECIPE, cuda_graphs=True)
    whole, _ = train(digits, recipe, out=tmp_path / "whole")

    def stop(row: dict[str, float], _: rl.ResNet) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(digits, recipe, out=tmp_path / "split", on_epoch_end=stop)
    saved = torch.load(tmp_path / "split" / "state.pt", weights_only=True)
    group = saved["optimizer"]["param_groups"][0]
    assert isinstance(group["lr"], float)  # saved as eager training saves it
    assert group["fused"] is not True
    resumed, _ = train(digits, recipe, out=tmp_path / "split", resume=True)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    # and an eager run resumes a graphed one's state
    with pytest.raises(KeyboardInterrupt):
        train(digits, recipe, out=tmp_path / "mixed", on_epoch_end=stop)
    mixed, _ = train(digits, dataclasses.replace(recipe, cuda_graphs=None), out=tmp_path / "mixed",
                     resume=True)  # fmt: skip
    assert_close_runs(whole, mixed, rtol=1e-4, atol=1e-5)


# -- on a GPU: captured and replayed ------------------------------------------------------------


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("autocast", [None, "bf16"])
def test_replayed_steps_equal_eager_steps(
    digits: DataSplits, monkeypatch: pytest.MonkeyPatch, autocast: str | None, tmp_path: Path
) -> None:
    made = record_graphed(monkeypatch)
    recipe = dataclasses.replace(RECIPE, autocast=autocast)
    eager, _ = train(digits, recipe, device="cuda", out=tmp_path)  # its state.pt: optimizer
    replayed, lines = train(digits, dataclasses.replace(recipe, cuda_graphs=True), device="cuda")
    assert not any(line.startswith("cuda graphs") for line in lines), lines
    assert len(made) == 1
    step = made[0]
    assert step.graph is not None
    assert step.replays == RECIPE.iterations - graphed.WARMUP_STEPS  # type: ignore[operator]
    tolerance = {"rtol": 1e-3, "atol": 1e-4} if autocast is None else {"rtol": 5e-2, "atol": 5e-3}
    assert_close_runs(eager, replayed, **tolerance)  # parameters and buffers
    # the optimizer's momentum buffers
    eager_state = [s["momentum_buffer"] for s in eager_optimizer_states(eager)]
    graph_state = [step.optimizer.state[p]["momentum_buffer"] for p in step.model.parameters()]
    for a, b in zip(eager_state, graph_state, strict=True):
        torch.testing.assert_close(a, b, **tolerance)
    assert [row["lr"] for row in replayed.history] == [row["lr"] for row in eager.history]
    for a, b in zip(eager.history, replayed.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=tolerance["rtol"] * 10)


def eager_optimizer_states(result: Any) -> list[dict[str, torch.Tensor]]:
    state = torch.load(result.run_dir / "state.pt", weights_only=True)["optimizer"]["state"]
    return [state[i] for i in sorted(state)]


@pytest.mark.cuda
@CUDA
def test_replayed_run_resumes(digits: DataSplits, tmp_path: Path) -> None:
    recipe = dataclasses.replace(RECIPE, cuda_graphs=True)
    whole, _ = train(digits, recipe, device="cuda", out=tmp_path / "whole")

    def stop(row: dict[str, float], _: rl.ResNet) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(digits, recipe, device="cuda", out=tmp_path / "split", on_epoch_end=stop)
    resumed, _ = train(digits, recipe, device="cuda", out=tmp_path / "split", resume=True)
    assert_close_runs(whole, resumed, rtol=1e-3, atol=1e-4)
    assert len(resumed.history) == len(whole.history)


def test_command_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnetlib.cli import main

    out = tmp_path / "run"
    argv = ["train", "resnet20", "--iterations", "2", "--image-size", "8", "--batch-size",
            "500", "--no-progress", "--cuda-graphs", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "cuda graphs: off on cpu (they need a CUDA device); training eagerly" in err
    assert Recipe.from_json((out / "recipe.json").read_text()).cuda_graphs is True
    # resumed from the directory alone (the plan leaves the speed option out); the run is
    # finished, so it says so and writes nothing
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "the run is finished (iteration 2 of 2)" in capsys.readouterr().err
    assert main([*argv[:-3], "--no-cuda-graphs", "--out", str(tmp_path / "off")]) == 0
    assert "cuda graphs" not in capsys.readouterr().err
