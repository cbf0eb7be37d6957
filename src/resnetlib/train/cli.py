"""``resnetlib train``, ``resnetlib evaluate`` and ``resnetlib reproduce``.

Each command ends by printing where its outputs are; a user's mistake (a wrong path, an
unknown model, a data directory in no known layout, a missing ``train`` extra) ends with one
line ``resnetlib: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]

EXIT_USAGE = 2


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``train``, ``evaluate`` and ``reproduce`` to the ``resnetlib`` command."""
    train = commands.add_parser(
        "train",
        help="train a registered model (the paper's recipe on CIFAR, a small one on digits)",
        description="Train a registered model and record the run (metrics.csv, checkpoints, "
        "curves.png) in --out.",
    )
    train.add_argument("name", help="a registered model name, e.g. resnet56")
    _data_arguments(train)
    train.add_argument("--out", default=None, help="run directory (default: runs/NAME)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, metavar="N")
    length.add_argument("--iterations", type=int, default=None, metavar="N")
    train.add_argument(
        "--recipe",
        default=None,
        metavar="paper|digits|FILE.json",
        help="the paper's CIFAR recipe (default for a path; warm-up from depth 110), the "
        "digits recipe (default for digits), or a recipe JSON file",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--batch-size", type=int, default=None, metavar="N")
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--cosine", action="store_true", help="cosine lr schedule")
    precision = train.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    precision.add_argument("--fp16", action="store_true", help="float16 autocast, loss scaling")
    train.add_argument("--channels-last", action="store_true")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--label-smoothing", type=float, default=None, metavar="X")
    train.add_argument("--no-decay-norm-bias", action="store_true")
    train.add_argument("--ema", type=float, default=None, metavar="DECAY", help="EMA of weights")
    train.add_argument("--zero-init-residual", action="store_true")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=_guarded(_train))

    evaluate = commands.add_parser(
        "evaluate", help="top-1 error of a checkpoint on a data set's test (or val) split"
    )
    evaluate.add_argument("checkpoint", help="a checkpoint written by resnetlib (final.pt)")
    _data_arguments(evaluate)
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test")
    evaluate.set_defaults(run=_guarded(_evaluate))

    reproduce = commands.add_parser("reproduce", help="reproduce an experiment of the paper")
    experiments = reproduce.add_subparsers(dest="experiment", required=True)
    degradation = experiments.add_parser(
        "degradation",
        help="Figure 6 on the built-in digits: plain-20/56 and ResNet-20/56 (CPU, minutes)",
    )
    degradation.add_argument("--out", default="runs/degradation", help="output directory")
    degradation.add_argument("--epochs", type=int, default=30, metavar="N")
    degradation.add_argument("--device", default=None)
    degradation.add_argument("--seed", type=int, default=0)
    degradation.add_argument(
        "--zero-init-residual", action="store_true", help="also train ResNet-56 with it"
    )
    degradation.add_argument("--no-progress", action="store_true")
    degradation.set_defaults(run=_guarded(_degradation))


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        metavar="PATH|digits",
        help="cifar-10-batches-py, cifar-100-python, TinyImageNet-200, an image folder, or "
        "the built-in digits (default; evaluate: the data the run trained on)",
    )
    parser.add_argument("--labels", choices=("fine", "coarse"), default=None)
    parser.add_argument("--image-size", type=int, default=None, metavar="N")
    parser.add_argument("--device", default=None, help="default: cuda when there is one")
    parser.add_argument("--seed", type=int, default=None, help="default 0")


_DATA_DEFAULTS = {"data": "digits", "labels": "fine", "image_size": None, "seed": 0}


def _fill_data_defaults(args: argparse.Namespace, run_info: Path | None = None) -> None:
    """Unset data options from ``run_info`` (a run's run.json) if there is one, else defaults."""
    saved = {}
    if run_info is not None and run_info.is_file():
        saved = json.loads(run_info.read_text())
    for key, default in _DATA_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, saved.get(key, default))


class _UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..checkpoint import CheckpointError
        from .data import DataError
        from .loop import TrainingError

        try:
            _require_extra()
            return command(args)
        except (
            _UsageError,
            DataError,
            CheckpointError,
            TrainingError,
            ValueError,
            OSError,
        ) as error:
            message = str(error)
        except KeyError as error:  # an unknown registry name
            message = str(error.args[0]) if error.args else repr(error)
        except ImportError as error:
            message = f'{error}; pip install "resnetlib[train]"'
        print(
            f"resnetlib: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr
        )
        return EXIT_USAGE

    return run


