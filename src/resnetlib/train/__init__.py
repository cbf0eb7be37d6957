"""Training and reproduction: data, the paper's recipe, the loop, plots and the commands.

``import resnetlib`` does not import this subpackage, and importing it loads only torch:
tqdm, matplotlib, Pillow and scikit-learn (the ``train`` extra) load on first use.
"""

from .data import DataError, DataSplits, ImageDataset, load_data
from .loop import METRICS, EvalResult, FitResult, TrainingError, evaluate, fit, read_metrics
from .pipeline import Augment, DeviceLoader, pixel_mean
from .plot import plot_runs
from .recipe import DIGITS, PAPER_CIFAR, PAPER_CIFAR_WARMUP, Recipe, paper_recipe, recipe_for

__all__ = [
    "DIGITS",
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
    "TrainingError",
    "evaluate",
    "fit",
    "load_data",
    "paper_recipe",
    "pixel_mean",
    "plot_runs",
    "read_metrics",
    "recipe_for",
]
