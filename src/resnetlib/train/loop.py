"""The training loop: :func:`fit` trains a model by a :class:`Recipe`, :func:`evaluate` scores it.

One loop, per iteration: set the lr from the schedule, forward (autocast when asked), loss,
backward, optimizer step, EMA update. Per epoch: reduce the metrics across ranks, evaluate,
and (rank 0) append to ``metrics.csv`` and write the checkpoints and trainer state. Under
``torchrun`` (``WORLD_SIZE`` > 1) the model trains with DDP and each rank takes its share
of every batch.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..checkpoint import save
from ..files import atomic_write
from ..finetune import param_groups
from ..model import ResNet
from .data import DataSplits, ImageDataset
from .pipeline import DeviceLoader, pixel_mean
from .recipe import Recipe

__all__ = ["METRICS", "EvalResult", "FitResult", "TrainingError", "evaluate", "fit", "read_metrics"]

METRICS = (
    "epoch",
    "iteration",
    "lr",
    "train_loss",
    "train_error",
    "val_error",
    "test_error",
    "images_per_s",
    "elapsed_s",
)
"""The columns of ``metrics.csv``, one row per epoch (errors are fractions; empty: not run)."""

STATE_FORMAT = "resnetlib.trainer-state"
STATE_VERSION = 1
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a run directory that does not fit)."""


