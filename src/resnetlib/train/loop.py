"""The training loop: :func:`fit` trains a model by a :class:`Recipe`, :func:`evaluate` scores it.

:func:`fit` reads top to bottom: set up (``Trainer``), start or resume the run, then per
epoch the iterations (the lr, then ``train_step``: forward, loss, backward, step, EMA) and
``end_epoch`` (evaluate, record, save). The CUDA-graph step replaces ``train_step`` at one
seam, ``Trainer._choose_step`` (graphed.py is not even imported unless it may apply). Under
``torchrun`` the model trains with DDP, each rank taking its share of every batch.
"""

from __future__ import annotations

import importlib
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

from ..common import (
    check_finite_outputs,
    evaluating,
    first_line,
    installed_version,
    listing,
    resolve_device,
    weights_not_finite,
)
from ..core.data_config import config_to_json, normalization, set_data_config
from ..core.model import ResNet
from ..core.spec import ResNetSpec
from ..interop.finetune import param_groups as make_param_groups
from ..validate import check_int
from .data import DataSplits, ImageDataset, data_statistics
from .pipeline import DeviceLoader
from .recipe import Recipe, scaling_note
from .run_dir import (
    METRICS,
    RunDirectory,
    RunDirectoryError,
    TrainingError,
    check_resume,
    check_same_data,
    read_metrics,
)

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
_PROGRESS = ("iteration", "epoch", "elapsed", "epoch_seconds", "warmed_up", "best_val")
"""The trainer's progress attributes, saved and restored by name (``state.pt``)."""
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
    """Raise a one-line ``ValueError`` naming both sides unless ``dataset`` has the classes
    (in the order of ``pretrained_cfg["label_names"]`` when the model has them), channels and
    (with ``image_size``) image size the model expects (its ``num_classes``, ``in_channels``
    and ``pretrained_cfg["input_size"]``)."""
    c, h, w = (int(n) for n in dataset.images.shape[1:])
    check_classes_fit(model, dataset.classes, c, dataset.name)
    expected = tuple(model.pretrained_cfg.get("input_size", ()))[1:]
    if image_size and expected and expected != (h, w):
        fix = f"load the data with --image-size {expected[0]}"
        if expected[0] != expected[1]:  # --image-size resizes to squares
            fix = "give data of that size (--image-size resizes to squares only)"
        raise ValueError(
            f"the model expects {expected[0]}x{expected[1]} images (its pretrained_cfg "
            f"input_size) and {dataset.name} has {h}x{w}; {fix}"
        )


