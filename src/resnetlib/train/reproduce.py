"""The paper's experiments: ``degradation`` (Figure 6 on the built-in digits) and ``table6``
(Table 6: CIFAR-10 test error of ResNet-20 to 110 over seeds, beside the paper's and akamaster's).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..core.build import build
from ..core.data_config import set_data_config
from ..core.spec import ResNetSpec
from ..files import atomic_write
from ..models.zoo import create_model, model_spec
from ..validate import check_int
from .data import DataError, DataSplits, data_source, load_data
from .loop import fit, model_label
from .plot import plot_runs
from .recipe import DIGITS, Recipe, paper_label, recipe_for
from .run_dir import (
    RunDirectory,
    RunDirectoryError,
    read_metrics,
    read_record,
    record_differences,
)

__all__ = [
    "AKAMASTER_TABLE6",
    "DEGRADATION_MODELS",
    "MIN_DEGRADATION_EPOCHS",
    "PAPER_TABLE6",
    "TABLE6_MODELS",
    "DegradationReport",
    "Table6Report",
    "Table6Run",
    "degradation",
    "table6",
]

DEGRADATION_MODELS = ("plain20", "plain56", "resnet20", "resnet56")
MIN_DEGRADATION_EPOCHS = 10
"""Fewer epochs than this on the digits rarely separate plain-56 from plain-20."""


@dataclass(frozen=True)
class DegradationReport:
    """Each run's metrics rows by label, the figure and the output directory."""

    out: Path
    figure: Path
    runs: dict[str, tuple[dict[str, float], ...]]

    def table(self) -> str:
        """A Markdown table: training error after epochs 1, 5 and the last; test error."""
        head = ["model", "train err, epoch 1", "train err, epoch 5", "final train err"]
        lines = ["| " + " | ".join(head) + " | final test err |", "|" + "---|" * 5]
        for label, rows in self.runs.items():
            by_epoch = {int(row["epoch"]): row for row in rows}
            picked = (by_epoch.get(1), by_epoch.get(5), rows[-1])
            cells = ["" if row is None else f"{100 * row['train_error']:.1f}%" for row in picked]
            test = f"{100 * rows[-1]['test_error']:.1f}%"
            lines.append(f"| {label} | {' | '.join(cells)} | {test} |")
        return "\n".join(lines)


def degradation(
    out: str | os.PathLike[str] = "runs/degradation",
    epochs: int = 30,
    *,
    device: torch.device | str | None = None,
    seed: int = 0,
    zero_init_residual: bool = False,
    models: Sequence[str] = DEGRADATION_MODELS,
    recipe: Recipe = DIGITS,
    image_size: int = 16,
    progress: bool = True,
    announce: Callable[[int, str, Path], None] | None = None,
) -> DegradationReport:
    """Train ``models`` on the built-in digits by one recipe, each in the :func:`fit` run
    directory ``out/<name>/`` from ``torch.manual_seed(seed)``, and draw Figure 6 to
    ``out/degradation.png``; ``zero_init_residual=True`` adds a zero-init ResNet-56 run and
    ``zero-init.png``. ``announce(index, label, run_dir)`` is called as each model starts."""
    root = Path(out)
    data = load_data("digits", image_size=image_size, val_size=recipe.val_size, seed=seed)
    shape: dict[str, Any] = {"num_classes": len(data.classes), "in_channels": data.image_shape[0]}
    for name in models:
        model_spec(name, **shape)  # an unknown name is refused before anything trains
    jobs = [(name, False) for name in models] + [("resnet56", True)] * zero_init_residual
    runs: dict[str, tuple[dict[str, float], ...]] = {}
    for index, (name, zero_init) in enumerate(jobs, start=1):
        torch.manual_seed(seed)
        model = create_model(name, zero_init_residual=zero_init, **shape)
        label, run_dir = model_label(model), root / name
        if zero_init:
            label, run_dir = f"{label}, zero-init", root / f"{name}-zero-init"
        if announce is not None:
            announce(index, label, run_dir)
        runs[label] = fit(
            model,
            data,
            dataclasses.replace(recipe, epochs=epochs, iterations=None),
            out=run_dir,
            device=device,
            resume=RunDirectory(run_dir).holds_run(),
            progress=progress,
            seed=seed,
            statistics=_run_statistics(model, run_dir),
        ).history
    figure = plot_runs(
        {label: rows for label, rows in runs.items() if "zero-init" not in label},
        root / "degradation.png",
        title=f"digits {image_size}x{image_size}: plain vs residual",
    )
    if zero_init_residual:
        plot_runs(
            {label: rows for label, rows in runs.items() if label.startswith("ResNet-56")},
            root / "zero-init.png",
            title="ResNet-56 with and without zero_init_residual",
        )
    report = DegradationReport(out=root, figure=figure, runs=runs)
    atomic_write(root / "table.md", (report.table() + "\n").encode())
    return report


