"""The training loop: :func:`fit` trains a model by a :class:`Recipe`, :func:`evaluate` scores it.

A model carries its preprocessing: batches are normalized with the per-channel mean and
std of the model's ``pretrained_cfg`` (a pretrained model's publisher's; a new model's
data set's own with ``fit(..., statistics="data")``), and :func:`fit` records in it the
input size it trained at, so that every checkpoint of the run says how to feed it.

:func:`fit` reads top to bottom: set up (``Trainer``), then per epoch
``train_epoch`` (per iteration: lr from the schedule, forward, loss, backward, optimizer
step, EMA update) and ``end_epoch`` (evaluate, record, checkpoint).
The run directory (:class:`~resnetlib.train.run_dir.RunDirectory`) owns every file. Under
``torchrun`` (``WORLD_SIZE`` > 1) the model trains with DDP and each rank takes its share of
every batch.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..common import evaluating
from ..core.data_config import config_to_json, normalization, set_data_config
from ..core.model import ResNet
from ..core.spec import ResNetSpec
from ..interop.finetune import param_groups as make_param_groups
from ..validate import check_int, is_int, is_real
from . import graphed
from .data import DataSplits, ImageDataset, data_statistics
from .pipeline import DeviceLoader
from .recipe import Recipe, scaling_note
from .run_dir import METRICS, RunDirectory, RunDirectoryError, TrainingError, read_metrics

__all__ = [
    "METRICS",
    "EvalResult",
    "FitResult",
    "RunDirectoryError",
    "TrainingError",
    "TrainingInterrupted",
    "check_classes_fit",
    "check_data_fits",
    "evaluate",
    "fit",
    "model_label",
    "read_metrics",
]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_EVAL_BATCH = 500


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`fit` between two iterations, after it saved the run (when it
    has a run directory). ``iteration`` is the number done; ``run_dir`` where to resume."""

    def __init__(self, iteration: int, run_dir: Path | None) -> None:
        super().__init__(iteration, run_dir)
        self.iteration = iteration
        self.run_dir = run_dir