def check_classes_fit(
    model: Described,
    classes: Sequence[str],
    channels: int,
    name: str,
    *,
    label_names: bool = True,
) -> None:
    """The classes and channels half of :func:`check_data_fits` for data known by its listing
    (``load_data``'s ``before_decoding``); training passes ``label_names=False`` (it sets them)."""
    if model.num_classes != len(classes):
        advice = (
            "evaluate on the data it was trained on, or train a head for this data "
            "(--num-classes, --classes)"
            if label_names
            else f"train it with --num-classes {len(classes)} (the default)"
            + (
                f", or choose {model.num_classes} classes with --classes"
                if model.num_classes
                else ""
            )
        )
        raise ValueError(
            f"the model has {model.num_classes} classes and {name} has {len(classes)}; {advice}"
        )
    expected = model.pretrained_cfg.get("label_names") if label_names else None
    if expected and list(expected) != list(classes):
        flag = ",".join(map(str, expected))  # whole, to paste, where --classes can take it
        if len(flag) > 300 or any("," in str(label) for label in expected):
            flag = f"with its {len(expected)} label_names"
        raise ValueError(
            f"the model's classes are {listing(expected, 6)} (its pretrained_cfg label_names) and "
            f"{name}'s are {listing(classes, 6)}; evaluate on its classes in its order (--classes "
            f"{flag}), or train a head for this data"
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


# -- evaluation ---------------------------------------------------------------------------


def _score(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    autocast: AbstractContextManager[Any],
    *,
    finite: bool = True,
) -> EvalResult:
    """The model's scores on ``batches``; with ``finite``, outputs that are not finite are
    refused (``check_finite_outputs``; training records them and stops on its own terms)."""
    # loss sum, top-1 and top-5 wrong, and the logits' float64 sum (finite when each logit
    # is, checked once at the end), on the model's device
    totals: torch.Tensor | int = 0
    count = 0
    with evaluating(model):
        for x, y in batches:
            with autocast:
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            wrong = (top[:, 0] != y).sum()
            wrong5 = (top != y[:, None]).all(1).sum()
            logit_sum = logits.double().sum()
            totals = totals + torch.stack(
                [loss.double(), wrong.double(), wrong5.double(), logit_sum]
            )
            count += y.numel()
    if count == 0 or not isinstance(totals, torch.Tensor):
        raise ValueError("evaluate() got an empty data set")
    if finite:
        check_finite_outputs(model, totals[3])
    mean_loss, error, top5_error = (total / count for total in totals[:3].tolist())
    return EvalResult(error=error, loss=mean_loss, count=count, top5_error=top5_error)


def evaluate(
    model: nn.Module,
    data: DataSplits | ImageDataset,
    device: torch.device | str | None = None,
    *,
    split: str = "test",
    batch_size: int = _EVAL_BATCH,
) -> EvalResult:
    """Top-1/top-5 error and loss of ``model`` on ``data`` (``split`` of a
    :class:`DataSplits`), normalized as its ``pretrained_cfg`` says, no augmentation.

    The data is first checked against the model (:func:`check_data_fits`). The model moves
    to ``device`` (default: where its parameters are); it is a :class:`ResNet` or a module
    with the same ``spec``, ``num_classes`` and ``pretrained_cfg`` (an exported file's runtime).
    """
    if not isinstance(model, nn.Module) or not isinstance(model, Described):
        raise TypeError(f"evaluate() takes a resnetlib ResNet; got {type(model).__name__}")
    if isinstance(data, DataSplits):
        chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split)
        if split == "val" and chosen is None:
            raise ValueError(
                f"{data.train.name} holds out no validation split: hold one out (--val-size N, "
                "DataSplits.hold_out) or evaluate 'train' or 'test'"
            )
        if chosen is None:
            raise ValueError(f"split must be 'train', 'test' or 'val'; got {split!r}")
        dataset = chosen
    else:
        dataset = data
    check_data_fits(model, dataset)
    mean, std = normalization(model.pretrained_cfg, model.spec.in_channels)
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = resolve_device(device)
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


