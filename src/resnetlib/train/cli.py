"""``resnetlib train``, ``resnetlib evaluate`` and ``resnetlib reproduce``.

Each command ends by printing where its outputs are; a user's mistake (a wrong path, an
unknown model, a data directory in no known layout, data that does not fit the model, a
missing ``train`` extra) ends with one line ``resnetlib: error: ...`` on stderr and exit
status 2. A run directory describes itself (``run.json``), so ``train --out DIR --resume``
and ``evaluate DIR/final.pt`` need nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import shlex
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..cli import (
    EXIT_INTERRUPTED,
    UsageError,
    add_model_arguments,
    device_option,
    guarded,
    import_flags,
    import_modules,
    int_in,
    int_tuple,
    is_checkpoint_path,
    model_from_args,
    note_random_weights,
    option_flag,
    override_values,
    positive_float,
)
from ..core.spec import MAX_IMAGE_SIDE
from .recipe import MAX_ITERATIONS

__all__ = ["add_commands"]


# Options that say what a run is: given again on --resume, they must match the run's record
# (the recipe fields are compared with recipe.json, the rest with run.json's command).
_RUN_OPTIONS = (
    "model",
    "pretrained",
    "checkpoint",
    "imports",
    "data",
    "labels",
    "image_size",
    "classes",
    "seed",
    "recipe",
    "freeze",
)

# -- the training flags: one per Recipe field, its bounds Recipe's own ---------------------

_RECIPE_HELP = {
    "optimizer": "the optimizer",
    "lr": "the learning rate (scaled by the schedule)",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "L2 weight decay",
    "batch_size": "images per step, across all processes",
    "iterations": "the run's length in iterations (milestones and warm-up scale with it)",
    "epochs": "the run's length in epochs (milestones and warm-up scale with it)",
    "schedule": "the learning-rate schedule",
    "milestones": "step schedule: where lr is multiplied by --gamma (the length's unit)",
    "gamma": "step schedule: the factor at each milestone",
    "warmup_lr": "start at this lr until a batch's error is below --warmup-error",
    "warmup_error": "the training error (a fraction) that ends the warm-up",
    "warmup_max_iterations": "the warm-up's longest length",
    "val_size": "most training images held out for validation (default: a tenth of them, at "
    "most the recipe's, 5000 in the paper's, leaving at least one batch; 0: none)",
    "autocast": "mixed precision",
    "channels_last": "channels-last memory format (default: on for a CPU, where it is faster)",
    "compile": "torch.compile the model",
    "label_smoothing": "label smoothing of the loss",
    "no_decay_norm_bias": "no weight decay on norm weights and biases",
    "ema_decay": "evaluate and save an exponential moving average of the weights",
    "cuda_graphs": "replay the training step as one CUDA graph (default: eager until measured)",
}
# Shorter spellings of one value of a field: --cosine is --schedule cosine.
_SHORTHANDS = {
    "schedule": (("--cosine", "cosine", "the cosine schedule"),),
    "autocast": (
        ("--bf16", "bf16", "bfloat16 autocast"),
        ("--fp16", "fp16", "float16 autocast with loss scaling"),
    ),
}
_ALIASES = {"ema_decay": "--ema"}
_LENGTH = ("iterations", "epochs")
_IN_LENGTH_UNITS = ("milestones", "warmup_max_iterations")  # counted in the length's unit


@functools.cache
def _recipe_fields() -> dict[str, Any]:
    """Recipe's fields with a flag (all but ``augment``), and their type hints."""
    from .recipe import Recipe

    hints = typing.get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in dataclasses.fields(Recipe) if f.name != "augment"}


