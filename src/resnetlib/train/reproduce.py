"""Experiments of the paper, small enough for a laptop CPU.

:func:`degradation` is Figure 6 on the built-in digits: plain-20 and plain-56 against
ResNet-20 and ResNet-56, one recipe, one figure. The deeper plain net trains worse; the
deeper residual net does not.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..interop.files import atomic_write
from ..models.zoo import create_model
from .data import load_data
from .loop import fit, model_label
from .plot import plot_runs
from .recipe import DIGITS, Recipe
from .run_dir import RunDirectory

__all__ = ["DEGRADATION_MODELS", "MIN_DEGRADATION_EPOCHS", "DegradationReport", "degradation"]

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
        marks = (1, 5)
        head = ["model", *(f"train err, epoch {m}" for m in marks)]
        head += ["final train err", "final test err"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, rows in self.runs.items():
            by_epoch = {int(row["epoch"]): row for row in rows}
            cells = [label]
            for mark in marks:
                row = by_epoch.get(mark)
                cells.append("" if row is None else f"{100 * row['train_error']:.1f}%")
            cells.append(f"{100 * rows[-1]['train_error']:.1f}%")
            cells.append(f"{100 * rows[-1]['test_error']:.1f}%")
            lines.append("| " + " | ".join(cells) + " |")
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
    """Train ``models`` on the built-in digits by one recipe and draw Figure 6.

    Each model trains in ``out/<name>/`` (a run directory of :func:`fit`; an interrupted
    one resumes) from ``torch.manual_seed(seed)``; ``out/degradation.png`` draws them all.
    ``zero_init_residual=True`` also trains ResNet-56 with its residual branches' last norm
    at zero (``out/resnet56-zero-init/``, drawn against ResNet-56 in ``zero-init.png``).
    ``announce(index, label, run_dir)`` is called as each model starts (index from 1).
    """
    root = Path(out)
    data = load_data("digits", image_size=image_size, val_size=recipe.val_size, seed=seed)
    shape: dict[str, Any] = {
        "num_classes": len(data.train.classes),
        "in_channels": int(data.train.images.shape[1]),
    }
    jobs = [(name, model_label(create_model(name, **shape)), name, False) for name in models]
    if zero_init_residual:
        jobs.append(("resnet56", "ResNet-56, zero-init", "resnet56-zero-init", True))
    runs: dict[str, tuple[dict[str, float], ...]] = {}
    for index, (name, label, directory, zero_init) in enumerate(jobs, start=1):
        torch.manual_seed(seed)
        model = create_model(name, zero_init_residual=zero_init, **shape)
        run_dir = root / directory
        if announce is not None:
            announce(index, label, run_dir)
        result = fit(
            model,
            data,
            dataclasses.replace(recipe, epochs=epochs, iterations=None),
            out=run_dir,
            device=device,
            resume=RunDirectory(run_dir).holds_run(),
            progress=progress,
            seed=seed,
        )
        runs[label] = result.history
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
    atomic_write(root / "table.md", lambda file: file.write((report.table() + "\n").encode()))
    return report