@dataclass(frozen=True)
class EvalResult:
    """Top-1 ``error`` and top-5 ``top5_error`` (fractions) and mean cross-entropy ``loss``
    over ``count`` images (top-5 is top-k with k = the number of classes when fewer)."""

    error: float
    loss: float
    count: int
    top5_error: float = math.nan

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy, a fraction."""
        return 1.0 - self.error

    @property
    def top5_accuracy(self) -> float:
        """Top-5 accuracy, a fraction."""
        return 1.0 - self.top5_error


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


# -- what a model expects -----------------------------------------------------------------


@runtime_checkable
class Described(Protocol):
    """What :func:`evaluate` reads of a model besides calling it: a :class:`ResNet`, or an
    exported file run by its runtime (``resnetlib.deploy.runtime.OnnxModel``)."""

    @property
    def spec(self) -> ResNetSpec: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def pretrained_cfg(self) -> dict[str, Any]: ...


def check_data_fits(model: Described, dataset: ImageDataset, *, image_size: bool = True) -> None:
    """Raise a one-line ``ValueError`` naming both sides unless ``dataset`` has the classes,
    channels and (with ``image_size``) image size the model expects (its ``num_classes``,
    ``in_channels`` and ``pretrained_cfg["input_size"]``)."""
    c, h, w = (int(n) for n in dataset.images.shape[1:])
    check_classes_fit(model, dataset.classes, c, dataset.name)
    expected = tuple(model.pretrained_cfg.get("input_size", ()))[1:]
    if image_size and expected and expected != (h, w):
        side = f"{expected[0]}" if expected[0] == expected[1] else f"{expected[0]}x{expected[1]}"
        raise ValueError(
            f"the model expects {expected[0]}x{expected[1]} images (its pretrained_cfg "
            f"input_size) and {dataset.name} has {h}x{w}; load the data with --image-size "
            f"{side}"
        )


def check_classes_fit(model: Described, classes: Sequence[str], channels: int, name: str) -> None:
    """The classes and channels half of :func:`check_data_fits`, for data known only by its
    listing (``load_data``'s ``before_decoding``): nothing decoded yet."""
    if model.num_classes != len(classes):
        raise ValueError(
            f"the model has {model.num_classes} classes and {name} has {len(classes)}; "
            "evaluate on the data it was trained on, or train a head for this data "
            "(--num-classes, --classes)"
        )
    if model.spec.in_channels != channels:
        raise ValueError(
            f"the model takes {model.spec.in_channels}-channel images and {name} has "
            f"{channels} channels; train a model with --in-channels {channels}"
        )


BF16_CPU_SPEEDUP = {False: 1.7, True: 1.4}
"""fp32 step time / bf16-autocast step time of a ResNet-20 training step (batch 128, 2
threads) on an AVX512-BF16 CPU, by ``channels_last``: issue 25's measurement (fp32 1.00,
channels_last 1.43, bf16 1.76, both 1.97; ``benchmarks/cpu_precision.py``, docs/benchmarks.md)."""


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _bf16_hint(device: torch.device, recipe: Recipe) -> str:
    """The start-up line's note that ``--bf16`` would be faster on this CPU, or ``""``."""
    if device.type != "cpu" or recipe.autocast is not None or not native_bf16():
        return ""
    return (
        "; this CPU runs bf16 natively: --bf16 trains about "
        f"{BF16_CPU_SPEEDUP[bool(recipe.channels_last)]}x faster "
        "(a ResNet-20 step, docs/benchmarks.md)"
    )


def _normalization(model: Described) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return normalization(model.pretrained_cfg, model.spec.in_channels)


def _trained_config(
    model: ResNet, image_shape: tuple[int, int, int], classes: tuple[str, ...]
) -> dict[str, Any]:
    """The model's data configuration with the input size it trains at (uncropped) and the
    names of its classes."""
    reduction = model.feature_info[-1]["reduction"] if model.feature_info else 1
    _, height, width = image_shape
    return {
        **model.pretrained_cfg,
        "input_size": image_shape,
        "pool_size": (math.ceil(height / reduction), math.ceil(width / reduction)),
        "crop_pct": 1.0,
        "num_classes": model.num_classes,
        "label_names": list(classes),
    }


# -- evaluation ---------------------------------------------------------------------------


def _score(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    autocast: AbstractContextManager[Any],
) -> EvalResult:
    totals: torch.Tensor | int = 0  # loss sum, top-1 and top-5 wrong, on the model's device
    count = 0
    with evaluating(model):
        for x, y in batches:
            with autocast:
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            wrong = (top[:, 0] != y).sum()
            wrong5 = (top != y[:, None]).all(1).sum()
            totals = totals + torch.stack([loss.double(), wrong.double(), wrong5.double()])
            count += y.numel()
    if count == 0 or not isinstance(totals, torch.Tensor):
        raise ValueError("evaluate() got an empty data set")
    loss_sum, wrong_sum, wrong5_sum = totals.tolist()
    return EvalResult(
        error=wrong_sum / count, loss=loss_sum / count, count=count, top5_error=wrong5_sum / count
    )


def evaluate(
    model: nn.Module,
    data: DataSplits | ImageDataset,
    device: torch.device | str | None = None,
    *,
    split: str = "test",
    batch_size: int = _EVAL_BATCH,
) -> EvalResult:
    """Top-1/top-5 error and loss of ``model`` on ``data``, with no augmentation.

    Images are normalized as the model's ``pretrained_cfg`` says (its mean and std), and
    checked first against what it expects (:func:`check_data_fits`). ``data`` is a
    :class:`DataSplits` (scores ``split``: ``"test"``, ``"val"`` or ``"train"``) or an
    :class:`ImageDataset`. The model moves to ``device`` (default: where its parameters are).
    ``model`` is a :class:`ResNet` or, like an exported file run by its runtime, a module
    with the same ``spec``, ``num_classes`` and ``pretrained_cfg``.
    """
    if not isinstance(model, nn.Module) or not isinstance(model, Described):
        raise TypeError(f"evaluate() takes a resnetlib ResNet; got {type(model).__name__}")
    if isinstance(data, DataSplits):
        chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split)
        if chosen is None:
            raise ValueError(
                f"split must be 'train', 'test' or 'val' (when one is held out); got {split!r}"
            )
        dataset = chosen
    else:
        dataset = data
    check_data_fits(model, dataset)
    mean, std = _normalization(model)
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    loader = DeviceLoader(dataset, batch_size=batch_size, device=device, mean=mean, std=std)
    return _score(model, loader, nullcontext())


# -- processes ----------------------------------------------------------------------------


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


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "meta":
        raise ValueError("fit() cannot train on the meta device (it holds no values)")
    if device.type == "cuda" and device.index is None:  # under torchrun: this rank's GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextmanager
