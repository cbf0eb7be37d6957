"""Training curves: the paper's Figure 6 (:func:`plot_runs`) and one run's ``curves.png``
(:func:`plot_run`). Needs matplotlib (the ``train`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..common import PathLike, optional_import
from ..files import atomic_write

__all__ = ["plot_run", "plot_runs"]


def plot_runs(
    runs: Mapping[str, Sequence[Mapping[str, float]]], path: PathLike, *, title: str | None = None
) -> Path:
    """Draw each run's ``train_error`` (dashed) and ``test_error`` (solid) against iterations to
    ``path`` (returned); ``runs`` maps a label (``"ResNet-56"``) to its ``fit`` metrics rows."""
    with _figure(path, figsize=(6, 4), dpi=100) as (_, axes):
        for i, (label, rows) in enumerate(runs.items()):
            xs = [row["iteration"] for row in rows]
            train, test = ([100 * row[k] for row in rows] for k in ("train_error", "test_error"))
            marker = "o" if len(rows) == 1 else None  # one epoch: a point, not an empty line
            axes.plot(xs, train, "--", color=f"C{i}", linewidth=1, marker=marker)  # C<i>: cycle's
            axes.plot(xs, test, "-", color=f"C{i}", linewidth=1.5, label=label, marker=marker)
        axes.set(xlabel="iterations", ylabel="error (%)")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(title="dashed: training, solid: test", fontsize="small", title_fontsize="small")
        if title:
            axes.set_title(title)
    return Path(path)


@contextmanager
def _figure(path: PathLike, *grid: int, **options: Any) -> Iterator[tuple[Any, Any]]:
    """A new figure and its axes, saved to ``path`` atomically as PNG after the block."""
    needs = "plotting needs matplotlib"
    optional_import("matplotlib", needs, "train").use("Agg")
    plt = optional_import("matplotlib.pyplot", needs, "train")
    figure, axes = plt.subplots(*grid, **options)
    try:
        yield figure, axes
        figure.tight_layout()
        atomic_write(Path(path), lambda file: figure.savefig(file, format="png"))
    finally:
        plt.close(figure)


def plot_run(
    label: str,
    history: Sequence[Mapping[str, float]],
    steps: Sequence[Mapping[str, float]],
    path: PathLike,
) -> Path:
    """Draw one run's ``metrics.csv`` and ``steps.csv`` rows to ``path`` (returned): error (%)
    and loss against iterations, and the learning rate."""
    with _figure(path, 1, 3, figsize=(13, 3.8), dpi=100) as (figure, (errors, losses, rates)):
        xs = [row["iteration"] for row in steps]
        errors.plot(xs, [100 * r["train_error"] for r in steps], lw=0.8, alpha=0.7, label="train")
        losses.plot(xs, [r["train_loss"] for r in steps], lw=0.8, alpha=0.7, label="train")
        rates.plot(xs, [r["lr"] for r in steps], lw=1.2, drawstyle="steps-post")  # held until set
        epochs = [row["iteration"] for row in history]
        for split, style in (("val", "s-"), ("test", "o-")):
            if any(not math.isnan(row[f"{split}_error"]) for row in history):
                errors.plot(
                    epochs, [100 * r[f"{split}_error"] for r in history], style, ms=3, label=split
                )
                losses.plot(epochs, [r[f"{split}_loss"] for r in history], style, ms=3, label=split)
        for axes, name in ((errors, "error (%)"), (losses, "loss"), (rates, "learning rate")):
            axes.set(xlabel="iterations", ylabel=name)
            axes.grid(alpha=0.3)
        errors.set_ylim(bottom=0)
        errors.legend(fontsize="small")
        if any(row["lr"] > 0 for row in steps):
            rates.set_yscale("log")
        figure.suptitle(label)
    return Path(path)