def add_recipe_arguments(
    parser: argparse.ArgumentParser, names: Sequence[str] | None = None, **helps: str
) -> None:
    """A flag for each Recipe field (``names``: these only), ``--lr`` for ``lr``: the value
    replaces the recipe's, checked by :class:`Recipe` itself (``--iterations``/``--epochs``
    set the length, scaling the schedule). ``helps`` replace a field's help text."""
    from .recipe import AUTOCAST, OPTIMIZERS, SCHEDULES

    group = parser.add_argument_group("recipe", "any Recipe field (see help(Recipe))")
    chosen = [name for name in _recipe_fields() if names is None or name in names]
    length = group.add_mutually_exclusive_group() if set(_LENGTH) <= set(chosen) else group
    choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "autocast": AUTOCAST[1:]}
    for name in chosen:
        # Each flag has its field's type only: Recipe checks the bounds.
        kind = _recipe_fields()[name]
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        option: dict[str, Any] = {"default": None, "help": helps.get(name, _RECIPE_HELP[name])}
        if kind is bool:
            option["action"] = argparse.BooleanOptionalAction
        elif name in choices:
            option["choices"] = choices[name]
        elif typing.get_origin(kind) is tuple:
            option.update(type=int_tuple, metavar="N,N,...")
        else:
            option.update(type=kind, metavar={int: "N", float: "X"}[kind])
        flags = [option_flag(name), *([_ALIASES[name]] if name in _ALIASES else [])]
        target: Any = length if name in _LENGTH else group
        if name.startswith("no_"):  # --no-decay-norm-bias, and --decay-norm-bias to undo it
            for flag, const in ((flags[0], True), (option_flag(name[3:]), False)):
                shown = option["help"] if const else argparse.SUPPRESS
                target.add_argument(flag, dest=name, action="store_const", const=const, help=shown)
            continue
        if name in _SHORTHANDS:
            target = group.add_mutually_exclusive_group()
            for flag, value, text in _SHORTHANDS[name]:
                target.add_argument(flag, dest=name, action="store_const", const=value, help=text)
        target.add_argument(*flags, dest=name, **option)


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``train``, ``evaluate`` and ``reproduce`` to the ``resnetlib`` command."""
    train = commands.add_parser(
        "train",
        help="train or fine-tune a model (the paper's recipe on CIFAR, a small one on digits)",
        description="Train a registered model, or fine-tune pretrained weights, and record the "
        "run in --out: run.json, metrics.csv, steps.csv, checkpoints (last.pt, best.pt, "
        "final.pt), curves.png. Ctrl-C saves; --resume continues from the directory alone.",
    )
    add_model_arguments(train, checkpoint_alone=False, required=False)
    _data_arguments(train)
    train.add_argument("--out", default=None, help="run directory (default: runs/MODEL)")
    train.add_argument(
        "--recipe",
        default=None,
        metavar="paper|digits|tinyimagenet|finetune|FILE.json",
        help="the paper's CIFAR recipe (default for a path; warm-up from depth 110), the "
        "digits recipe (default for digits), the TinyImageNet recipe with a 3x3 stem "
        "(default for TinyImageNet and 64x64 image folders), the fine-tuning recipe (default "
        "with --pretrained or --checkpoint: 10 epochs, lr 0.01 cosine), or a recipe JSON file "
        "such as a run's recipe.json (keys it omits come from the paper's recipe)",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out (needs nothing else)"
    )
    add_recipe_arguments(train)
    train.add_argument(
        "--freeze",
        type=int_in(0, 64),
        default=None,
        metavar="N",
        help="fine-tuning: freeze the stem and the first N stages (0: the stem only); their "
        "norm layers stay in eval mode",
    )
    train.add_argument(
        "--save-every",
        type=int_in(1, MAX_ITERATIONS),
        default=None,
        metavar="N",
        help="also save the run every N iterations (it is saved after every epoch)",
    )
    train.add_argument(
        "--save-every-minutes",
        type=positive_float,
        default=10.0,
        metavar="M",
        help="also save the run every M minutes (default 10)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=guarded(_train))

    evaluate = commands.add_parser(
        "evaluate",
        help="top-1/top-5 accuracy of a model on a data set's test (or val) split",
        description="Evaluate a checkpoint (or a registered model with --pretrained or "
        "--checkpoint), or an ONNX file resnetlib exported (run in onnxruntime), fed as its "
        "data config says. A file in a run directory is evaluated on that run's data, split "
        "and classes unless --data is given; --labels, --image-size, --classes, --val-size and "
        "--seed given replace the run's.",
    )
    add_model_arguments(evaluate, checkpoint_alone=True, required=False)
    _data_arguments(evaluate)
    add_recipe_arguments(
        evaluate,
        ("val_size",),
        val_size="images held out of the training split (default: the run's, else 0)",
    )
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test")
    evaluate.set_defaults(run=guarded(_evaluate))

    reproduce = commands.add_parser("reproduce", help="reproduce an experiment of the paper")
    experiments = reproduce.add_subparsers(dest="experiment", required=True)
    degradation = experiments.add_parser(
        "degradation",
        help="Figure 6 on the built-in digits: plain-20/56 and ResNet-20/56 (CPU, minutes)",
    )
    degradation.add_argument("--out", default="runs/degradation", help="output directory")
    add_recipe_arguments(degradation, ("epochs",), epochs="epochs of each run (default 30)")
    degradation.set_defaults(epochs=30)
    degradation.add_argument("--device", default=None)
    degradation.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    degradation.add_argument(
        "--zero-init-residual", action="store_true", help="also train ResNet-56 with it"
    )
    degradation.add_argument("--no-progress", action="store_true")
    degradation.set_defaults(run=guarded(_degradation), parser=degradation)

    table6 = experiments.add_parser(
        "table6",
        help="Table 6 on CIFAR-10: ResNet-20..110 by the paper's recipe over seeds (GPU)",
        description="Train each model and seed by the paper's recipe (one run directory each "
        "under --out; finished runs are kept, interrupted ones resume) and write table6.md "
        "and table6.csv: mean +- std and min test error beside the paper's and akamaster's.",
    )
    table6.add_argument("--data", required=True, metavar="DIR", help="cifar-10-batches-py")
    table6.add_argument("--models", default="resnet20,resnet32,resnet44,resnet56,resnet110")
    table6.add_argument("--seeds", type=int_in(1, 1000), default=1, metavar="N")
    add_recipe_arguments(
        table6,
        ("iterations", "val_size", "batch_size", "cuda_graphs"),
        val_size="training images held out for validation (default 0: train on all, as "
        "akamaster's reproduction; 5000: the paper's 45k/5k split)",
    )
    table6.add_argument("--device", default=None, help="default: cuda when there is one")
    table6.add_argument("--out", default="runs/table6", help="output directory")
    table6.add_argument("--no-progress", action="store_true")
    table6.set_defaults(run=guarded(_table6), parser=table6)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        default=None,
        metavar="PATH|digits",
        help="cifar-10-batches-py, cifar-100-python, TinyImageNet-200, an image folder, or "
        "the built-in digits (train: default digits; evaluate: default the run's data)",
    )
    data.add_argument("--labels", choices=("fine", "coarse"), default=None)
    data.add_argument("--image-size", type=int_in(1, MAX_IMAGE_SIDE), default=None, metavar="N")
    data.add_argument(
        "--classes",
        type=_class_list,
        default=None,
        metavar="A,B,...",
        help="only these classes (a name, else an index), relabelled 0..N-1 in this order",
    )
    data.add_argument("--device", default=None, help="default: cuda when there is one")
    data.add_argument(
        "--seed", type=int_in(0, 2**63 - 1), default=None, help="default 0 (evaluate: the run's)"
    )


def _class_list(text: str) -> list[str]:
    """The items of ``--classes``, as typed: ``load_data`` resolves each (a name, else an index)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected class names or indices; got {text!r}")
    return items


