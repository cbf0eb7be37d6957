"""Training and reproduction: data, the paper's recipe, the loop, plots and the commands.

``import resnetlib`` does not import this subpackage. Its names load on first use (so the
``resnetlib`` command stays light), and none of them loads tqdm, matplotlib, Pillow or
scikit-learn (the ``train`` extra) before it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import DataError, DataSplits, ImageDataset, load_data
    from .loop import (
        METRICS,
        EvalResult,
        FitResult,
        TrainingError,
        TrainingInterrupted,
        check_data_fits,
        evaluate,
        fit,
        read_metrics,
    )
    from .pipeline import Augment, DeviceLoader, channel_stats, pixel_mean
    from .plot import plot_run, plot_runs
    from .recipe import (
        DIGITS,
        FINETUNE,
        PAPER_CIFAR,
        PAPER_CIFAR_WARMUP,
        Recipe,
        paper_recipe,
        recipe_for,
    )
    from .run_dir import RunDirectory, RunDirectoryError

_MODULES = {
    "data": ("DataError", "DataSplits", "ImageDataset", "load_data"),
    "loop": ("METRICS", "EvalResult", "FitResult", "TrainingError", "TrainingInterrupted",
             "check_data_fits", "evaluate", "fit", "read_metrics"),
    "pipeline": ("Augment", "DeviceLoader", "channel_stats", "pixel_mean"),
    "plot": ("plot_run", "plot_runs"),
    "run_dir": ("RunDirectory", "RunDirectoryError"),
    "recipe": ("DIGITS", "FINETUNE", "PAPER_CIFAR", "PAPER_CIFAR_WARMUP", "Recipe", "paper_recipe",
               "recipe_for"),
}  # fmt: skip
_HOME: dict[str, str] = {}  # each name's module
for _module, _names in _MODULES.items():
    _HOME.update(dict.fromkeys(_names, _module))

__all__ = [
    "DIGITS",
    "FINETUNE",
    "METRICS",
    "PAPER_CIFAR",
    "PAPER_CIFAR_WARMUP",
    "Augment",
    "DataError",
    "DataSplits",
    "DeviceLoader",
    "EvalResult",
    "FitResult",
    "ImageDataset",
    "Recipe",
    "RunDirectory",
    "RunDirectoryError",
    "TrainingError",
    "TrainingInterrupted",
    "channel_stats",
    "check_data_fits",
    "evaluate",
    "fit",
    "load_data",
    "paper_recipe",
    "pixel_mean",
    "plot_run",
    "plot_runs",
    "read_metrics",
    "recipe_for",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