def _stop_on_interrupt(enabled: bool) -> Iterator[threading.Event]:
    """While inside, a first Ctrl-C sets the yielded event (the loop stops after the current
    iteration); a second one interrupts at once. Only in the main thread of a single
    process (ranks of a distributed run must stop together, so they keep Python's default).
    """
    stop = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


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
    optimizer: torch.optim.Optimizer | None = None,
    param_groups: Iterable[dict[str, Any]] | None = None,
    on_epoch_end: Callable[[dict[str, float], ResNet], None] | None = None,
    save_every: int | None = None,
    save_every_minutes: float | None = 10.0,
    run_info: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    statistics: Literal["model", "data"] = "model",
) -> FitResult:
    """Train ``model`` on ``data.train`` by ``recipe``; evaluate on ``data.val``/``data.test``
    after every epoch.

    Inputs are normalized with the model's ``pretrained_cfg`` mean and std; the model's
    ``pretrained_cfg`` then records the input size it trained at. ``statistics="data"``
    (for a model trained from scratch; the command does so) first sets them to the data
    set's own (``data_statistics()`` of ``data.train``: CIFAR's
    published values, or computed from the training images), so that every checkpoint
    says them; ``"model"`` keeps the model's (pretrained weights' statistics). ``iterations`` or
    ``epochs`` override the recipe's length (the schedule scales). The recipe's SGD
    optimizes every trainable parameter, or ``param_groups`` (for example
    :func:`~resnetlib.interop.param_groups`); or pass your own ``optimizer``. Either way the
    schedule sets each group's lr to the schedule's value times the group's ``lr_scale``
    (1 when absent). ``on_epoch_end(row, model)`` is called after each epoch with its
    metrics row.

    ``out`` is the run directory (written by rank 0 only, locked while the run lasts):
    ``run.json`` (``run_info`` plus the data, split, seed and data config), ``spec.json``,
    ``recipe.json``, ``metrics.csv``, ``steps.csv``, ``state.pt`` with ``last.pt`` (saved
    after every epoch, every ``save_every`` iterations, every ``save_every_minutes``, and on
    Ctrl-C), ``best.pt`` (lowest validation error), ``final.pt`` and ``curves.png``.
    ``resume=True`` continues the run in ``out`` from its last save; on a CPU the result is
    bit-identical to an uninterrupted run. A run is never restarted silently: a run whose
    ``state.pt`` is gone although it made progress (``last.pt``, ``metrics.csv``...), or
    whose state is another run's, of another plan or network, or out of its plan's range
    (``Trainer.check_state()``), is a :class:`RunDirectoryError` naming the file, and
    nothing in ``out`` is written. Ctrl-C stops after the current iteration, saves,
    and raises :class:`TrainingInterrupted`. A non-finite loss raises
    :class:`TrainingError` and leaves the last good checkpoint in place. ``device``
    defaults to the GPU when there is one. ``log`` receives the start-up and epoch lines
    (default: printed above the progress bar when ``progress``, else dropped).
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"fit() takes a resnetlib ResNet; got {type(model).__name__}")
    if resume and out is None:
        raise ValueError("resume=True needs the run directory: pass out=")
    if optimizer is not None and param_groups is not None:
        raise ValueError("give optimizer or param_groups, not both")
    if statistics not in ("model", "data"):
        raise ValueError(f"statistics must be 'model' or 'data'; got {statistics!r}")
    if statistics == "data":
        mean, std = data_statistics(data.train)
        set_data_config(model, {**model.pretrained_cfg, "mean": mean, "std": std})
    device = _resolve_device(device)
    process = _process_group(device)
    run = RunDirectory(out) if out is not None and process.rank == 0 else None
    try:
        if run is not None:
            run.acquire()
        trainer = Trainer(
            model,
            data,
            recipe,
            process,
            device=device,
            run=run,
            iterations=iterations,
            epochs=epochs,
            seed=seed,
            optimizer=optimizer,
            param_groups=param_groups,
        )
        saved = None if out is None else RunDirectory(out)
        if resume and saved is not None and saved.has_checkpoint():
            trainer.resume(saved)
        elif resume and saved is not None and not saved.holds_run():
            raise RunDirectoryError(f"{saved.path}: nothing to resume (no run.json or state.pt)")
        elif resume and saved is not None and saved.progress_files():
            raise RunDirectoryError(_lost_state(saved))
        elif run is not None:  # a new run, or one stopped before its first save: start over
            trainer.start(run_info or {}, restart=resume)
        return trainer.run(
            progress=progress,
            log=log,
            log_every=log_every,
            on_epoch_end=on_epoch_end,
            save_every=save_every,
            save_every_minutes=save_every_minutes,
            run_info=run_info or {},
        )
    finally:
        if run is not None:
            run.release()
        if process.started_group:
            dist.destroy_process_group()


class Trainer:
    """One run's state: set up in ``__init__``, then :meth:`run` epoch by epoch."""

    def __init__(
        self,
        model: ResNet,
        data: DataSplits,
        recipe: Recipe,
        process: _Process,
        *,
        device: torch.device,
        run: RunDirectory | None,
        iterations: int | None,
        epochs: int | None,
        seed: int,
        optimizer: torch.optim.Optimizer | None,
        param_groups: Iterable[dict[str, Any]] | None,
    ) -> None:
        rank, world = process.rank, process.world_size
        if recipe.batch_size % world:
            raise ValueError(
                f"Recipe.batch_size {recipe.batch_size} must divide among {world} processes"
            )
        check_data_fits(model, data.train, image_size=False)  # training sets the model's
        self.model, self.data, self.process, self.device, self.run_dir = (
            model,
            data,
            process,
            device,
            run,
        )
        # What is recorded is what was used: the split actually held out, the memory format.
        channels_last = recipe.channels_last
        if channels_last is None:
            channels_last = device.type == "cpu"
        recipe = replace(recipe, val_size=data.sizes()["val"], channels_last=channels_last)
        self.recipe = recipe
        self.seed = seed
        model.pretrained_cfg = _trained_config(model, data.image_shape, data.classes)
        self.mean, self.std = _normalization(model)
        torch.manual_seed(seed)
        model.to(device)
        if channels_last:
            # torch 2.13's stubs need this ignore, 2.14's do not (hence unused-ignore)
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload, unused-ignore]
        self.loader = DeviceLoader(
            data.train,
            batch_size=recipe.batch_size // world,
            device=device,
            mean=self.mean,
            std=self.std,
            augment=recipe.augment,
            shuffle=True,
            drop_last=True,
            seed=seed,
            rank=rank,
            world_size=world,
            channels_last=channels_last,
        )
        if len(self.loader) == 0:
            sizes = data.sizes()
            raise ValueError(
                f"the training split ({sizes['train']} images, after {sizes['val']} were held "
                f"out for validation) is smaller than one batch of {recipe.batch_size}; pass "
                "a smaller --batch-size or --val-size"
            )
        self.eval_loaders = {
            name: DeviceLoader(
                split,
                batch_size=_EVAL_BATCH,
                device=device,
                mean=self.mean,
                std=self.std,
                channels_last=channels_last,
            )
            for name, split in (("val", data.val), ("test", data.test))
            if split is not None
        }
        self.plan = self.recipe.resolved(len(self.loader), iterations=iterations, epochs=epochs)
        self.length = {"iterations": iterations, "epochs": epochs}
        self.optimizer = optimizer or self._recipe_optimizer(param_groups)
        self.ema: Any = None
        if recipe.ema_decay is not None:
            from torch.optim import swa_utils

            ema_fn: Any = swa_utils.get_ema_multi_avg_fn  # untyped in torch
            self.ema = swa_utils.AveragedModel(
                model, multi_avg_fn=ema_fn(recipe.ema_decay), use_buffers=True
            )
        self.amp_dtype = _AUTOCAST_DTYPES.get(recipe.autocast or "")
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.train_module: nn.Module = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_module = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if recipe.compile:
            self.train_module = torch.compile(self.train_module)  # type: ignore[assignment]
        # Progress, saved and restored as one.
        self.iteration, self.epoch, self.elapsed = 0, 0, 0.0
        self.warmed_up = recipe.warmup_lr is None
        self.history: list[dict[str, float]] = []
        self.steps: list[dict[str, float]] = []
        self.best_val = math.inf
        self.sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, wrong, images
        self.logged = torch.zeros_like(self.sums)  # the sums at the last logging point
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None  # last: wrong, images
        self.epoch_seconds = 0.0
        self.run_id: str | None = None  # run.json's, saved in state.pt: whose state it is
        self.resumed = False  # continued from a save (resume)
        self.shown = -math.inf  # when the progress bar's values were last set
        self.graphed, self.graphs_note = graphed.choose(self, own_optimizer=optimizer is None)

    def _recipe_optimizer(self, groups: Iterable[dict[str, Any]] | None) -> torch.optim.Optimizer:
        recipe = self.recipe
        params: Any = groups
        if params is None:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            params = trainable
            if recipe.no_decay_norm_bias:
                params = make_param_groups(self.model, lr=recipe.lr, no_decay_norm_bias=True)
        return torch.optim.SGD(
            params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
        )

    @property
    def evaluated(self) -> ResNet:
        """The model that is scored and saved: the EMA copy when there is one."""
        module = self.model if self.ema is None else self.ema.module
        assert isinstance(module, ResNet)
        return module

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- the run directory -----------------------------------------------------------------

    def start(self, run_info: Mapping[str, Any], *, restart: bool = False) -> None:
        """Describe a new run in its directory before the first iteration (``restart``: one
        that stopped before its first save)."""
        run = self.run_dir
        assert run is not None
        if run.holds_run() and not restart:
            raise RunDirectoryError(
                f"{run.path} already holds a run (run.json); continue it with resume=True "
                "(--resume), or choose another directory"
            )
        run.write_json("spec.json", self.model.spec.to_json())
        # The recipe as followed: its length, milestones and warm-up as run, so that
        # ``--recipe DIR/recipe.json`` repeats the run (resolving a plan changes nothing).
        followed = replace(self.plan, cuda_graphs=self.recipe.cuda_graphs)
        run.write_json("recipe.json", followed.to_json())
        self.run_id = secrets.token_hex(8)
        run.write_info(
            {
                **run_info,
                "run_id": self.run_id,
                "resnetlib": _version(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "data": dict(self.data.source or {"data": self.data.train.name}),
                "split": self.data.sizes(),
                "classes": list(self.data.classes),
                "seed": self.seed,
                "length": self.length,
                "iterations": self.plan.iterations,
                "iterations_per_epoch": len(self.loader),
                "pretrained_cfg": json.loads(config_to_json(self.model.pretrained_cfg)),
            }
        )

    def resume(self, run: RunDirectory) -> None:
        """Continue from the run's last save (every rank reads rank 0's files).

        The state is checked first (``check_state()``): one from another run, of another
        plan or network, or with a field out of range or of the wrong type is a
        :class:`RunDirectoryError` naming ``state.pt``, and nothing is written.
        """
        state = run.read_state()
        info = run.read_info()
        self.check_state(state, run.path / "state.pt", info.get("run_id"))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.loader.load_state_dict(state["loader"])
            _set_rng_state(state["rng"], self.device)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise RunDirectoryError(
                f"{run.path / 'state.pt'}: a trainer state that does not fit this run "
                f"({reason}); restore this run's state.pt, or start a new run in another --out"
            ) from None
        self.run_id = info.get("run_id")
        self.resumed = True
        self.iteration, self.epoch = state["iteration"], state["epoch"]
        self.elapsed, self.epoch_seconds = state["elapsed"], state["epoch_seconds"]
        self.warmed_up, self.best_val = state["warmed_up"], state["best_val"]
        self.history = [dict(row) for row in state["history"]]
        self.steps = [dict(row) for row in state["steps"]]
        self.sums = state["sums"].to(self.device)
        self.logged = state["logged"].to(self.device)

    def check_state(self, state: Mapping[str, Any], path: Path, run_id: object) -> None:
        """The one check of a saved trainer state before :meth:`resume` applies it: this
        run's (``run_id``, plan, network), every field :meth:`resume` reads of its type, and
        the progress within the plan (iteration, epoch, loader position agree).

        Raises:
            RunDirectoryError: one line naming ``path``, the field and what to do.
        """
        plan, per_epoch = self.plan, len(self.loader)
        total = plan.iterations
        assert total is not None
        what_to_do = "restore this run's state.pt, or start a new run in another --out"

        def bad(field: str, wanted: str, value: object = _NOTHING) -> RunDirectoryError:
            got = "" if value is _NOTHING else f"; got {_short(value)}"
            return RunDirectoryError(f"{path}: field {field!r} must be {wanted}{got}; {what_to_do}")

        def integer(field: str, low: int, high: int) -> int:
            value = state.get(field)
            if not (is_int(value) and low <= value <= high):
                raise bad(field, f"an int from {low} to {high}", value)
            return value

        def real(field: str, *, infinite: bool = False) -> None:
            value = state.get(field)
            if not (is_real(value) and value >= 0 and (infinite or math.isfinite(value))):
                raise bad(field, "a number >= 0", value)

        def table(field: str, limit: int) -> None:
            rows = state.get(field)
            if not isinstance(rows, list):
                raise bad(field, "a list of rows", type(rows).__name__)
            if len(rows) > limit:
                raise RunDirectoryError(
                    f"{path}: field {field!r} holds {len(rows)} rows, more than the {limit} "
                    f"its progress allows; {what_to_do}"
                )
            for row in rows:
                if not (
                    isinstance(row, dict)
                    and all(isinstance(k, str) and is_real(v) for k, v in row.items())
                ):
                    raise bad(field, "a list of rows of numbers")

        def tensor(field: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
            value = state.get(field)
            if not (
                isinstance(value, torch.Tensor)
                and tuple(value.shape) == shape
                and value.dtype == dtype
            ):
                raise bad(field, f"a {dtype} tensor of shape {list(shape)}")

        saved_run = state.get("run")
        if saved_run != run_id:
            raise RunDirectoryError(
                f"{path}: the state of another run (its id {_short(saved_run)}, run.json's "
                f"{_short(run_id)}); {what_to_do}"
            )
        saved_plan = state.get("plan")
        if not isinstance(saved_plan, str):
            raise bad("plan", "a recipe (JSON text)", type(saved_plan).__name__)
        if saved_plan != plan.to_json():
            try:
                message = _plan_difference(path, saved_plan, plan)
            except (ValueError, TypeError, KeyError, RecursionError):
                raise bad("plan", "a recipe (JSON text)") from None
            raise RunDirectoryError(message)
        model, mine = state.get("model"), self.model.state_dict()
        if not (
            isinstance(model, dict)
            and set(model) == set(mine)
            and all(
                isinstance(model[k], torch.Tensor)
                and model[k].shape == mine[k].shape
                and model[k].dtype == mine[k].dtype
                for k in mine
            )
        ):
            raise RunDirectoryError(
                f"{path}: the state of another network than this run's (spec.json); {what_to_do}"
            )
        iteration = integer("iteration", 0, total)
        epochs = -(-total // per_epoch)
        epoch = integer("epoch", 0, epochs)
        loader = state.get("loader")
        if not isinstance(loader, dict):
            raise bad("loader", "an object", type(loader).__name__)
        at_epoch, position = loader.get("epoch"), loader.get("position")
        if not (
            is_int(at_epoch)
            and is_int(position)
            and 0 <= position <= per_epoch
            and at_epoch * per_epoch + position == iteration
            and epoch in (at_epoch, at_epoch + 1)
        ):
            raise RunDirectoryError(
                f"{path}: iteration {iteration} and epoch {epoch} disagree with the loader's "
                f"epoch {_short(at_epoch)}, batch {_short(position)} ({per_epoch} an epoch); "
                f"{what_to_do}"
            )
        real("elapsed")
        real("epoch_seconds")
        real("best_val", infinite=True)
        if not isinstance(state.get("warmed_up"), bool):
            raise bad("warmed_up", "true or false", state.get("warmed_up"))
        table("history", epoch)
        if len(state["history"]) != epoch:
            raise bad("history", f"one row for each of the {epoch} epochs done")
        table("steps", iteration)
        tensor("sums", (3,), torch.float64)
        tensor("logged", (3,), torch.float64)
        for field in ("optimizer", "scaler", "rng"):
            if not isinstance(state.get(field), dict):
                raise bad(field, "an object", type(state.get(field)).__name__)
        if self.ema is not None and not isinstance(state.get("ema"), dict):
            raise bad("ema", "an object (the recipe keeps an EMA)", type(state.get("ema")).__name__)
        rng = state["rng"]
        generator = rng.get("torch")
        if not (isinstance(generator, torch.Tensor) and generator.dtype == torch.uint8):
            raise bad("rng", "the random generators' states (uint8 tensors)")

    def save(self) -> None:
        """Save the model and the trainer state (rank 0) as one unit, then the metrics (so
        that metrics without a state mean the state was lost, never that a save stopped)."""
        if self.run_dir is None:
            return
        self.run_dir.save_state(
            self.model,
            {
                "run": self.run_id,
                "plan": self.plan.to_json(),
                "iteration": self.iteration,
                "epoch": self.epoch,
                "elapsed": self.elapsed,
                "epoch_seconds": self.epoch_seconds,
                "warmed_up": self.warmed_up,
                "best_val": self.best_val,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "loader": self.loader.state_dict(),
                "rng": _rng_state(self.device),
                "history": self.history,
                "steps": self.steps,
                "sums": self.sums.cpu(),
                "logged": self.logged.cpu(),
            },
            metadata={"epoch": self.epoch, "iteration": self.iteration},
        )
        self.run_dir.write_metrics(self.history, self.steps)

    # -- epochs ----------------------------------------------------------------------------

    def run(
        self,
        *,
        progress: bool,
        log: Callable[[str], None] | None,
        log_every: int,
        on_epoch_end: Callable[[dict[str, float], ResNet], None] | None,
        save_every: int | None,
        save_every_minutes: float | None,
        run_info: Mapping[str, Any],
    ) -> FitResult:
        rank0 = self.process.rank == 0
        tqdm: Any = None
        if progress and rank0:
            tqdm = importlib.import_module("tqdm.auto").tqdm  # the train extra
        # The start-up line comes first, then the bar (no empty bar above the line).
        write = log or (_bar_writer(tqdm) if tqdm is not None else None)
        if self.finished():
            if write is not None and rank0:
                write(
                    f"{self.run_dir_path()}: the run is finished (iteration "
                    f"{self.iteration:,} of {self.plan.iterations:,}); nothing to resume, "
                    "nothing written"
                )
            return self.result()
        if write is not None and rank0:
            write(self.startup_line(run_info))
            if self.graphs_note:
                write(self.graphs_note)
        bar = None
        if tqdm is not None:
            bar = tqdm(
                total=self.plan.iterations, initial=self.iteration, unit="it", dynamic_ncols=True
            )
            write = log or _bar_writer(bar)
        total = self.plan.iterations
        assert total is not None
        saver = _SaveClock(save_every, save_every_minutes)
        single = self.process.world_size == 1
        try:
            with _stop_on_interrupt(single and self.run_dir is not None) as stop:
                while self.iteration < total:
                    finished = self.train_epoch(bar, log_every, saver, stop)
                    if not finished:
                        self.save()
                        raise TrainingInterrupted(
                            self.iteration, None if self.run_dir is None else self.run_dir.path
                        )
                    row = self.end_epoch()
                    if write is not None and self.process.rank == 0:
                        write(_epoch_line(row))
                    if on_epoch_end is not None:
                        on_epoch_end(dict(row), self.evaluated)
                    saver.reset()
        finally:
            if bar is not None:
                bar.close()
        return self.finish()

    def startup_line(self, run_info: Mapping[str, Any]) -> str:
        """What the run is (model, data, device, length, recipe and how its milestones
        scaled), or for a resumed run where it goes on."""
        total = self.plan.iterations
        assert total is not None
        parameters = sum(p.numel() for p in self.model.parameters())
        what = (
            f"{model_label(self.model)} ({parameters:,} parameters) on "
            f"{self.data.describe()}; {self.device}"
        )
        if self.resumed:
            where = self.run_dir_path()
            return f"resuming {where} at iteration {self.iteration:,} of {total:,}: {what}"
        recipe = run_info.get("recipe_name", "custom recipe")
        where = "" if self.run_dir is None else f"; run directory {self.run_dir.path}"
        scaled = scaling_note(self.recipe, self.plan, len(self.loader))
        scaled = f"; {scaled}" if scaled else ""
        return (
            f"{what}; {len(self.loader)} iterations an epoch, {total:,} in all ({recipe}, "
            f"batch {self.recipe.batch_size}{scaled}){where}"
            f"{_bf16_hint(self.device, self.recipe)}"
        )

    def run_dir_path(self) -> str:
        """The run directory, for messages (``(no run directory)`` without one)."""
        return "(no run directory)" if self.run_dir is None else str(self.run_dir.path)

    def finished(self) -> bool:
        """Whether a resumed run had already ended: every iteration done and ``final.pt``
        written (then resuming writes nothing)."""
        return (
            self.resumed
            and self.iteration >= (self.plan.iterations or 0)
            and self.run_dir is not None
            and (self.run_dir.path / "final.pt").is_file()
        )

    def train_epoch(
        self, bar: Any, log_every: int, saver: _SaveClock, stop: threading.Event
    ) -> bool:
        """Train until the epoch (or the run) ends: ``True``, or Ctrl-C: ``False``.

        Each iteration is :meth:`train_step`, or with CUDA graphs the same step replayed
        (:mod:`resnetlib.train.graphed`); the rest of the loop is the same for both.
        """
        plan, graphed = self.plan, self.graphed
        total = plan.iterations
        assert total is not None
        if graphed is not None:
            graphed.adopt_sums(self)
        self.loader.set_epoch(self.epoch)
        self.model.train()
        started = time.perf_counter()
        for x, y in self.loader:
            lr = plan.lr_at(self.iteration, self.warmed_up)
            if graphed is None:
                self.train_step(x, y, lr)
            else:
                graphed.set_lr(lr)
                graphed.step(x, y)
            self.iteration += 1
            boundary = self.iteration % log_every == 0 or self.iteration in (1, total)
            if not self.warmed_up:
                self.warmed_up = self._warmup_over(boundary)
            if bar is not None:
                self._advance(bar, lr)
            if boundary:
                self._log(lr)
            if self.iteration >= total:
                break
            if stop.is_set() or saver.due(self.iteration):
                self.epoch_seconds += time.perf_counter() - started
                started = time.perf_counter()
                if stop.is_set():
                    return False
                self.save()
                saver.reset()
        if graphed is not None:
            graphed.synchronize()  # the epoch's time is the device's
        self.epoch_seconds += time.perf_counter() - started
        return True

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        """One eager iteration: the lr set, forward, loss, backward, step, running sums."""
        optimizer, scaler = self.optimizer, self.scaler
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with self.autocast():
            logits = self.train_module(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(scaler.scale(loss))
        scaler.step(optimizer)
        scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        wrong = (logits.detach().argmax(1) != y).sum().double()
        count = torch.full((), y.numel(), dtype=torch.float64, device=wrong.device)
        self.sums += torch.stack([loss.detach().double() * count, wrong, count])
        self.batch = (wrong, count)  # for the warm-up check, which alone reads it

    def _warmup_over(self, boundary: bool) -> bool:
        """Whether the warm-up ends now: the last batch's error (all ranks') below the
        recipe's, or its iteration cap. Replayed graphs read their device counter only at
        ``boundary``, where the loop syncs anyway."""
        plan, graphed = self.plan, self.graphed
        if graphed is not None:
            if self.iteration >= plan.warmup_max_iterations:
                return True
            return boundary and plan.warmup_over(self.iteration, graphed.last_error())
        assert self.batch is not None  # a step ran
        batch = torch.stack(self.batch)
        if self.process.world_size > 1:
            dist.all_reduce(batch)
        return plan.warmup_over(self.iteration, (batch[0] / batch[1]).item())

    def _advance(self, bar: Any, lr: float) -> None:
        """Move the bar on one iteration, with loss, error and lr from the iterations since
        the last logging point: drawn at the first iteration, then set every half second (a
        read of the device's sums, so not every iteration) and drawn as tqdm decides."""
        now = time.monotonic()
        if now - self.shown < 0.5 and self.iteration > 1:
            bar.update(1)
            return
        self.shown = now
        loss, wrong, count = (self.sums - self.logged).tolist()
        if count:
            bar.set_postfix(
                {
                    "loss": f"{loss / count:.3f}",
                    "err": f"{100 * wrong / count:.1f}%",
                    "lr": f"{lr:.3g}",
                },
                refresh=False,
            )
        bar.update(1)
        if self.iteration == 1:
            bar.refresh()  # tqdm skips a draw within 0.1 s of the last one

    def _log(self, lr: float) -> None:
        loss, wrong, count = (self.sums - self.logged).tolist()
        self.logged = self.sums.clone()
        if self.process.world_size == 1 and not math.isfinite(loss):  # ranks: at epoch end
            self._non_finite()
        if count:
            self.steps.append(
                {
                    "iteration": float(self.iteration),
                    "lr": lr,
                    "train_loss": loss / count,
                    "train_error": wrong / count,
                }
            )

    def end_epoch(self) -> dict[str, float]:
        """Evaluate, record the epoch's row, save (and ``best.pt`` when validation improved)."""
        self.epoch += 1
        if self.process.world_size > 1:
            dist.all_reduce(self.sums)
            # Each rank's last forward updated its norms' running statistics from its own
            # shard: take rank 0's, so that every rank evaluates and saves the same.
            buffers = [*self.model.buffers(), *(self.ema.buffers() if self.ema else [])]
            for buffer in buffers:
                dist.broadcast(buffer, 0)
        loss_sum, wrong_sum, count = self.sums.tolist()
        if not math.isfinite(loss_sum):
            self._non_finite()
        started = time.perf_counter()
        scores = {
            name: _score(self.evaluated, loader, self.autocast())
            for name, loader in self.eval_loaders.items()
        }
        self.elapsed += self.epoch_seconds + time.perf_counter() - started
        nan = math.nan
        val, test = scores.get("val"), scores["test"]
        row = {
            "epoch": float(self.epoch),
            "iteration": float(self.iteration),
            "lr": self.plan.lr_at(max(self.iteration - 1, 0), self.warmed_up),
            "train_loss": loss_sum / count,
            "train_error": wrong_sum / count,
            "val_loss": nan if val is None else val.loss,
            "val_error": nan if val is None else val.error,
            "test_loss": test.loss,
            "test_error": test.error,
            "images_per_s": count / max(self.epoch_seconds, 1e-9),
            "elapsed_s": self.elapsed,
        }
        self.history.append(row)
        self.sums.zero_()
        self.logged.zero_()
        self.epoch_seconds = 0.0
        improved = val is not None and val.error < self.best_val
        if improved and val is not None:
            self.best_val = val.error
        self.save()
        if improved and self.run_dir is not None:
            self.run_dir.save_model("best.pt", self.evaluated, row)
        return row

    def finish(self) -> FitResult:
        final = self.evaluated
        if self.run_dir is not None and self.history:
            self.run_dir.save_model("final.pt", final, self.history[-1])
            self.run_dir.plot(model_label(final), self.history, self.steps)
        return self.result()

    def result(self) -> FitResult:
        """The run's result as it stands (nothing written)."""
        final = self.evaluated
        return FitResult(
            metrics=dict(self.history[-1]) if self.history else {},
            history=tuple(self.history),
            run_dir=None if self.run_dir is None else self.run_dir.path,
            model=final,
        )

    def _non_finite(self) -> None:
        last = None if self.run_dir is None else self.run_dir.path / "last.pt"
        kept = (
            f"; the last good checkpoint is {last}"
            if last is not None and last.exists()
            else "; no checkpoint was written before it"
        )
        raise TrainingError(
            f"the training loss became NaN or infinite by iteration {self.iteration} (epoch "
            f"{self.epoch + 1}){kept}. Lower the lr, add a warm-up, or turn off fp16 autocast."
        )


def _bar_writer(bar: Any) -> Callable[[str], None]:
    """Lines printed above a tqdm bar, on its stream (stderr), so they keep their order."""
    return functools.partial(bar.write, file=sys.stderr)


class _SaveClock:
    """When to save inside an epoch: every ``every`` iterations or ``minutes`` minutes."""

    def __init__(self, every: int | None, minutes: float | None) -> None:
        if every is not None:
            check_int("save_every", every)
        if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):
            raise ValueError(f"save_every_minutes must be a number > 0 or None; got {minutes!r}")
        self.every, self.seconds = every, None if minutes is None else 60.0 * minutes
        self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()

    def due(self, iteration: int) -> bool:
        if self.every is not None and iteration % self.every == 0:
            return True
        return self.seconds is not None and time.monotonic() - self.since >= self.seconds


_NOTHING = object()


def _short(value: object) -> str:
    """``repr(value)`` cut to a line's worth (a tensor or list shown by its type)."""
    if isinstance(value, (torch.Tensor, list, dict, tuple)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lost_state(run: RunDirectory) -> str:
    """The message for a run whose ``state.pt`` is gone although it made progress."""
    files = run.progress_files()
    weights = " (last.pt keeps its latest weights)" if "last.pt" in files else ""
    return (
        f"{run.path / 'state.pt'}: missing, but the run made progress ({', '.join(files)} "
        "exist); resuming would start it over and overwrite them. Restore state.pt to "
        f"continue, or start a new run in another --out{weights}"
    )


def _plan_difference(path: Path, saved_json: str, plan: Recipe) -> str:
    saved = Recipe.from_json(saved_json).to_dict()
    mine = plan.to_dict()
    differ = [
        f"{k}: run {saved[k]!r}, now {mine[k]!r}" for k in sorted(mine) if saved[k] != mine[k]
    ]
    return (
        f"{path}: the run was started with another recipe or length ({'; '.join(differ)}); "
        "resume with the run's own options (resnetlib train --out DIR --resume needs none), "
        "or start a new run elsewhere"
    )


def _version() -> str:
    try:
        return importlib.metadata.version("resnetlib")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _epoch_line(row: Mapping[str, float]) -> str:
    val = "" if math.isnan(row["val_error"]) else f", val error {100 * row['val_error']:.2f}%"
    return (
        f"epoch {int(row['epoch'])}: train loss {row['train_loss']:.4f} error "
        f"{100 * row['train_error']:.2f}%{val}, test error {100 * row['test_error']:.2f}%"
    )


def model_label(model: ResNet) -> str:
    """A short name for plots: ``ResNet-56``, ``plain-20`` (the spec's depth)."""
    return f"{'plain' if model.spec.shortcut == 'none' else 'ResNet'}-{model.depth}"