@dataclass(frozen=True)
class EvalResult:
    """Top-1 ``error`` (a fraction) and mean cross-entropy ``loss`` over ``count`` images."""

    error: float
    loss: float
    count: int


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` leaves: the last row of metrics, all of them, the run directory.

    ``model`` is the trained model (the EMA copy when the recipe keeps one); ``run_dir``
    is ``None`` when no ``out`` was given (and on ranks other than 0).
    """

    metrics: dict[str, float]
    history: tuple[dict[str, float], ...]
    run_dir: Path | None
    model: ResNet


@dataclass(frozen=True)
class _Process:
    rank: int
    world_size: int
    started_group: bool


def _process_group(device: torch.device) -> _Process:
    """Join the ``torchrun`` process group (or the caller's) if there is one."""
    if dist.is_available() and dist.is_initialized():
        return _Process(dist.get_rank(), dist.get_world_size(), False)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Process(0, 1, False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Process(dist.get_rank(), dist.get_world_size(), True)


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _loader(
    dataset: ImageDataset,
    mean: torch.Tensor,
    device: torch.device,
    *,
    batch_size: int,
    channels_last: bool,
) -> DeviceLoader:
    return DeviceLoader(
        dataset, batch_size=batch_size, device=device, mean=mean, channels_last=channels_last
    )


@torch.no_grad()
def _score(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | DeviceLoader,
    autocast: AbstractContextManager[Any],
) -> EvalResult:
    was_training = model.training
    model.eval()
    totals: torch.Tensor | int = 0  # loss sum and wrong count, on the model's device
    count = 0
    try:
        for x, y in batches:
            with autocast:
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            wrong = (logits.argmax(1) != y).sum()
            totals = totals + torch.stack([loss.double(), wrong.double()])
            count += y.numel()
    finally:
        model.train(was_training)
    loss_sum, wrong_sum = totals.tolist() if isinstance(totals, torch.Tensor) else (0.0, 0.0)
    if count == 0:
        raise ValueError("evaluate() got an empty data set")
    return EvalResult(error=wrong_sum / count, loss=loss_sum / count, count=int(count))


def evaluate(
    model: nn.Module,
    data: DataSplits | ImageDataset,
    device: torch.device | str | None = None,
    *,
    mean: torch.Tensor | None = None,
    split: str = "test",
    batch_size: int = 500,
) -> EvalResult:
    """Top-1 error and loss of ``model`` on ``data``, with no augmentation.

    ``data`` is a :class:`DataSplits` (scores ``split``: ``"test"``, ``"val"`` or
    ``"train"``, normalized by the training set's per-pixel mean) or an
    :class:`ImageDataset` with the ``mean`` it was trained with. The model moves to
    ``device`` (default: where its parameters are).
    """
    if isinstance(data, DataSplits):
        chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split, data.test)
        if split not in ("train", "val", "test") or chosen is None:
            raise ValueError(f"split must be 'train', 'test' or 'val' (if held out); got {split!r}")
        dataset, mean = chosen, pixel_mean(data.train) if mean is None else mean
    else:
        if mean is None:
            raise ValueError("evaluate() on an ImageDataset needs the training set's mean")
        dataset = data
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    loader = _loader(dataset, mean, device, batch_size=batch_size, channels_last=False)
    return _score(model, loader, nullcontext())


# -- the run directory --------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    def write(file: Any) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=METRICS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if math.isnan(v) else _fmt(k, v)) for k, v in row.items()})
        file.write(text.getvalue().encode())

    atomic_write(path, write)


def _fmt(key: str, value: float) -> str:
    return str(int(value)) if key in ("epoch", "iteration") else f"{value:.6g}"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` (empty cells as NaN)."""
    with open(path, newline="") as file:
        return [
            {k: float(v) if v != "" else math.nan for k, v in row.items()}
            for row in csv.DictReader(file)
        ]


def _write_text(path: Path, text: str) -> None:
    def write(file: BinaryIO) -> None:
        file.write(text.encode())

    atomic_write(path, write)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda file: torch.save(payload, file))


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"{path.parent}: nothing to resume (no {path.name}); start a new run")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: not a resnetlib trainer-state file")
    if state.get("version") != STATE_VERSION:
        raise TrainingError(f"{path}: trainer-state version {state.get('version')} unsupported")
    return state


# -- the loop -----------------------------------------------------------------------------


def fit(
    model: ResNet,
    data: DataSplits,
    recipe: Recipe,
    *,
    out: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    resume: bool = False,
    iterations: int | None = None,
    epochs: int | None = None,
    progress: bool = True,
    seed: int = 0,
    log_every: int = 20,
) -> FitResult:
    """Train ``model`` on ``data.train`` by ``recipe``; evaluate on ``data.val``/``data.test``
    after every epoch.

    ``iterations`` or ``epochs`` override the recipe's length (the schedule scales).
    ``out`` is the run directory (written by rank 0 only): ``spec.json``, ``recipe.json``,
    ``metrics.csv``, ``last.pt`` (the model after the latest epoch) with ``state.pt`` (the
    trainer state), ``final.pt`` and ``curves.png`` at the end. ``resume=True`` continues
    the run in ``out`` from its latest epoch; on a CPU the result is bit-identical to an
    uninterrupted run. A non-finite loss raises :class:`TrainingError` and leaves the last
    good checkpoint in place. ``device`` defaults to the GPU when there is one.
    """
    device = _default_device() if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:  # under torchrun: this rank's GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    process = _process_group(device)
    try:
        return _fit(
            model,
            data,
            recipe,
            process,
            out=None if out is None else Path(out),
            device=device,
            resume=resume,
            iterations=iterations,
            epochs=epochs,
            progress=progress,
            seed=seed,
            log_every=log_every,
        )
    finally:
        if process.started_group:
            dist.destroy_process_group()


def _fit(
    model: ResNet,
    data: DataSplits,
    recipe: Recipe,
    process: _Process,
    *,
    out: Path | None,
    device: torch.device,
    resume: bool,
    iterations: int | None,
    epochs: int | None,
    progress: bool,
    seed: int,
    log_every: int,
) -> FitResult:
    if not isinstance(model, ResNet):
        raise TypeError(f"fit() takes a resnetlib ResNet; got {type(model).__name__}")
    if resume and out is None:
        raise ValueError("resume=True needs the run directory: pass out=")
    rank, world = process.rank, process.world_size
    if recipe.batch_size % world:
        raise ValueError(
            f"Recipe.batch_size {recipe.batch_size} must divide among {world} processes"
        )
    writer = out is not None and rank == 0
    torch.manual_seed(seed)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    mean = pixel_mean(data.train)
    train_loader = DeviceLoader(
        data.train,
        batch_size=recipe.batch_size // world,
        device=device,
        mean=mean,
        augment=recipe.augment,
        shuffle=True,
        drop_last=True,
        seed=seed,
        rank=rank,
        world_size=world,
        channels_last=recipe.channels_last,
    )
    if len(train_loader) == 0:
        raise ValueError(
            f"the training set ({len(data.train.labels)} images) is smaller than one batch "
            f"of {recipe.batch_size}"
        )
    plan = recipe.resolved(len(train_loader), iterations=iterations, epochs=epochs)
    total = plan.iterations
    assert total is not None

    groups: Any = model.parameters()
    if recipe.no_decay_norm_bias:
        groups = param_groups(model, lr=recipe.lr, no_decay_norm_bias=True)
    optimizer = torch.optim.SGD(
        groups,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    ema = None
    if recipe.ema_decay is not None:
        from torch.optim import swa_utils

        ema_fn: Any = swa_utils.get_ema_multi_avg_fn  # untyped in torch
        ema = swa_utils.AveragedModel(
            model, multi_avg_fn=ema_fn(recipe.ema_decay), use_buffers=True
        )
    amp_dtype = _AUTOCAST_DTYPES.get(recipe.autocast or "")
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def autocast() -> AbstractContextManager[Any]:
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    train_module: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_module = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if recipe.compile:
        train_module = torch.compile(train_module)  # type: ignore[assignment]

    iteration, epoch, elapsed = 0, 0, 0.0
    warmed_up = recipe.warmup_lr is None
    history: list[dict[str, float]] = []
    state_path = None if out is None else out / "state.pt"
    if resume:
        assert out is not None
        assert state_path is not None
        state = _read_state(state_path)
        if state["plan"] != plan.to_json():
            raise TrainingError(
                f"{out}: the run was started with another recipe or length; resume it with "
                "the same recipe and --epochs/--iterations, or start a new run elsewhere"
            )
        from ..checkpoint import read_checkpoint

        saved = read_checkpoint(out / "last.pt")
        if saved.spec != model.spec:
            raise TrainingError(f"{out}: the run trains another network than the one given")
        model.load_state_dict(saved.state_dict)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        train_loader.load_state_dict(state["loader"])
        _set_rng_state(state["rng"], device)
        iteration, epoch, elapsed = state["iteration"], state["epoch"], state["elapsed"]
        warmed_up = state["warmed_up"]
        history = [dict(row) for row in state["history"]]
    elif state_path is not None and state_path.exists():
        raise TrainingError(
            f"{out} already holds a run; pass resume=True (--resume) to continue it, "
            "or choose another directory"
        )
    if writer:
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "spec.json", model.spec.to_json() + "\n")
        _write_text(out / "recipe.json", recipe.to_json() + "\n")

    bar = None
    if progress and rank == 0:
        tqdm: Any = importlib.import_module("tqdm.auto").tqdm  # the train extra
        bar = tqdm(total=total, initial=iteration, unit="it", dynamic_ncols=True)
    evaluated: nn.Module = model if ema is None else ema.module
    ones = torch.ones((), device=device, dtype=torch.float64)  # counts without a host copy
    last_good = None if out is None else out / "last.pt"
    try:
        while iteration < total:
            train_loader.set_epoch(epoch)
            model.train()
            sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, wrong, images
            logged = torch.zeros_like(sums)
            start = time.perf_counter()
            tick = start
            lr = plan.lr_at(iteration, warmed_up)
            for x, y in train_loader:
                if iteration >= total:
                    break
                lr = plan.lr_at(iteration, warmed_up)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                with autocast():
                    logits = train_module(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(scaler.scale(loss))
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                wrong = (logits.detach().argmax(1) != y).sum()
                sums += torch.stack(
                    [loss.detach().double() * y.numel(), wrong.double(), ones * y.numel()]
                )
                iteration += 1
                if not warmed_up:
                    batch = torch.stack([wrong.double(), ones * y.numel()])
                    if world > 1:
                        dist.all_reduce(batch)
                    warmed_up = plan.warmup_over(iteration, (batch[0] / batch[1]).item())
                if iteration % log_every == 0 or iteration == total:
                    window = (sums - logged).tolist()
                    logged = sums.clone()
                    if world == 1 and not math.isfinite(window[0]):  # ranks: at epoch end
                        _non_finite(iteration, epoch, last_good)
                    if bar is not None and window[2]:
                        now = time.perf_counter()
                        bar.update(iteration - bar.n)
                        bar.set_postfix(
                            {
                                "img/s": f"{window[2] * world / max(now - tick, 1e-9):.0f}",
                                "loss": f"{window[0] / window[2]:.3f}",
                                "err": f"{100 * window[1] / window[2]:.1f}%",
                                "lr": f"{lr:.3g}",
                            },
                            refresh=False,
                        )
                        tick = now
            epoch += 1
            if world > 1:
                dist.all_reduce(sums)
                # Each rank's last forward updated its norms' running statistics from its
                # own shard: take rank 0's, so that every rank evaluates and saves the same.
                for buffer in [*model.buffers(), *(ema.buffers() if ema is not None else [])]:
                    dist.broadcast(buffer, 0)
            loss_sum, wrong_sum, count = sums.tolist()
            if not math.isfinite(loss_sum):
                _non_finite(iteration, epoch - 1, last_good)
            seconds = time.perf_counter() - start
            val = (
                None
                if data.val is None
                else _score(
                    evaluated,
                    _loader(
                        data.val, mean, device, batch_size=500, channels_last=recipe.channels_last
                    ),
                    autocast(),
                )
            )
            test = _score(
                evaluated,
                _loader(
                    data.test, mean, device, batch_size=500, channels_last=recipe.channels_last
                ),
                autocast(),
            )
            elapsed += time.perf_counter() - start
            row = {
                "epoch": float(epoch),
                "iteration": float(iteration),
                "lr": lr,
                "train_loss": loss_sum / count,
                "train_error": wrong_sum / count,
                "val_error": math.nan if val is None else val.error,
                "test_error": test.error,
                "images_per_s": count / seconds,
                "elapsed_s": elapsed,
            }
            history.append(row)
            if bar is not None:
                bar.write(
                    f"epoch {epoch}: train loss {row['train_loss']:.4f} error "
                    f"{100 * row['train_error']:.2f}%"
                    + ("" if val is None else f", val error {100 * val.error:.2f}%")
                    + f", test error {100 * test.error:.2f}%"
                )
            if writer:
                assert out is not None
                assert state_path is not None
                _write_csv(out / "metrics.csv", history)
                save(model, out / "last.pt", metadata=_metadata(row))
                state_payload = {
                    "format": STATE_FORMAT,
                    "version": STATE_VERSION,
                    "plan": plan.to_json(),
                    "iteration": iteration,
                    "epoch": epoch,
                    "elapsed": elapsed,
                    "warmed_up": warmed_up,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": None if ema is None else ema.state_dict(),
                    "loader": train_loader.state_dict(),
                    "rng": _rng_state(device),
                    "history": history,
                }
                _save_state(state_path, state_payload)
    finally:
        if bar is not None:
            bar.close()
    final_model = evaluated
    assert isinstance(final_model, ResNet)
    if writer and history:
        assert out is not None
        save(final_model, out / "final.pt", metadata=_metadata(history[-1]))
        from .plot import plot_runs

        plot_runs({model_label(model): history}, out / "curves.png")
    return FitResult(
        metrics=dict(history[-1]) if history else {},
        history=tuple(history),
        run_dir=out if writer else None,
        model=final_model,
    )


def model_label(model: ResNet) -> str:
    """A short name for plots: ``ResNet-56``, ``plain-20`` (from the spec)."""
    spec = model.spec
    layers = {"basic": 2, "bottleneck": 3}.get(spec.block)
    depth = "" if layers is None else f"-{spec.depth * layers + 2}"
    return ("plain" if spec.shortcut == "none" else "ResNet") + depth


def _metadata(row: Mapping[str, float]) -> dict[str, float | int | None]:
    return {
        key: (None if math.isnan(value) else int(value) if key in ("epoch", "iteration") else value)
        for key, value in row.items()
    }


def _non_finite(iteration: int, epoch: int, last_good: Path | None) -> None:
    kept = (
        f"; the last good checkpoint is {last_good}"
        if last_good is not None and last_good.exists()
        else "; no checkpoint was written before it"
    )
    raise TrainingError(
        f"the training loss became NaN or infinite by iteration {iteration} (epoch {epoch + 1})"
        f"{kept}. Lower the lr, add a warm-up, or turn off fp16 autocast."
    )
