"""Training and reproduction. ``import resnetlib`` does not import this subpackage; its names
load on first use, and none loads tqdm, matplotlib, Pillow or scikit-learn (the ``train`` extra)
before it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names of _MODULES, typed
    from .data import DataError as DataError
    from .data import DataSplits as DataSplits
    from .data import ImageDataset as ImageDataset
    from .data import load_data as load_data
    from .loop import METRICS as METRICS
    from .loop import EvalResult as EvalResult
    from .loop import FitResult as FitResult
    from .loop import TrainingError as TrainingError
    from .loop import TrainingInterrupted as TrainingInterrupted
    from .loop import check_data_fits as check_data_fits
    from .loop import evaluate as evaluate
    from .loop import fit as fit
    from .loop import read_metrics as read_metrics
    from .pipeline import Augment as Augment
    from .pipeline import DeviceLoader as DeviceLoader
    from .pipeline import channel_stats as channel_stats
    from .pipeline import pixel_mean as pixel_mean
    from .plot import plot_run as plot_run
    from .plot import plot_runs as plot_runs
    from .recipe import DIGITS as DIGITS
    from .recipe import FINETUNE as FINETUNE
    from .recipe import PAPER_CIFAR as PAPER_CIFAR
    from .recipe import PAPER_CIFAR_WARMUP as PAPER_CIFAR_WARMUP
    from .recipe import Recipe as Recipe
    from .recipe import paper_recipe as paper_recipe
    from .recipe import recipe_for as recipe_for
    from .run_dir import RunDirectory as RunDirectory
    from .run_dir import RunDirectoryError as RunDirectoryError

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

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value = getattr(importlib.import_module(f".{module}", __name__), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