def _require_extra() -> None:
    for module in ("tqdm", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"training needs the train extra ({module} is missing)")


# The recipes --recipe names, by the name a run records (run.json's recipe_name).
_RECIPE_LABELS = {
    "finetune": "the fine-tuning recipe",
    "digits": "digits recipe",
    "tinyimagenet": "the TinyImageNet recipe",
    "paper": "the paper's CIFAR recipe",
}


def _is_recipe_name(choice: str) -> bool:
    """Whether ``--recipe`` names a recipe (``paper``, ``paper110``, ...) rather than a file."""
    return choice in _RECIPE_LABELS or (choice[:5] == "paper" and choice[5:].isdigit())


def _recipe_choice(label: object) -> str | None:
    """The ``--recipe`` value that gives a run's recorded ``recipe_name`` (``None``: none)."""
    if not isinstance(label, str):
        return None
    named = [c for c, text in _RECIPE_LABELS.items() if text == label.removesuffix(" with warm-up")]
    depth = label.removeprefix("the paper's recipe for depth ")
    if named or (depth != label and depth.isdigit()):
        return named[0] if named else f"paper{depth}"
    return label.removeprefix("recipe ") if label.startswith("recipe ") else None


def _recipe(args: argparse.Namespace, choice: str | None = None) -> tuple[Any, str]:
    """The recipe the options (or ``choice``) ask for, and its name for the start-up line."""
    from .data import data_layout
    from .recipe import (
        DIGITS,
        FINETUNE,
        TINYIMAGENET,
        Recipe,
        paper_label,
        paper_recipe,
        recipe_for,
    )

    choice, name = choice or args.recipe, (args.model or "").split(".", 1)[0]
    if choice is None and _from_weights(args):
        choice = "finetune"
    if choice is None:
        layout = data_layout(args.data or "digits")
        choice = layout if layout in ("digits", "tinyimagenet") else "paper"
    label = _RECIPE_LABELS.get(choice, "")
    fixed = {"finetune": FINETUNE, "digits": DIGITS, "tinyimagenet": TINYIMAGENET}
    if choice in fixed:
        recipe = fixed[choice]
    elif choice == "paper":  # by the depth of the model named, or of --checkpoint's alone
        recipe = recipe_for(name or model_from_args(args, device="meta")[0].spec)
        label = paper_label(recipe)
    elif _is_recipe_name(choice):  # paper110: that depth's
        recipe, label = paper_recipe(int(choice[5:])), f"the paper's recipe for depth {choice[5:]}"
    else:
        from ..files import read_json

        path = Path(choice)
        if not os.path.lexists(path):
            raise UsageError(
                f"--recipe {choice}: not 'paper', 'digits', 'tinyimagenet', 'finetune' or an "
                "existing JSON file"
            )
        value = read_json(path, what="a recipe", error=UsageError)  # bounded, strict JSON
        if not isinstance(value, dict):
            raise UsageError(
                f"--recipe {choice}: expected a JSON object; got {type(value).__name__}"
            )
        length = {unit: value[unit] for unit in _LENGTH if value.get(unit) is not None}
        own = {key: value[key] for key in _IN_LENGTH_UNITS if key in value}
        try:
            if len(length) == 1 and not own:
                # a length alone is read as --iterations/--epochs (which win over it): the
                # paper's milestones and warm-up cap scale to the run's length in iterations
                ((unit, total),) = length.items()
                recipe = Recipe.from_dict({k: v for k, v in value.items() if k not in _LENGTH})
                recipe.resolved(1, **length)  # the length's bounds, named as the file's
                if args.iterations is None and args.epochs is None:
                    setattr(args, unit, total)
            elif len(length) == 1 and "milestones" not in own:
                # the file's own warm-up cap counts in its length: the paper's milestones
                # scale to it in its unit; a run's recipe.json has milestones of its own
                rest = {k: v for k, v in value.items() if k not in (*_LENGTH, *own)}
                recipe = dataclasses.replace(_with_length(Recipe.from_dict(rest), length), **own)
            else:
                recipe = Recipe.from_dict(value)
            label = f"recipe {path}"
        except (ValueError, TypeError) as error:
            raise UsageError(f"--recipe {choice}: {error}") from None
    return _with_flags(recipe, args), label