@contextmanager
def _stop_on_interrupt(enabled: bool) -> Iterator[threading.Event]:
    """While inside, a first Ctrl-C sets the yielded event (the loop stops after the current
    iteration); a second one interrupts at once. Only in the main thread of a single process
    (ranks of a distributed run must stop together, so they keep Python's default)."""
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
    """Train ``model`` on ``data.train`` by ``recipe``, evaluating on ``data.val`` and
    ``data.test`` after every epoch.

    Inputs are normalized with the model's ``pretrained_cfg`` mean and std (with
    ``statistics="data"``, first set to ``data_statistics(data.train)``), and the config then
    records the input size trained at. ``iterations``/``epochs`` override the recipe's length
    (the schedule scales). The recipe's SGD optimizes the trainable parameters, or
    ``param_groups``; or pass an ``optimizer``. The schedule sets each group's lr times its
    ``lr_scale`` (default 1). ``on_epoch_end(row, model)`` runs after each epoch.

    ``out`` is the run directory (rank 0 writes it, locked while the run lasts): ``run.json``,
    ``spec.json``, ``recipe.json``, ``metrics.csv``, ``steps.csv``, ``state.pt`` and
    ``last.pt`` (saved each epoch, every ``save_every`` iterations or
    ``save_every_minutes``, and on Ctrl-C), ``best.pt``, ``final.pt``, ``curves.png``.
    ``resume=True`` continues from the last save, bit-identical on a CPU; a state, data or
    data configuration (statistics, input size, classes) other than the run's (``run.json``)
    is a :class:`RunDirectoryError` and nothing is written. Ctrl-C saves and
    raises :class:`TrainingInterrupted`; a non-finite loss raises :class:`TrainingError`.
    ``log`` receives the start-up and epoch lines (default: above the progress bar).
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"fit() takes a resnetlib ResNet; got {type(model).__name__}")
    if run_info is not None and not isinstance(run_info, Mapping):
        raise TypeError(f"run_info must be a mapping or None; got {type(run_info).__name__}")
    for name, value, kind in (("data", data, DataSplits), ("recipe", recipe, Recipe)):
        if not isinstance(value, kind):
            raise TypeError(f"fit() takes {name} as a {kind.__name__}; got {type(value).__name__}")
    if resume and out is None:
        raise ValueError("resume=True needs the run directory: pass out=")
    if optimizer is not None and param_groups is not None:
        raise ValueError("give optimizer or param_groups, not both")
    if recipe.no_decay_norm_bias and (optimizer is not None or param_groups is not None):
        raise ValueError(
            "recipe.no_decay_norm_bias makes fit's own parameter groups; with optimizer or "
            "param_groups, set each group's weight_decay (resnetlib.interop.param_groups("
            "no_decay_norm_bias=True) makes such groups)"
        )
    if statistics not in ("model", "data"):
        raise ValueError(f"statistics must be 'model' or 'data'; got {statistics!r}")
    check_int("seed", seed, 0, 2**63 - 1)  # as run.json's reader takes it back on resume
    check_int("log_every", log_every)
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"on_epoch_end must be callable or None; got {on_epoch_end!r:.100}")
    if save_every is not None:
        check_int("save_every", save_every)
    if save_every_minutes is not None and not (
        isinstance(save_every_minutes, (int, float)) and save_every_minutes > 0
    ):
        raise ValueError(
            f"save_every_minutes must be a number > 0 or None; got {save_every_minutes!r}"
        )
    # The data's classes and channels fit the model (training sets its names and image size),
    # checked before anything is written or set: the data's statistics must fit it too.
    check_classes_fit(model, data.classes, data.image_shape[0], data.train.name, label_names=False)
    if weights := weights_not_finite(model):  # else the first iteration's loss blames the lr
        raise ValueError(f"the starting weights {weights}; start from other weights")
    if len(data.train) < recipe.batch_size:  # so each rank's share holds one batch
        sizes = data.sizes()
        raise ValueError(
            f"the training split ({sizes['train']} images, after {sizes['val']} were held out "
            f"for validation) is smaller than one batch of {recipe.batch_size}; use a smaller "
            "batch size or validation split (recipe.batch_size and the data's val_size; "
            "--batch-size, --val-size)"
        )
    if statistics == "data":
        mean, std = data_statistics(data.train)
        set_data_config(model, {**model.pretrained_cfg, "mean": mean, "std": std})
    device = resolve_device(device)
    process = _process_group(device)
    record = None if out is None else RunDirectory(out)  # every rank reads, rank 0 writes
    run = record if process.rank == 0 else None
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
        state = None if record is None or not resume else record.resume_state()
        if state is not None and record is not None:
            trainer.resume(state, record)
        elif run is not None:  # a new run, or one stopped before its first save: start over
            trainer.start(run_info or {}, restart=resume)
        rank0 = process.rank == 0
        return trainer.run(
            on_epoch_end,
            (run_info or {}).get("recipe_name", "custom recipe"),
            tqdm=importlib.import_module("tqdm.auto").tqdm if progress and rank0 else None,
            log=log if rank0 else None,
            log_every=log_every,
            save_every=(
                save_every,
                None if save_every_minutes is None else 60 * save_every_minutes,
            ),
        )
    finally:
        if run is not None:
            run.release()
        if process.started_group:
            dist.destroy_process_group()


Step = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
"""One training iteration on a batch at an lr; returns the batch's wrong count and size (0-d
tensors on the device). :meth:`Trainer.train_step`, or the alternative
``resnetlib.train.graphed`` gives, chosen once in set-up."""


class Trainer:
    """One run: set up in ``__init__``, then :meth:`run`: per epoch the iterations of
    :attr:`step`, then :meth:`end_epoch` (evaluate, record, save)."""

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
        world = process.world_size
        if recipe.batch_size % world:
            raise ValueError(
                f"Recipe.batch_size {recipe.batch_size} must divide among {world} processes"
            )
        self.model, self.data, self.process, self.device = model, data, process, device
        self.run_dir, self.seed = run, seed
        # What is recorded is what was used: the split actually held out, the memory format.
        channels_last = (
            device.type == "cpu" if recipe.channels_last is None else recipe.channels_last
        )
        self.recipe = recipe = replace(
            recipe, val_size=data.sizes()["val"], channels_last=channels_last
        )
        # The data configuration records the input size it trains at (uncropped), the classes.
        reduction = model.feature_info[-1]["reduction"] if model.feature_info else 1
        _, height, width = data.image_shape
        trained = {
            "input_size": data.image_shape,
            "pool_size": (math.ceil(height / reduction), math.ceil(width / reduction)),
            "crop_pct": 1.0,
            "crop_mode": "squash",  # load_data resizes whole images, stretching other aspects
            "num_classes": model.num_classes,
            "label_names": list(data.classes),
        }
        set_data_config(model, {**model.pretrained_cfg, **trained})
        torch.manual_seed(seed)
        model.to(device)
        if channels_last:
            # torch 2.13's stubs need this ignore, 2.14's do not (hence unused-ignore)
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload, unused-ignore]
        self.loader, self.eval_loaders = self._loaders()
        self.plan = recipe.resolved(len(self.loader), iterations=iterations, epochs=epochs)
        self.length = {"iterations": iterations, "epochs": epochs}
        own = optimizer is None  # the recipe's SGD, over param_groups or every trainable one
        if optimizer is None:
            params: Any = param_groups
            if params is None and recipe.no_decay_norm_bias:
                params = make_param_groups(model, lr=recipe.lr, no_decay_norm_bias=True)
            elif params is None:
                params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.SGD(
                params,
                lr=recipe.lr,
                momentum=recipe.momentum,
                nesterov=recipe.nesterov,
                weight_decay=recipe.weight_decay,
            )
        self.optimizer = optimizer
        self.ema: Any = None
        if recipe.ema_decay is not None:
            from torch.optim import swa_utils

            ema_fn: Any = swa_utils.get_ema_multi_avg_fn  # untyped in torch
            self.ema = swa_utils.AveragedModel(
                model, multi_avg_fn=ema_fn(recipe.ema_decay), use_buffers=True
            )
        self.amp_dtype = _AUTOCAST_DTYPES.get(recipe.autocast or "")
        self.autocast: AbstractContextManager[Any] = nullcontext()  # re-entered by each step
        if self.amp_dtype is not None:
            self.autocast = torch.autocast(device.type, dtype=self.amp_dtype)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.train_module: nn.Module = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_module = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if recipe.compile:
            self.train_module = torch.compile(self.train_module)  # type: ignore[assignment]
        # Progress, saved and restored as one (state()).
        self.iteration, self.epoch, self.elapsed, self.epoch_seconds = 0, 0, 0.0, 0.0
        self.warmed_up = recipe.warmup_lr is None
        self.history: list[dict[str, float]] = []
        self.steps: list[dict[str, float]] = []
        self.best_val = math.inf
        self.sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, wrong, images
        self.logged = torch.zeros_like(self.sums)  # the sums at the last logging point
        self.run_id: str | None = None  # run.json's, saved in state.pt: whose state it is
        self.resumed = False  # continued from a save (resume)
        self.shown = -math.inf  # when the progress bar's values were last set
        self.step, self.note = self._choose_step(own_optimizer=own)

    # -- set-up ----------------------------------------------------------------------------

    def _loaders(self) -> tuple[DeviceLoader, dict[str, DeviceLoader]]:
        """The training loader (this rank's share, shuffled, augmented) and the evaluation
        loaders of the val (when held out) and test splits."""
        data, recipe, process = self.data, self.recipe, self.process
        mean, std = normalization(self.model.pretrained_cfg, self.model.spec.in_channels)
        common: dict[str, Any] = {
            "device": self.device,
            "mean": mean,
            "std": std,
            "channels_last": recipe.channels_last,
        }
        loader = DeviceLoader(
            data.train,
            batch_size=recipe.batch_size // process.world_size,
            augment=recipe.augment,
            shuffle=True,
            drop_last=True,
            seed=self.seed,
            rank=process.rank,
            world_size=process.world_size,
            **common,
        )
        evaluated = {"test": DeviceLoader(data.test, batch_size=_EVAL_BATCH, **common)}
        if data.val is not None:
            evaluated["val"] = DeviceLoader(data.val, batch_size=_EVAL_BATCH, **common)
        return loader, evaluated

    def _choose_step(self, *, own_optimizer: bool) -> tuple[Step, str]:
        """The step the loop runs, chosen once: :meth:`train_step`, or where the recipe asks
        for CUDA graphs the graphed one (``graphed.choose()``, with a one-line note when it
        cannot apply). The one seam for code that has not run where it is meant to."""
        asked = self.recipe.cuda_graphs
        if asked is False or (asked is None and self.device.type != "cuda"):
            return self.train_step, ""
        from . import graphed

        replayed, note = graphed.choose(self, own_optimizer=own_optimizer)
        return replayed or self.train_step, note

    @property
    def evaluated(self) -> ResNet:
        """The model that is scored and saved: the EMA copy when there is one."""
        module = self.model if self.ema is None else self.ema.module
        assert isinstance(module, ResNet)
        return module

    # -- the run directory -----------------------------------------------------------------

    def start(self, run_info: Mapping[str, Any], *, restart: bool = False) -> None:
        """Describe a new run in its directory before the first iteration (``restart``: one
        that stopped before its first save)."""
        run = self.run_dir
        assert run is not None
        if not restart:
            run.check_new()
        run.write_json("spec.json", self.model.spec.to_json())
        # The recipe as followed: its length, milestones and warm-up as run, so that
        # ``--recipe DIR/recipe.json`` repeats the run (resolving a plan changes nothing).
        run.write_json(
            "recipe.json", replace(self.plan, cuda_graphs=self.recipe.cuda_graphs).to_json()
        )
        self.run_id = secrets.token_hex(8)
        run.write_info(
            {
                **run_info,
                "run_id": self.run_id,
                "resnetlib": installed_version(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **self._fed(),
                "split": self.data.sizes(),
                "seed": self.seed,
                "length": self.length,
                "iterations": self.plan.iterations,
                "iterations_per_epoch": len(self.loader),
            }
        )

    def _fed(self) -> dict[str, Any]:
        """What ``run.json`` records of the data and how the model is fed, as resume compares."""
        return {
            "data": dict(self.data.source or {"data": self.data.train.name}),
            "classes": list(self.data.classes),
            "pretrained_cfg": json.loads(config_to_json(self.model.pretrained_cfg)),
        }

    def state(self) -> dict[str, Any]:
        """The trainer's state as ``state.pt`` holds it (beside the model's weights)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "run": self.run_id,
            "plan": self.plan.to_json(),
            "spec": self.model.spec.to_json(),  # the network and its feeding, as resume checks
            "fed": self._fed(),
            **{name: getattr(self, name) for name in _PROGRESS},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "loader": self.loader.state_dict(),
            "rng": rng,
            "history": self.history,
            "steps": self.steps,
            "sums": self.sums.cpu(),
            "logged": self.logged.cpu(),
        }

    def resume(self, state: Mapping[str, Any], run: RunDirectory) -> None:
        """Continue from the run's last save (every rank reads rank 0's files), once
        ``check_resume()`` found it this run's: else nothing is applied or written."""
        path = run.path / "state.pt"
        info = run.read_info()
        self.run_id = info.get("run_id")
        check_same_data(info, self._fed(), run.info_path)
        expected = {**self.state(), "model": self.model.state_dict()}
        check_resume(state, expected, path, len(self.loader))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.loader.load_state_dict(state["loader"])
            torch.set_rng_state(state["rng"]["torch"])
            if self.device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as error:
            raise RunDirectoryError(
                f"{path}: a trainer state that does not fit this run ({first_line(error, 300)}); "
                "restore this "
                "run's state.pt, or start a new run in another --out"
            ) from None
        self.resumed = True
        for name in _PROGRESS:
            setattr(self, name, state[name])
        self.history = [dict(row) for row in state["history"]]
        self.steps = [dict(row) for row in state["steps"]]
        self.sums.copy_(state["sums"])  # in place: a graphed step adds to this tensor
        self.logged.copy_(state["logged"])

    def save(self) -> None:
        """Save the model and the trainer state (rank 0) as one unit, then the metrics (so
        that metrics without a state mean the state was lost, never that a save stopped)."""
        if self.run_dir is None:
            return
        # A save never replaces the last good checkpoint with non-finite weights (a periodic
        # save comes between the checks of the logged loss): one device sync for them all
        finite = [self.sums[0].isfinite(), *(p.isfinite().all() for p in self.model.parameters())]
        if not bool(torch.stack(finite).all()):
            self._non_finite(self.epoch + 1)
        metadata = {"epoch": self.epoch, "iteration": self.iteration}
        self.run_dir.save_state(self.model, self.state(), metadata=metadata)
        self.run_dir.write_metrics(self.history, self.steps)

    # -- epochs ----------------------------------------------------------------------------

    def run(
        self,
        on_epoch_end: Callable[[dict[str, float], ResNet], None] | None,
        recipe_name: str,
        *,
        tqdm: Any,
        log: Callable[[str], None] | None,
        log_every: int,
        save_every: tuple[int | None, float | None],
    ) -> FitResult:
        """Train to the plan's end: per epoch, the iterations (lr, step, bookkeeping, saves
        due), then :meth:`end_epoch`; then save the final model. Lines go to ``log``, else
        above the ``tqdm`` bar; ``save_every`` is (iterations, seconds)."""
        total = self.plan.iterations
        assert total is not None
        self.tqdm, self.log, self.save_every = tqdm, log, save_every
        self.saved_at = time.monotonic()  # for save_every's seconds
        path = None if self.run_dir is None else self.run_dir.path
        if self.resumed and self.iteration >= total and path and (path / "final.pt").is_file():
            done = f"iteration {self.iteration:,} of {total:,}"
            self.write(f"{path}: the run is finished ({done}); nothing to resume, nothing written")
            return self.result()
        self.write(self.startup_line(recipe_name))
        if self.note:
            self.write(self.note)
        self.bar = None
        if tqdm is not None:
            self.bar = tqdm(total=total, initial=self.iteration, unit="it", dynamic_ncols=True)
        try:
            with _stop_on_interrupt(self.process.world_size == 1 and path is not None) as stop:
                while self.iteration < total:
                    self.loader.set_epoch(self.epoch)
                    self.model.train()
                    started = time.perf_counter()
                    for x, y in self.loader:
                        lr = self.plan.lr_at(self.iteration, self.warmed_up)
                        batch = self.step(x, y, lr)
                        self.iteration += 1
                        if not self.warmed_up:
                            self.warmed_up = self._warmup_over(batch)
                        if self.bar is not None:
                            self._advance(self.bar, lr)
                        if self.iteration % log_every == 0 or self.iteration in (1, total):
                            self._log(lr)
                        if self.iteration >= total:
                            break
                        if stop.is_set() or self._save_due():
                            self.epoch_seconds += time.perf_counter() - started
                            started = time.perf_counter()
                            self.save()
                            if stop.is_set():  # Ctrl-C: saved, now stop
                                raise TrainingInterrupted(self.iteration, path)
                            self.saved_at = time.monotonic()
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)  # the epoch's time is the device's
                    self.epoch_seconds += time.perf_counter() - started
                    row = self.end_epoch()
                    self.write(_epoch_line(row))
                    if on_epoch_end is not None:
                        on_epoch_end(dict(row), self.evaluated)
                    self.saved_at = time.monotonic()
        finally:
            if self.bar is not None:
                self.bar.close()
        if self.run_dir is not None and self.history:  # final.pt last: it marks the run done
            self.run_dir.plot(model_label(self.evaluated), self.history, self.steps)
            self.run_dir.save_model("final.pt", self.evaluated, self.history[-1])
        return self.result()

    def startup_line(self, recipe_name: str) -> str:
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
            where = "(no run directory)" if self.run_dir is None else self.run_dir.path
            return f"resuming {where} at iteration {self.iteration:,} of {total:,}: {what}"
        where = "" if self.run_dir is None else f"; run directory {self.run_dir.path}"
        scaled = scaling_note(self.recipe, self.plan, len(self.loader))
        scaled = f"; {scaled}" if scaled else ""
        return (
            f"{what}; {len(self.loader)} iterations an epoch, {total:,} in all ({recipe_name}, "
            f"batch {self.recipe.batch_size}{scaled}){where}"
            f"{_bf16_hint(self.device, self.recipe)}"
        )

    def write(self, line: str) -> None:
        """A line of the run to ``log``, else above the progress bar (on its stream,
        stderr, so that they keep their order), else nowhere."""
        if self.log is not None:
            self.log(line)
        elif self.tqdm is not None:
            self.tqdm.write(line, file=sys.stderr)

    def _save_due(self) -> bool:
        """Whether to save inside the epoch: every ``save_every`` iterations or seconds."""
        iterations, seconds = self.save_every
        if iterations is not None and self.iteration % iterations == 0:
            return True
        return seconds is not None and time.monotonic() - self.saved_at >= seconds

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration: the lr set, forward, loss, backward, step, EMA, running sums."""
        optimizer, scaler = self.optimizer, self.scaler
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with self.autocast:
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
        return wrong, count

    def _warmup_over(self, batch: tuple[torch.Tensor, torch.Tensor]) -> bool:
        """``Recipe.warmup_over`` (the one rule) on the last batch's error, all ranks'."""
        wrong_count = torch.stack(batch)
        if self.process.world_size > 1:
            dist.all_reduce(wrong_count)
        return self.plan.warmup_over(self.iteration, (wrong_count[0] / wrong_count[1]).item())

    def _advance(self, bar: Any, lr: float) -> None:
        """Move the bar on one iteration, with loss, error and lr since the last logging point:
        set every half second (a read of the device's sums), drawn as tqdm decides (the first
        at once)."""
        now = time.monotonic()
        if now - self.shown < 0.5 and self.iteration > 1:
            bar.update(1)
            return
        self.shown = now
        loss, wrong, count = (self.sums - self.logged).tolist()
        if count:
            shown = {"loss": f"{loss / count:.3f}", "err": f"{100 * wrong / count:.1f}%"}
            bar.set_postfix({**shown, "lr": f"{lr:.3g}"}, refresh=False)
        bar.update(1)
        if self.iteration == 1:
            bar.refresh()  # tqdm skips a draw within 0.1 s of the last one

    def _log(self, lr: float) -> None:
        loss, wrong, count = (self.sums - self.logged).tolist()
        self.logged = self.sums.clone()
        if self.process.world_size == 1 and not math.isfinite(loss):  # ranks: at epoch end
            self._non_finite(self.epoch + 1)
        if count:
            row = {"iteration": float(self.iteration), "lr": lr}
            self.steps.append({**row, "train_loss": loss / count, "train_error": wrong / count})

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
            self._non_finite(self.epoch)  # the epoch just ended
        started = time.perf_counter()
        scores = {
            name: _score(self.evaluated, loader, self.autocast, finite=False)
            for name, loader in self.eval_loaders.items()
        }
        self.elapsed += self.epoch_seconds + time.perf_counter() - started
        val, test = scores.get("val"), scores["test"]
        row = {
            "epoch": float(self.epoch),
            "iteration": float(self.iteration),
            "lr": self.plan.lr_at(max(self.iteration - 1, 0), self.warmed_up),
            "train_loss": loss_sum / count,
            "train_error": wrong_sum / count,
            "val_loss": math.nan if val is None else val.loss,
            "val_error": math.nan if val is None else val.error,
            "test_loss": test.loss,
            "test_error": test.error,
            "images_per_s": count / max(self.epoch_seconds, 1e-9),
            "elapsed_s": self.elapsed,
        }
        self.history.append(row)
        self.sums.zero_()
        self.logged.zero_()
        self.epoch_seconds = 0.0
        if val is not None and val.error < self.best_val:
            self.best_val = val.error
            if self.run_dir is not None:  # before the state that records it as best
                self.run_dir.save_model("best.pt", self.evaluated, row)
        self.save()
        return row

    def result(self) -> FitResult:
        """The run's result as it stands (nothing written)."""
        return FitResult(
            metrics=dict(self.history[-1]) if self.history else {},
            history=tuple(self.history),
            run_dir=None if self.run_dir is None else self.run_dir.path,
            model=self.evaluated,
        )

    def _non_finite(self, epoch: int) -> None:
        last = None if self.run_dir is None else self.run_dir.path / "last.pt"
        kept = (
            f"; the last good checkpoint is {last}"
            if last is not None and last.exists()
            else "; no checkpoint was written before it"
        )
        raise TrainingError(
            f"the training loss became NaN or infinite by iteration {self.iteration} (epoch "
            f"{epoch}){kept}. Lower the lr, add a warm-up, or turn off fp16 autocast."
        )


def _epoch_line(row: Mapping[str, float]) -> str:
    val = "" if math.isnan(row["val_error"]) else f", val error {100 * row['val_error']:.2f}%"
    return (
        f"epoch {int(row['epoch'])}: train loss {row['train_loss']:.4f} error "
        f"{100 * row['train_error']:.2f}%{val}, test error {100 * row['test_error']:.2f}%"
    )


def model_label(model: ResNet) -> str:
    """A short name for plots: ``ResNet-56``, ``plain-20`` (the spec's depth)."""
    return f"{'plain' if model.spec.shortcut == 'none' else 'ResNet'}-{model.depth}"