def _require_extra() -> None:
    for module in ("tqdm", "matplotlib"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ImportError(f"training needs the train extra ({module} is missing)") from None


def _device(name: str | None) -> Any:
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise _UsageError(f"--device {name!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _UsageError(f"--device {name}: no CUDA device is available here")
    return device


def _recipe(choice: str | None, name: str, data: str) -> Any:
    from .recipe import DIGITS, Recipe, paper_recipe, recipe_for

    if choice is None:
        return DIGITS if data == "digits" else recipe_for(name)
    if choice == "digits":
        return DIGITS
    if choice == "paper":
        return recipe_for(name)
    if choice.startswith("paper"):  # paper110: the depth's paper recipe
        return paper_recipe(int(choice[5:])) if choice[5:].isdigit() else recipe_for(name)
    path = Path(choice)
    if not path.is_file():
        raise _UsageError(f"--recipe {choice}: not 'paper', 'digits' or an existing JSON file")
    try:
        return Recipe.from_json(path.read_text())
    except ValueError as error:
        raise _UsageError(f"--recipe {choice}: {error}") from None


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from ..zoo import create_model
    from .data import load_data
    from .loop import fit

    _fill_data_defaults(args)
    recipe = _recipe(args.recipe, args.name, args.data)
    changes: dict[str, Any] = {}
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.lr is not None:
        changes["lr"] = args.lr
    if args.cosine:
        changes["schedule"] = "cosine"
    if args.bf16 or args.fp16:
        changes["autocast"] = "bf16" if args.bf16 else "fp16"
    for flag in ("channels_last", "compile", "no_decay_norm_bias"):
        if getattr(args, flag):
            changes[flag] = True
    if args.label_smoothing is not None:
        changes["label_smoothing"] = args.label_smoothing
    if args.ema is not None:
        changes["ema_decay"] = args.ema
    recipe = dataclasses.replace(recipe, **changes)
    device = _device(args.device)
    from ..zoo import MODELS

    MODELS.get(args.name)  # an unknown name fails before the data loads
    data = load_data(
        args.data,
        val_size=recipe.val_size,
        seed=args.seed,
        labels=args.labels,
        image_size=args.image_size,
    )
    torch.manual_seed(args.seed)
    overrides: dict[str, Any] = {
        "num_classes": len(data.train.classes),
        "in_channels": int(data.train.images.shape[1]),
    }
    if args.zero_init_residual:
        overrides["zero_init_residual"] = True
    model = create_model(args.name, **overrides)
    out = Path(args.out) if args.out is not None else Path("runs") / args.name
    if not args.resume and (out / "state.pt").exists():
        raise _UsageError(
            f"{out} already holds a run: pass --resume to continue it, or another --out"
        )
    result = fit(
        model,
        data,
        recipe,
        out=out,
        device=device,
        resume=args.resume,
        iterations=args.iterations,
        epochs=args.epochs,
        progress=not args.no_progress,
        seed=args.seed,
    )
    if result.run_dir is not None:
        _write_run_info(result.run_dir, args)
        metrics = result.metrics
        print(
            f"test error {100 * metrics['test_error']:.2f}% after {int(metrics['iteration'])} "
            f"iterations; outputs in {result.run_dir}/ (final.pt, last.pt, metrics.csv, "
            "curves.png, recipe.json, spec.json)"
        )
    return 0


def _write_run_info(run_dir: Path, args: argparse.Namespace) -> None:
    info = {
        "model": args.name,
        "data": str(args.data),
        "labels": args.labels,
        "image_size": args.image_size,
        "seed": args.seed,
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _evaluate(args: argparse.Namespace) -> int:
    from ..checkpoint import load
    from .data import load_data
    from .loop import evaluate
    from .recipe import Recipe

    path = Path(args.checkpoint)
    if not path.is_file():
        raise _UsageError(f"{path}: no such checkpoint file")
    model = load(path)
    run_dir = path.parent
    _fill_data_defaults(args, run_dir / "run.json")
    val_size = 0
    if (run_dir / "recipe.json").is_file():  # the split the model trained on (its mean)
        val_size = Recipe.from_json((run_dir / "recipe.json").read_text()).val_size
    data = load_data(
        args.data,
        val_size=val_size,
        seed=args.seed,
        labels=args.labels,
        image_size=args.image_size,
    )
    result = evaluate(model, data, _device(args.device), split=args.split)
    print(
        f"{args.split} error {100 * result.error:.2f}% (loss {result.loss:.4f}) on "
        f"{result.count} images of {data.test.name}; checkpoint {path}"
    )
    return 0


def _degradation(args: argparse.Namespace) -> int:
    from .reproduce import degradation

    report = degradation(
        args.out,
        epochs=args.epochs,
        device=_device(args.device),
        seed=args.seed,
        zero_init_residual=args.zero_init_residual,
        progress=not args.no_progress,
    )
    print(report.table())
    print(f"outputs in {report.out}/ (figure {report.figure.name}, one run directory per model)")
    return 0