def _with_flags(recipe: Any, args: argparse.Namespace) -> Any:
    """``recipe`` with the recipe flags given, checked by Recipe before any data loads (its
    refusal naming the flags)."""
    changes = {k: v for k in _recipe_fields() if (v := getattr(args, k, None)) is not None}
    length = {name: changes.pop(name) for name in _LENGTH if name in changes}
    try:
        if length and changes.keys() & set(_IN_LENGTH_UNITS):
            recipe = _with_length(recipe, length)  # given with a length, they count in it
        recipe = dataclasses.replace(recipe, **changes)
        recipe.resolved(1, **length)  # the length's bounds
    except ValueError as error:
        message = str(error)  # Recipe's, naming the flags given
        for name in [*changes, *length]:
            message = message.replace(f"Recipe.{name} ", f"{option_flag(name)} ")
        raise UsageError(message) from None
    return recipe


def _with_length(recipe: Any, length: dict[str, int]) -> Any:
    """``recipe`` with ``length`` (``{"iterations": N}`` or ``{"epochs": N}``) as its own, so
    that milestones and a warm-up cap given with it are not scaled; the recipe's own are
    first scaled to it, in proportion (in the length's unit)."""
    ((unit, total),) = length.items()
    plan = recipe.resolved(1, **length)  # one batch an epoch: in proportion, in either unit
    recipe = dataclasses.replace(
        recipe, milestones=plan.milestones, warmup_max_iterations=plan.warmup_max_iterations
    )
    other = "epochs" if unit == "iterations" else "iterations"
    return dataclasses.replace(recipe, **{unit: total, other: None})


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The run-defining options given on this command line (JSON types): the model options
    as ``--name``, the others by their ``args`` name (a Recipe field's is the field's)."""
    given = {
        key: list(value) if isinstance(value, tuple) else value
        for key in (*_RUN_OPTIONS, *_recipe_fields())
        if (value := getattr(args, key, None)) is not None and value != []
    }
    for key in ("checkpoint", "recipe"):  # a file: its absolute path, the same from anywhere
        value = given.get(key)
        if isinstance(value, str) and (key == "checkpoint" or not _is_recipe_name(value)):
            given[key] = str(Path(value).resolve())
    given.update({option_flag(k): v for k, v in override_values(args).items()})
    return given


def _load(args: argparse.Namespace, source: dict[str, Any] | None = None, model: Any = None) -> Any:
    """The data the options (or a run's recorded ``source``) name; with ``model``, its
    classes and channels are checked against the listing before any image is decoded."""
    from .data import load_data
    from .loop import check_classes_fit

    fits = None if model is None else functools.partial(check_classes_fit, model)
    source = vars(args) if source is None else source  # the options, or the run's record
    return load_data(
        source.get("data") or "digits",
        labels=source.get("labels") or "fine",
        image_size=source.get("image_size"),
        val_size=source.get("val_size") or 0,
        seed=source.get("seed") or 0,
        classes=source.get("classes"),
        before_decoding=fits,
    )


def _train(args: argparse.Namespace) -> int:
    """Set up the job (a new run, or the run in --out to resume), ``fit`` it, report."""
    from .loop import fit

    _require_extra()
    try:
        job = _resumed_job(args) if args.resume else _new_job(args)
        model, data, recipe, out, run_info, length = job
        result = fit(
            model,
            data,
            recipe,
            out=out,
            device=device_option(args.device),
            resume=args.resume,
            progress=not args.no_progress,
            seed=run_info["seed"],
            save_every=args.save_every,
            save_every_minutes=args.save_every_minutes,
            run_info=run_info,
            log=_stderr if args.no_progress else None,
            # from scratch: the data set's own statistics (published, or computed from train)
            statistics="model" if args.resume or _from_weights(args) else "data",
            **length,
        )
    except KeyboardInterrupt as stopped:  # Ctrl-C: one line, never a traceback
        from .run_dir import RunDirectory

        where = getattr(stopped, "run_dir", None) or _default_out(args)
        if where is None or not RunDirectory(where).holds_run():
            print("interrupted before the run started; nothing was written", file=sys.stderr)
            return EXIT_INTERRUPTED
        resume = f"resnetlib train --out {shlex.quote(str(where))} --resume"
        again = f"{resume} {import_flags(args.imports)}".rstrip()
        return _interrupted(getattr(stopped, "iteration", None), again)
    if result.run_dir is None:  # a rank other than 0: rank 0 writes the outputs and says so
        return 0
    metrics = result.metrics
    best = " best.pt," if (out / "best.pt").is_file() else ""
    print(
        f"test error {100 * metrics['test_error']:.2f}% after {int(metrics['iteration'])} "
        f"iterations; outputs in {out}/ (final.pt, last.pt,{best} metrics.csv, steps.csv, "
        "curves.png, run.json)"
    )
    return 0


def _interrupted(iteration: int | None, again: str, where: str = "") -> int:
    """Ctrl-C's one line: where it stopped and the command that goes on; exit status 130."""
    at = "interrupted" if iteration is None else f"interrupted at iteration {iteration}"
    print(f"{at}{where}; resume with: {again}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _from_weights(args: argparse.Namespace) -> bool:
    return args.pretrained is not None or args.checkpoint is not None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)  # the stream at call time (tests swap sys.stderr)


def _default_out(args: argparse.Namespace) -> Path | None:
    """``--out``, else ``runs/MODEL`` (``runs/FILE-STEM`` for ``--checkpoint FILE`` alone)."""
    if args.out is not None:
        return Path(str(args.out))
    if args.model is not None:
        return Path("runs") / str(args.model)
    if args.checkpoint is not None:
        return Path("runs") / f"{Path(args.checkpoint).stem}-finetuned"
    return None


def _new_job(args: argparse.Namespace) -> tuple[Any, Any, Any, Path, dict[str, Any], Any]:
    from ..models.zoo import MODELS
    from .run_dir import RunDirectory

    if args.model is None and args.checkpoint is None:
        raise UsageError(
            "name the model to train (resnet56) or --checkpoint FILE to start from, or "
            "--resume a run with --out"
        )
    if args.model is not None and is_checkpoint_path(args.model):
        raise UsageError(
            f"{args.model}: train takes a registered model name; start from a file's weights "
            "with --checkpoint FILE (the model name is optional for a resnetlib checkpoint)"
        )
    import_modules(args.imports)
    given = _given(args)
    if args.model is not None:
        MODELS[args.model.split(".", 1)[0]]  # an unknown name fails before the data loads
    out = _default_out(args)
    assert out is not None
    RunDirectory(out).check_new()  # refused before the data loads
    recipe, recipe_name = _recipe(args)
    if args.val_size is None and args.recipe is not None and not _is_recipe_name(args.recipe):
        args.val_size = recipe.val_size  # a recipe file's split as it is, as --val-size is
    chosen = args.val_size
    args.val_size = chosen or 0
    data = _load(args)
    if chosen is None:  # the default split fits the data (Recipe.val_images)
        data = data.hold_out(recipe.val_images(len(data.train)), args.seed or 0)
        args.val_size = data.sizes()["val"]
    channels = data.image_shape[0]
    defaults: dict[str, Any] = {"num_classes": len(data.classes), "in_channels": channels}
    if (
        args.recipe is None
        and data.image_shape[1:] == (64, 64)
        and recipe_name.startswith("the paper's")
    ):  # a 64x64 image folder: the TinyImageNet recipe (the same validation split)
        recipe, recipe_name = _recipe(args, "tinyimagenet")
    if recipe_name == "the TinyImageNet recipe" and not _from_weights(args):
        from .recipe import TINYIMAGENET_MODEL

        defaults.update(TINYIMAGENET_MODEL)  # its 3x3 stem, unless --stem says otherwise
    import torch

    torch.manual_seed(args.seed or 0)  # the same seed, the same initial weights
    model, described = model_from_args(args, defaults=defaults, adapt=True)
    if args.freeze is not None:
        from ..interop.finetune import freeze

        try:  # freeze() decides what a model can freeze (no clamping: 9 of 3 is refused)
            freeze(model, stages=args.freeze)
        except ValueError as error:
            raise UsageError(f"--freeze {args.freeze}: {error}") from None
    if _from_weights(args) or args.freeze is not None:
        _report_start(args, model)
    command = {"given": given, "model": described, "freeze": args.freeze}
    info = {"command": command, "recipe_name": recipe_name, "seed": args.seed or 0}
    return model, data, recipe, out, info, {key: getattr(args, key) for key in _LENGTH}


def _report_start(args: argparse.Namespace, model: Any) -> None:
    """Say what fine-tuning changes: a new head, frozen stages."""
    from ..models.weights import get_weights

    had: int | None = None
    if args.pretrained is not None:
        name, _, tag = args.model.partition(".")
        if isinstance(args.pretrained, str):
            tag = args.pretrained
        had = get_weights(name, tag or None).num_classes
    elif args.checkpoint is not None:
        from ..interop.checkpoint import Checkpoint, read_weights_file

        contents = read_weights_file(args.checkpoint)
        if isinstance(contents, Checkpoint):
            had = contents.spec.num_classes
        elif "fc.weight" in contents:
            had = int(contents["fc.weight"].shape[0])
    if had is not None and had != model.num_classes:
        _stderr(
            f"fc: a new {model.num_classes}-class head (the weights' {had}-class head was left "
            "out), trained from a random start"
        )
    if args.freeze is not None:
        names = [
            name
            for name in (*model.stem_names, *model.stage_names[: args.freeze])
            if any(True for _ in model.get_submodule(name).parameters())
        ]
        start = "" if _from_weights(args) else " at their random initialization (no weights loaded)"
        _stderr(f"frozen{start} (weights fixed, norms in eval mode): {', '.join(names)}")


def _resumed_job(args: argparse.Namespace) -> tuple[Any, Any, Any, Path, dict[str, Any], Any]:
    from ..core.build import build
    from ..core.data_config import config_from_dict, set_data_config
    from ..core.spec import ResNetSpec
    from .recipe import Recipe
    from .run_dir import RunDirectory, RunDirectoryError, read_record, recorded_imports

    if args.out is None:
        raise UsageError("--resume needs --out DIR, the run directory to continue")
    run = RunDirectory(args.out)
    if not run.holds_run():
        raise UsageError(f"{run.path}: no run to resume (no run.json); start one without --resume")
    info = run.read_info()  # checked by check_run_info: entries of the right types
    command = info.get("command") or {}
    recipe = read_record(run.path / "recipe.json", Recipe.from_dict, what="the recipe")
    spec = read_record(run.path / "spec.json", ResNetSpec.from_dict, what="the model's spec")
    differ = _differences(_given(args), info, recipe, spec)
    if differ:
        raise UsageError(
            f"{run.path} was started with other options: {'; '.join(differ)}; resume takes "
            "them from run.json (resnetlib train --out DIR --resume), or start a new run"
        )
    # A run directory is data, never code: only the modules the user names now are
    # imported, never those run.json records.
    needed = recorded_imports(info)
    missing = [module for module in needed if module not in args.imports]
    if missing:
        again = import_flags(needed)
        raise UsageError(
            f"{run.path} was started with {again}; a run directory never imports code "
            f"itself: if you trust {', '.join(missing)}, resume with: resnetlib train --out "
            f"{shlex.quote(str(run.path))} --resume {again}"
        )
    import_modules(args.imports)
    if os.path.lexists(run.path / "state.pt"):  # its weights come from there
        model = build(spec)
    else:  # stopped before its first save: it starts over, from what it started from
        model = _starting_model(command, info["seed"], spec, run.info_path)
    length = {key: info["length"].get(key) for key in _LENGTH}
    try:
        set_data_config(model, config_from_dict(info["pretrained_cfg"]))
    except ValueError as error:
        raise RunDirectoryError(f"{run.info_path}: entry 'pretrained_cfg': {error}") from None
    if command.get("freeze") is not None:
        from ..interop.finetune import freeze

        freeze(model, stages=min(int(command["freeze"]), len(model.stage_names)))
    return model, _load(args, dict(info["data"]), model), recipe, run.path, info, length


def _starting_model(command: dict[str, Any], seed: int, spec: Any, where: Path) -> Any:
    """The model a run started from, made again as the run made it: seeded, from the weights
    (``--checkpoint``, ``--pretrained``) and options its ``command`` records."""
    import torch

    described = command.get("model") or {}
    args = argparse.Namespace(
        model=described.get("name"),
        pretrained=described.get("pretrained"),
        checkpoint=(command.get("given") or {}).get("checkpoint", described.get("checkpoint")),
        imports=described.get("imports") or [],
        **(described.get("options") or {}),
    )
    torch.manual_seed(seed)
    if args.model is None and args.checkpoint is None:  # a run of the library's: its spec
        from ..core.build import build

        return build(spec)
    model = model_from_args(args, adapt=True)[0]
    if model.spec != spec:
        from .run_dir import RunDirectoryError

        raise RunDirectoryError(
            f"{where}: starting over, its model options and weights make another network "
            "than spec.json; start a new run in another --out"
        )
    return model


def _differences(asked: dict[str, Any], info: dict[str, Any], recipe: Any, spec: Any) -> list[str]:
    """What a ``--resume`` command line asks that the run did otherwise, by the one comparison
    of a run's record with what is asked (``run_dir.record_differences``), defaults applied:
    a Recipe field against recipe.json (``--iterations`` its total, ``--val-size`` the split
    held out), a model option against spec.json (agreeing when it leaves the run's model as
    it is), ``--epochs``, ``--seed`` and the data options against run.json (``--data`` a
    resolved path, ``--classes`` names, ``--image-size`` the size trained at), ``--recipe``
    its ``recipe_name``, the rest its ``command``. ``--import`` is the user's to add to."""
    from ..core.overrides import apply_overrides
    from ..validate import is_int
    from .data import data_source
    from .run_dir import record_differences

    fields, given = _recipe_fields(), (info.get("command") or {}).get("given") or {}
    data, size = info["data"], tuple(info["pretrained_cfg"].get("input_size") or ())[1:]
    epochs, per_epoch = info["length"].get("epochs"), info.get("iterations_per_epoch")
    own = epochs is None and info["length"].get("iterations") is None  # the recipe's length
    if own and is_int(per_epoch) and per_epoch > 0 and info["iterations"] % per_epoch == 0:
        epochs = info["iterations"] // per_epoch  # in whole epochs
    record = {
        "epochs": epochs,  # --epochs given, else the recipe's own when it is whole epochs
        "seed": info["seed"],
        "data": data_source(data["data"]),
        "labels": data.get("labels") or "fine",
        "image_size": data.get("image_size") or (size[0] if len(set(size)) == 1 else None),
        "classes": info.get("classes") or data.get("classes"),
        "recipe": given.get("recipe") or _recipe_choice(info.get("recipe_name")),
    }
    asked = dict(asked)
    if "data" in asked:
        asked["data"] = data_source(asked["data"])
    if any(name not in (record["classes"] or ()) for name in asked.get("classes") or ()):
        where = {**record, **asked}  # the data and labels the names and indices are of
        asked["classes"] = _class_names(asked["classes"], where["data"], where["labels"])
    for key, value in asked.items():
        if key.startswith("--"):  # a model option: the run's when it leaves spec.json as it is
            name = key[2:].replace("-", "_")
            try:
                same = apply_overrides(spec, {name: value}, "train") == spec
            except (TypeError, ValueError, KeyError):
                same = False
            record[key] = value if same else given.get(key, getattr(spec, name, None))
        elif key not in record:  # a Recipe field's record is recipe.json, the rest's the command
            typed = key in _IN_LENGTH_UNITS and key in given  # recipe.json's are in iterations
            value = getattr(recipe, key) if key in fields and not typed else given.get(key)
            record[key] = list(value) if isinstance(value, tuple) else value
    keys = [
        key
        for key in asked
        if key != "imports" and not (key == "model" and key not in given)  # --checkpoint alone
    ]
    flags = {option_flag(key): value for key, value in asked.items()}
    recorded = {option_flag(k): v for k, v in record.items()}
    return record_differences(recorded, flags, map(option_flag, keys))


class _StopLoadError(Exception):
    """Stops a load once the class names are known (its one argument, ``_class_names``)."""


def _class_names(classes: list[Any], data: str, labels: str) -> list[str]:
    """The names of ``--classes`` in ``data``, as ``load_data`` resolves them (by its
    ``before_decoding`` hook)."""
    from .data import load_data

    def listed(names: tuple[str, ...], channels: int, name: str) -> None:
        raise _StopLoadError(names)

    try:
        load_data(data, labels=labels, classes=classes, before_decoding=listed)  # type: ignore[arg-type]
    except _StopLoadError as stop:
        return list(stop.args[0])
    raise AssertionError("load_data decoded images before calling before_decoding")


def _evaluate(args: argparse.Namespace) -> int:
    from ..deploy.runtime import onnx_argument
    from .loop import evaluate
    from .run_dir import RunDirectory

    given = {**override_values(args), "pretrained": args.pretrained, "checkpoint": args.checkpoint}
    exported = onnx_argument(args.model, given, args.device)  # fed as its metadata says
    model = exported if exported is not None else model_from_args(args)[0]
    run = None
    named = args.model or args.checkpoint  # the file, when --checkpoint alone names the model
    if args.model is None or is_checkpoint_path(args.model):
        candidate = RunDirectory(Path(named).parent)
        run = candidate if candidate.holds_run() else None
    if args.data is not None:
        config = getattr(model, "pretrained_cfg", None) or {}
        side = (config.get("input_size") or (0, 0, 0))[1:]
        if args.image_size is None and config.get("crop_mode") == "squash" and side[0] == side[1]:
            args.image_size = side[0]  # as fit trained it: load_data's resize, at its size
        data = _load(args, model=model)
    elif run is not None:
        source = run.read_info(own=False)["data"]  # an input: evaluate writes no run
        # The data options given replace the run's; data that then does not fit is refused.
        options = ("labels", "image_size", "classes", "val_size", "seed")
        given = {key: value for key in options if (value := getattr(args, key)) is not None}
        data = _load(args, {**source, **given}, model)
    else:
        raise UsageError(
            f"which data? pass --data PATH (no run.json beside {named} to say what it was "
            "trained on)"
        )
    device = device_option(args.device or ("cpu" if exported is not None else None))
    result = evaluate(model, data, device, split=args.split)
    if exported is None:  # said with the result, not beside a refusal
        note_random_weights(args)
    top5 = (  # on five classes or fewer, every image is right in the top five
        f", top-5 accuracy {100 * result.top5_accuracy:.2f}% (error {100 * result.top5_error:.2f}%)"
        if len(data.classes) > 5
        else ""
    )
    print(
        f"{args.split}: top-1 accuracy {100 * result.accuracy:.2f}% (error "
        f"{100 * result.error:.2f}%){top5}, loss {result.loss:.4f}, on {result.count:,} images "
        f"of {data.test.name}; model {named}"
    )
    return 0


def _degradation(args: argparse.Namespace) -> int:
    _require_extra()
    from .recipe import DIGITS
    from .reproduce import DEGRADATION_MODELS, MIN_DEGRADATION_EPOCHS, degradation

    _with_flags(DIGITS, args)  # --epochs in Recipe's bounds before anything is announced
    if args.epochs < MIN_DEGRADATION_EPOCHS:
        _stderr(
            f"warning: {args.epochs} epochs are too few to show the degradation (the plain "
            f"nets separate after about {MIN_DEGRADATION_EPOCHS}); the figure may show none"
        )
    jobs = len(DEGRADATION_MODELS) + int(args.zero_init_residual)
    with _reproduce_interrupts(args) as stopped:
        report = degradation(
            args.out,
            epochs=args.epochs,
            device=device_option(args.device),
            seed=args.seed,
            zero_init_residual=args.zero_init_residual,
            progress=not args.no_progress,
            announce=lambda index, label, path: _stderr(f"[{index}/{jobs}] {label}: {path}"),
        )
    if stopped:
        return EXIT_INTERRUPTED
    print(report.table())
    figures = [report.figure.name, *(["zero-init.png"] if args.zero_init_residual else [])]
    print(f"outputs in {report.out}/ ({', '.join(figures)}, table.md, a run directory per model)")
    return 0


def _table6(args: argparse.Namespace) -> int:
    _require_extra()
    from .recipe import recipe_for
    from .reproduce import table6

    _with_flags(recipe_for("resnet20"), args)  # the flags in Recipe's bounds, before any run
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    if not models:
        raise UsageError(f"--models {args.models!r}: name at least one model (resnet20,...)")
    with _reproduce_interrupts(args) as stopped:
        report = table6(
            args.data,
            args.out,
            models=models,
            seeds=args.seeds,
            iterations=args.iterations,
            val_size=args.val_size,
            batch_size=args.batch_size,
            device=device_option(args.device),
            cuda_graphs=args.cuda_graphs,
            progress=not args.no_progress,
            announce=lambda i, n, model, seed, path: _stderr(
                f"[{i}/{n}] {model} seed {seed}: {path}"
            ),
            log=_stderr if args.no_progress else None,
        )
    if stopped:
        return EXIT_INTERRUPTED
    print(report.table())
    print(f"outputs in {report.out}/ ({report.markdown_path.name}, {report.csv_path.name})")
    return 0


@contextmanager
def _reproduce_interrupts(args: argparse.Namespace) -> Iterator[list[bool]]:
    """Ctrl-C during ``reproduce`` ends as in ``train``, the same command going on (finished
    runs are kept, interrupted ones resume); the yielded list then holds ``True``."""
    stopped: list[bool] = []
    try:
        yield stopped
    except KeyboardInterrupt as interrupt:
        run_dir = getattr(interrupt, "run_dir", None)
        iteration = getattr(interrupt, "iteration", None)
        where = "" if run_dir is None or iteration is None else f" in {run_dir}"
        _interrupted(iteration, _command_line(args), where)
        stopped.append(True)


def _command_line(args: argparse.Namespace) -> str:
    """The ``resnetlib reproduce`` command ``args`` were parsed from: each option that
    differs from its default, quoted for a POSIX shell."""
    words = ["resnetlib", "reproduce", args.experiment]
    for action in args.parser._actions:
        if not action.option_strings or action.dest in ("help", "run", "parser"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(action.option_strings[0 if value else 1])
        elif action.nargs == 0:
            words.append(action.option_strings[0])
        else:
            words += [action.option_strings[0], shlex.quote(str(value))]
    return " ".join(words)