# -- Table 6 ------------------------------------------------------------------------------

TABLE6_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
PAPER_TABLE6 = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97,
                "resnet110": 6.43}  # fmt: skip
"""He et al. (2015), Table 6: CIFAR-10 test error (%); ResNet-110 is the best of 5 runs."""
AKAMASTER_TABLE6 = {"resnet20": 8.27, "resnet32": 7.37, "resnet44": 6.90, "resnet56": 6.61,
                    "resnet110": 6.32}  # fmt: skip
"""akamaster/pytorch_resnet_cifar10's README: test error (%), trained on all 50k images."""


@dataclass(frozen=True)
class Table6Run:
    """One model and seed: its final test error (a fraction), the seconds its run took (summed
    over resumes), and whether this call trained it (else it was read, finished already)."""

    model: str
    seed: int
    run_dir: Path
    test_error: float
    seconds: float
    iterations: int
    trained: bool


@dataclass(frozen=True)
class Table6Report:
    """Every run of :func:`table6`, its models' parameter counts (by ``spec.json``), its files."""

    out: Path
    runs: tuple[Table6Run, ...]
    parameters: dict[str, int]
    val_size: int = 0

    @property
    def markdown_path(self) -> Path:
        return self.out / "table6.md"

    @property
    def csv_path(self) -> Path:
        return self.out / "table6.csv"

    def rows(self) -> list[dict[str, Any]]:
        """One row a model (errors in %, NaN where undefined), in the order trained."""
        rows = []
        for name, count in self.parameters.items():
            runs = [run for run in self.runs if run.model == name]
            errors = [100 * run.test_error for run in runs]
            seconds = [run.seconds for run in runs]
            rows.append(
                {
                    "model": name,
                    "parameters": count,
                    "seeds": len(runs),
                    "test_error_mean": statistics.fmean(errors) if errors else math.nan,
                    "test_error_std": statistics.stdev(errors) if len(errors) > 1 else math.nan,
                    "test_error_min": min(errors, default=math.nan),
                    "paper": PAPER_TABLE6.get(name, math.nan),
                    "akamaster": AKAMASTER_TABLE6.get(name, math.nan),
                    "seconds_mean": statistics.fmean(seconds) if seconds else math.nan,
                    "seconds_total": sum(seconds),
                }
            )
        return rows

    def table(self) -> str:
        """Table 6 as Markdown beside the paper's and akamaster's, then each run's error, time."""

        def pct(value: float) -> str:
            return "" if math.isnan(value) else f"{value:.2f}%"

        lines = [
            "| model | parameters | seeds | test error, mean ± std | min | paper | akamaster "
            "| time per run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows():
            spread = "" if math.isnan(row["test_error_std"]) else f" ± {row['test_error_std']:.2f}"
            lines.append(
                f"| {model_label_for(row['model'])} | {row['parameters']:,} | {row['seeds']} | "
                f"{pct(row['test_error_mean'])}{spread} | {pct(row['test_error_min'])} | "
                f"{pct(row['paper'])} | {pct(row['akamaster'])} | "
                f"{_duration(row['seconds_mean'])} |"
            )
        lines += ["", "| model | seed | test error | iterations | time | run directory |"]
        lines.append("|---|---:|---:|---:|---:|---|")
        for run in self.runs:
            lines.append(
                f"| {model_label_for(run.model)} | {run.seed} | {100 * run.test_error:.2f}% | "
                f"{run.iterations:,} | {_duration(run.seconds)} | {run.run_dir} |"
            )
        split = (
            f"Trained with {self.val_size:,} training images held out for validation (the "
            "paper's 45k/5k split at 5,000); akamaster's reproduction trains on all."
            if self.val_size
            else "Trained on all training images (no validation split), as akamaster's "
            "reproduction does; the paper held 5,000 out (45k/5k)."
        )
        return "\n".join([*lines, "", split])

    def csv_text(self) -> str:
        """The per-model rows as CSV (errors in %, empty where undefined)."""
        text, rows = io.StringIO(), self.rows()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            floats = {k: v for k, v in row.items() if isinstance(v, float)}
            writer.writerow(
                {**row, **{k: "" if math.isnan(v) else f"{v:.4f}" for k, v in floats.items()}}
            )
        return text.getvalue()


def model_label_for(name: str) -> str:
    """``resnet56`` -> ``ResNet-56`` (other names unchanged)."""
    digits = name.removeprefix("resnet")
    return f"ResNet-{digits}" if digits.isdecimal() else name


_TABLE6_DATA = "table6 reproduces the paper's CIFAR-10 table (cifar-10-batches-py)"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return ""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _run_statistics(model: Any, run_dir: Path) -> Literal["model", "data"]:
    """How ``fit`` sets ``model``'s statistics: a new run from its data, as ``train`` from
    scratch; a run resumed keeps those ``run.json`` recorded (earlier versions gave the digits
    CIFAR-10's), set on ``model`` here."""
    run = RunDirectory(run_dir)
    if not run.holds_run():
        return "data"
    recorded = run.read_info().get("pretrained_cfg") or {}
    kept = {key: recorded[key] for key in ("mean", "std") if key in recorded}
    set_data_config(model, {**model.pretrained_cfg, **kept})
    return "model"


def table6(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] = "runs/table6",
    *,
    models: Sequence[str] = TABLE6_MODELS,
    seeds: int = 1,
    iterations: int | None = None,
    val_size: int | None = None,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    cuda_graphs: bool | None = None,
    progress: bool = True,
    announce: Callable[[int, int, str, int, Path], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Table6Report:
    """Train each of ``models`` with seeds ``0 .. seeds-1`` (the outer loop) by ``recipe_for``
    on the CIFAR-10 at ``data`` (other data: ``DataError``); write ``out/table6.md`` and ``.csv``.

    Each run is a :func:`fit` run directory ``out/<model>-seed<s>/``: a finished one is read,
    an interrupted one resumes. ``val_size`` defaults to none held out (as akamaster; 5,000:
    the paper's split); ``iterations``, ``batch_size`` and ``cuda_graphs`` replace the recipe's.
    ``announce(index, total, model, seed, run_dir)`` is called as each run starts."""
    names = list(models)
    if not names:
        raise ValueError("table6 needs at least one model")
    if len(set(names)) != len(names):
        raise ValueError(f"table6 models must differ; got {names}")
    check_int("seeds", seeds, 1, 1000)
    root = Path(out)
    given = {"val_size": val_size or 0, "batch_size": batch_size, "cuda_graphs": cuda_graphs}
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    recipes = {name: dataclasses.replace(recipe_for(name), **changes) for name in names}
    parameters = dict.fromkeys(names, 0)  # each set by its runs below; unknown names failed above
    if str(data) == "digits":
        raise DataError(f"digits: the built-in digits, not CIFAR-10; {_TABLE6_DATA}")
    if not Path(data).is_dir():
        what = "not a directory" if os.path.lexists(data) else "no such data directory"
        raise DataError(f"{data}: {what}; {_TABLE6_DATA}")
    files = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    missing = [name for name in files if not (Path(data) / name).is_file()]
    if missing:  # CIFAR-100, an image folder: refused before anything is decoded or cached
        raise DataError(
            f"{data}: not CIFAR-10 (no {', '.join(missing[:3])}); {_TABLE6_DATA}, beside the "
            "paper's numbers: train other data with resnetlib train"
        )
    jobs = [(name, seed) for seed in range(seeds) for name in names]
    runs: list[Table6Run] = []
    splits: dict[int, DataSplits] = {}
    for index, (name, seed) in enumerate(jobs, start=1):
        recipe = recipes[name]
        run_dir = root / f"{name}-seed{seed}"
        plan = recipe.resolved(1, iterations=iterations)  # iterations: no epoch to count
        done = _finished(run_dir, plan, data)  # checked (and the data loaded) before announcing
        if done is None and seed not in splits:
            splits = {seed: load_data(data, val_size=recipe.val_size, seed=seed)}
            count = len(splits[seed].classes)  # files checked: CIFAR-10's layout, 3x32x32
            if count != 10:
                raise DataError(f"{data}: {count} classes, not CIFAR-10's 10; {_TABLE6_DATA}")
        if announce is not None:
            announce(index, len(jobs), name, seed, run_dir)
        trained = done is None
        if done is None:
            torch.manual_seed(seed)
            model = create_model(name, num_classes=10, in_channels=splits[seed].image_shape[0])
            fit(
                model,
                splits[seed],
                recipe,
                out=run_dir,
                device=device,
                resume=RunDirectory(run_dir).holds_run(),
                iterations=iterations,
                progress=progress,
                seed=seed,
                statistics=_run_statistics(model, run_dir),
                run_info=_table6_info(name, data, seed, iterations, recipe),
                log=log,
            )
            done = _finished(run_dir, plan, data)  # as recorded: a later call reads the same
            if done is None:
                raise RunDirectoryError(f"{run_dir}: the run ended without its final metrics")
        parameters[name] = _parameter_count(run_dir)  # as trained (its spec.json)
        runs.append(Table6Run(name, seed, run_dir, *done, trained=trained))
    report = Table6Report(root, tuple(runs), parameters, val_size=changes["val_size"])
    atomic_write(report.markdown_path, (report.table() + "\n").encode())
    atomic_write(report.csv_path, report.csv_text().encode())
    return report


def _parameter_count(run_dir: Path) -> int:
    spec = read_record(run_dir / "spec.json", ResNetSpec.from_dict, what="the model's spec")
    with torch.device("meta"):
        return sum(p.numel() for p in build(spec).parameters())


def _finished(
    run_dir: Path, plan: Recipe, data: str | os.PathLike[str]
) -> tuple[float, float, int] | None:
    """``(test_error, seconds, iterations)`` of a finished run in ``run_dir`` that followed
    ``plan`` on ``data`` (else ``RunDirectoryError``), or None."""
    run = RunDirectory(run_dir)
    metrics = run_dir / "metrics.csv"
    if not (run.holds_run() and (run_dir / "final.pt").is_file() and metrics.is_file()):
        return None
    rows = read_metrics(metrics, columns=("iteration", "test_error", "elapsed_s"), own=True)
    info = run.read_info()
    recorded_data = info.get("data")
    if not isinstance(recorded_data, dict):
        recorded_data = {}
    if differ := record_differences(recorded_data, {"data": data_source(data)}, ("data",)):
        raise RunDirectoryError(
            f"{run_dir} holds a finished run on other data ({differ[0]}); pass the same --data "
            "or another --out"
        )
    recorded = info.get("iterations")
    if recorded != plan.iterations:
        raise RunDirectoryError(
            f"{run_dir} holds a finished run of {recorded} iterations and {plan.iterations} "
            "were asked; pass the same --iterations or another --out"
        )
    followed = read_record(run_dir / "recipe.json", Recipe.from_dict, what="the recipe")
    asked = {key: value for key, value in plan.to_dict().items() if value is not None}
    differ = record_differences(followed.to_dict(), asked, asked)  # None: the device's default
    if differ:
        raise RunDirectoryError(
            f"{run_dir} holds a finished run of another recipe ({'; '.join(differ)}); pass "
            "the options it was run with, or another --out"
        )
    if not rows or int(rows[-1]["iteration"]) != recorded:
        return None
    return rows[-1]["test_error"], rows[-1]["elapsed_s"], int(rows[-1]["iteration"])


def _table6_info(
    name: str, data: str | os.PathLike[str], seed: int, iterations: int | None, recipe: Recipe
) -> dict[str, Any]:
    """``run.json``'s command entry, so that ``resnetlib train --out DIR --resume`` works."""
    given: dict[str, Any] = {"model": name, "data": str(data), "seed": seed, "recipe": "paper"}
    if iterations is not None:
        given["iterations"] = iterations
    return {
        "command": {"given": given, "model": {"name": name}, "freeze": None},
        "recipe_name": paper_label(recipe),
        "experiment": "table6",
    }
