"""The ``resnetlib`` command: list, summarize, train, evaluate, predict, export, reproduce.

A module of :data:`SUBCOMMAND_MODULES` adds its subcommands with ``add_commands(commands)``
(their defaults carry ``run=<callable(args) -> int>``), importing heavy dependencies only
inside ``run``. :data:`COMMANDS` says which module adds which command, so ``resnetlib train``
imports that module alone; ``--help``, no command or an unknown one imports them all.

What every command that takes a model shares is generated here, from one place:
:func:`add_model_arguments` adds the model positional (a registered name or a checkpoint
file), ``--import``, a flag per :class:`~resnetlib.ModelOverrides` field, ``--pretrained``,
``--pretrained-tag`` and ``--checkpoint``; :func:`model_from_args` builds that model;
:func:`guarded` turns a command's errors into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import collections.abc
import importlib
import json
import os
import shlex
import sys
import traceback
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .common import printable
from .core.spec import MAX_CHANNELS, MAX_IMAGE_SIDE
from .files import command_files
from .registry import UnknownNameError
from .validate import check_input_size

__all__ = [
    "COMMANDS",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "SUBCOMMAND_MODULES",
    "UsageError",
    "add_imports",
    "add_model_arguments",
    "guarded",
    "import_flags",
    "import_modules",
    "input_size",
    "main",
    "model_from_args",
    "note_random_weights",
    "option_flag",
    "override_values",
    "random_weights",
    "split_model_words",
    "weights_metadata",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
_MAX_ERROR_LINES = 12
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
_T = TypeVar("_T")


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Refusals in one line naming the command's ``--help`` (subcommands' parsers too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- flag types ---------------------------------------------------------------------------


def _flag_type(
    parse: Callable[[str], _T], ok: Callable[[_T], bool], expected: str
) -> Callable[[str], _T]:
    """An argparse type: ``parse(text)`` if it passes ``ok``, else "expected EXPECTED"."""

    def convert(text: str) -> _T:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return value

    return convert


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


input_size = _flag_type(
    lambda text: check_input_size(_ints(text)),  # the one check of an input size
    lambda size: True,
    f"C,H,W of positive ints such as 3,224,224 (sides up to {MAX_IMAGE_SIDE}, channels up to "
    f"{MAX_CHANNELS})",
)
"""``C,H,W`` of positive ints, each side at most :data:`MAX_IMAGE_SIDE`."""

_int_list = _flag_type(_ints, lambda v: min(v) >= 1, "comma-separated ints >= 1 such as 16,32,64")

int_tuple = _flag_type(_ints, lambda v: True, "comma-separated ints such as 32000,48000")
"""An argparse type: comma-separated ints, unbounded (the field they set checks them)."""

positive_float = _flag_type(float, lambda v: 0 < v < float("inf"), "a number > 0")
"""An argparse type: a finite number > 0."""


def int_in(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int in ``[minimum, maximum]`` (no maximum: the spec bounds it)."""
    allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    return _flag_type(
        int,
        lambda v: minimum <= v <= (v if maximum is None else maximum),
        f"an int {allowed}",
    )


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``, the value read as JSON (32, 0.5, true, null, "text"); a bare word is
    text unless it reads as another value (``True``, ``None``, ``nan``, ``0x10``): refused."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as groups=32; got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
        if raw.strip().lower() in ("true", "false", "none") or _is_number(raw):
            raise argparse.ArgumentTypeError(
                f"{key}={raw}: write true, false, null or a finite JSON number (such as 16 or "
                f"0.5), or quote text: {key}='\"{raw}\"'"
            ) from None
    if isinstance(value, (list, dict)):
        raise argparse.ArgumentTypeError(f"{key}: expected a number, true/false or text")
    return key, value


def _is_number(text: str) -> bool:
    for parse in (float, lambda word: int(word, 0)):
        try:
            parse(text)
            return True
        except ValueError:
            continue
    return False


# Smallest value of each int override; the rest must be >= 1.
_INT_MINIMUM = {"num_classes": 0}


def option_flag(name: str) -> str:
    """``--block-options`` for ``block_options`` (a flag stays as it is)."""
    return name if name.startswith("--") else "--" + name.replace("_", "-")


def _override_fields() -> dict[str, Any]:
    from .core.overrides import ModelOverrides

    return typing.get_type_hints(ModelOverrides)


# -- adding the flags ---------------------------------------------------------------------


def add_imports(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): a user's module that registers models or parts."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the models and parts it registers (repeatable)",
    )


class _PretrainedFlag(argparse.Action):
    """``--pretrained``: takes no value, and keeps a tag ``--pretrained-tag`` already set."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if not isinstance(getattr(namespace, self.dest, None), str):
            setattr(namespace, self.dest, True)


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    checkpoint_alone: bool,
    required: bool = True,
    positional: bool = True,
) -> None:
    """The model positional and the model options.

    ``checkpoint_alone``: the positional may also be a checkpoint file (not for train);
    ``required=False``: it may be left out (``--checkpoint FILE``, ``train --resume``);
    ``positional=False``: the command reads it from its words (:func:`split_model_words`).
    """
    what = "a registered model name (resnet56, or resnet50.TAG for named weights)"
    if checkpoint_alone:
        what += " or a checkpoint file (runs/r56/final.pt)"
    what += "; optional with --checkpoint FILE of a resnetlib checkpoint"
    if positional:
        parser.add_argument("model", nargs=None if required else "?", metavar="MODEL", help=what)
    else:
        parser.set_defaults(model=None)
    add_imports(parser)
    weights = parser.add_argument_group("weights")
    weights.add_argument(
        "--pretrained",
        action=_PretrainedFlag,
        nargs=0,
        default=None,
        help="start from the model's pretrained weights (its default tag; name another with "
        "--pretrained-tag TAG or MODEL.TAG); see resnetlib.list_pretrained()",
    )
    weights.add_argument(
        "--pretrained-tag",
        dest="pretrained",
        default=None,
        metavar="TAG",
        help="the pretrained weights TAG (implies --pretrained); MODEL.TAG names the tag "
        "--pretrained loads, as timm's names do",
    )
    weights.add_argument(
        "--checkpoint",
        default=None,
        metavar="FILE",
        help="weights to start from: a resnetlib checkpoint (which alone names the model) or "
        "a state dict in any layout resnetlib.interop.load_weights reads (torchvision, timm, "
        "akamaster, mmpretrain)",
    )
    overrides = parser.add_argument_group(
        "model options", "any ModelOverrides field (see help(resnetlib.ModelOverrides))"
    )
    for name, hint in _override_fields().items():
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        option: dict[str, Any]
        if hint is bool:
            option = {"action": argparse.BooleanOptionalAction, "default": None}
        elif hint is int:
            option = {"type": int_in(_INT_MINIMUM.get(name, 1)), "metavar": "N"}
        elif hint is float:
            option = {"type": float, "metavar": "X"}
        elif hint is str or (origin in (typing.Union, types.UnionType) and str in args):
            option = {"type": str, "metavar": "NAME"}
        elif origin is collections.abc.Sequence and args == (int,):
            option = {"type": _int_list, "metavar": "N,N,..."}
        elif origin is collections.abc.Mapping:
            option = {"type": _key_value, "action": "append", "metavar": "KEY=VALUE"}
            option["help"] = "repeatable; VALUE in JSON (16, 0.5, true, null) or a word of text"
        else:
            raise TypeError(f"the CLI has no option type for override {name!r} ({hint!r})")
        overrides.add_argument(option_flag(name), dest=name, **option)


def split_model_words(args: argparse.Namespace, words: Sequence[str]) -> list[str]:
    """``[MODEL] WORD...``: set ``args.model`` from the first word and return the rest; with
    ``--checkpoint``, a first word that is no registered model name is the command's too."""
    from .models.zoo import MODELS

    rest = list(words)
    if rest and (args.checkpoint is None or rest[0].split(".", 1)[0] in MODELS):
        args.model = rest.pop(0)
    return rest


def override_values(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given on the command line (JSON types)."""
    values = {
        name: getattr(args, name)
        for name in _override_fields()
        if getattr(args, name, None) is not None
    }
    if "block_options" in values:
        values["block_options"] = dict(values["block_options"])
    if "widths" in values:
        values["widths"] = list(values["widths"])
    return values


def import_modules(modules: Sequence[str]) -> None:
    """Import the modules named with ``--import`` (nothing a file says is ever imported),
    from the working directory too, as ``python -m`` would; the directory is on ``sys.path``
    only while they import, so no later import picks up a module from it."""
    if not modules:
        return
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as error:  # an import runs the user's code: any error is theirs
                raise UsageError(f"--import {module}: {type(error).__name__}: {error}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def device_option(name: str | None) -> Any:
    """``--device NAME`` as :func:`resnetlib.common.resolve_device` resolves it (``None``:
    the GPU when there is one), its refusal a usage error."""
    from .common import resolve_device

    try:
        return resolve_device(name)
    except ValueError as error:
        raise UsageError(f"--device {error}") from None


def is_checkpoint_path(text: str) -> bool:
    """Whether the model positional names a file rather than a registered model or a shared
    folder (``local-dir:PATH``, ``hf-hub:ORG/NAME``, which ``create_model`` reads)."""
    from .models.share import SHARED_PREFIXES

    if text.startswith(SHARED_PREFIXES):
        return False
    return Path(text).is_file() or text.endswith(CHECKPOINT_SUFFIXES) or os.sep in text


def _refuse_directory(name: str) -> None:
    from .models.share import CONFIG
    from .models.zoo import MODELS

    path = Path(name)
    if not path.is_dir() or (os.sep not in name and name.split(".", 1)[0] in MODELS):
        return
    if (path / CONFIG).is_file():
        hint = f"local-dir:{name} for the save_pretrained folder it is, or a checkpoint file"
    else:
        hint = f"a checkpoint file in it, such as {path / 'final.pt'} of a run directory"
    raise UsageError(f"{name}: is a directory, not a model name or checkpoint file; give {hint}")


def model_from_args(
    args: argparse.Namespace,
    *,
    defaults: dict[str, Any] | None = None,
    device: str | None = None,
    adapt: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """The model that ``args`` describe, and that description as JSON (for ``run.json``).

    A checkpoint file alone is loaded as saved; a name is built by ``create_model``.
    ``defaults`` fill options not given (the data's classes and channels); with ``adapt``
    also for ``--checkpoint FILE`` alone (train: a new head). ``device="meta"`` builds a
    registered model without allocating its weights.
    """
    from .interop.checkpoint import load
    from .models.from_file import checkpoint_model
    from .models.zoo import create_model

    import_modules(args.imports)
    options = override_values(args)
    if args.model is None and args.checkpoint is None:
        raise UsageError(
            "name a model (a registered name or a checkpoint file), or --checkpoint FILE of a "
            "resnetlib checkpoint"
        )
    for name in (args.model, args.checkpoint):  # a directory is named as one, not "missing"
        if name is not None:
            _refuse_directory(name)
    if args.model is not None and is_checkpoint_path(args.model):
        path = Path(args.model)
        if not os.path.lexists(path):  # a link to no file: the reader names it as one
            raise UsageError(f"{args.model}: no such checkpoint file")
        given = [option_flag(name) for name in options] + [
            flag for flag in ("--pretrained", "--checkpoint") if getattr(args, flag[2:])
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)}: a checkpoint ({path}) keeps the model it was saved as; "
                "to change it, name the model and pass --checkpoint FILE"
            )
        return _from_run_file(lambda: load(path), path, args.imports), {"checkpoint": str(path)}
    if args.checkpoint is not None and not os.path.lexists(args.checkpoint):
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    if args.pretrained is not None and args.checkpoint is not None:
        raise UsageError("give --pretrained or --checkpoint, not both")
    alone = args.model is None  # --checkpoint FILE names the model: a new head or input only
    for key, value in (defaults or {} if adapt or not alone else {}).items():
        options.setdefault(key, value)
    if alone:
        file = Path(args.checkpoint)
        model = _from_run_file(lambda: checkpoint_model(file, options), file, args.imports)
        if model is None:
            raise UsageError(
                f"--checkpoint {Path(args.checkpoint)}: a state dict, which does not say its "
                "network; name the model it was saved from (resnetlib COMMAND MODEL "
                "--checkpoint FILE)"
            )
    else:
        pretrained = False if args.pretrained is None else args.pretrained
        model = create_model(
            args.model,
            pretrained=pretrained,
            checkpoint_path=args.checkpoint,
            device=device if pretrained is False and args.checkpoint is None else None,
            **options,
        )
    described = {
        "name": args.model,
        "options": options,
        "pretrained": args.pretrained,
        "checkpoint": str(Path(args.checkpoint)) if alone else args.checkpoint,
        "imports": list(args.imports),
    }
    return model, described


def weights_metadata(args: argparse.Namespace) -> dict[str, Any]:
    """The metadata of the weights :func:`model_from_args` loaded (call it after): a
    resnetlib checkpoint's, as MODEL or ``--checkpoint``, or a shared folder's config.json's;
    ``{}`` for a state dict, pretrained or random weights."""
    from .interop.checkpoint import Checkpoint, read_weights_file
    from .models.share import SHARED_PREFIXES, shared_metadata

    if args.model is not None and args.model.startswith(SHARED_PREFIXES):
        return shared_metadata(args.model)
    if args.model is not None and is_checkpoint_path(args.model):
        file = args.model
    elif args.checkpoint is not None:
        file = args.checkpoint
    else:
        return {}
    contents = read_weights_file(file, check=False)
    return contents.metadata if isinstance(contents, Checkpoint) else {}


def import_flags(modules: Sequence[str]) -> str:
    """``--import A --import B``, quoted for a shell: the flags a run's modules need again."""
    return " ".join(f"--import {shlex.quote(module)}" for module in modules)


def _from_run_file(read: Callable[[], _T], path: Path, imports: Sequence[str]) -> _T:
    """``read()`` of the checkpoint ``path``; where it names a part not registered and a run
    directory holds it, the refusal names the ``--import`` modules the run was started with."""
    from .train.run_dir import RunDirectory, recorded_imports

    try:
        return read()
    except UnknownNameError as error:
        run = RunDirectory(path.parent)
        try:
            needed = recorded_imports(run.read_info(own=False)) if run.holds_run() else []
        except ValueError:  # a damaged run.json: the refusal stands as it is
            needed = []
        missing = [module for module in needed if module not in imports]
        if not missing:
            raise
        again = import_flags(missing)
        raise UsageError(
            f"{printable(error)}; {printable(run.info_path)} records that the run was trained "
            f"with {again}: if you trust {', '.join(missing)}, add {again}"
        ) from None


def random_weights(args: argparse.Namespace) -> bool:
    """Whether :func:`model_from_args` built a registered name (``MODEL.TAG`` too) without
    ``--pretrained`` or ``--checkpoint``: random weights, which a command that uses them says."""
    return (
        args.pretrained is None
        and args.checkpoint is None
        and not is_checkpoint_path(args.model)
        and ":" not in args.model  # local-dir: and hf-hub: folders hold weights
    )


def note_random_weights(args: argparse.Namespace) -> None:
    """Say on stderr that the model's weights are random, if they are (:func:`random_weights`)."""
    if random_weights(args):
        print(
            f"note: {printable(args.model)} has random weights; give --pretrained or "
            "--checkpoint FILE for a trained one",
            file=sys.stderr,
        )


# -- errors -------------------------------------------------------------------------------


def _message(error: BaseException) -> str:
    # An unknown registry name is a KeyError whose message is its first argument.
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    lines = [printable(line) for line in text.strip().splitlines() if line.strip()]
    lines = lines or [type(error).__name__]  # each line escaped: torch's have colour codes
    if len(lines) > _MAX_ERROR_LINES:
        lines = [*lines[:_MAX_ERROR_LINES], f"... ({len(lines) - _MAX_ERROR_LINES} more lines)"]
    if isinstance(error, ImportError) and "pip install" not in text:
        lines[-1] += '; pip install "resnetlib[train]"'
    if isinstance(error, UnknownNameError) and error.kind:  # a name a user's module may add
        lines[-1] += f"; if a module of yours registers the {error.kind}, add --import MODULE"
    return "\n".join(lines)


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` with its errors as ``resnetlib COMMAND: error: ...`` (up to twelve lines)
    on stderr and exit status 2, run inside ``files.command_files()``."""

    def run(args: argparse.Namespace) -> int:
        prog = f"resnetlib {getattr(args, 'command', '') or ''}".strip()
        try:
            with command_files():  # no output may replace one of the command's inputs
                return command(args)
        except (
            UsageError,
            ValueError,
            TypeError,
            KeyError,
            OSError,
            ImportError,
            RuntimeError,
            MemoryError,
        ) as error:
            if getattr(args, "debug", False) or os.environ.get("RESNETLIB_DEBUG") == "1":
                traceback.print_exc()
            print(f"{prog}: error: {_message(error)}", file=sys.stderr)
            return EXIT_USAGE

    return run


# -- the command --------------------------------------------------------------------------

COMMANDS: dict[str, str] = {
    "train": "resnetlib.train.cli",
    "evaluate": "resnetlib.train.cli",
    "reproduce": "resnetlib.train.cli",
    "export": "resnetlib.deploy.cli",
    "predict": "resnetlib.deploy.cli",
}
"""The module of :data:`SUBCOMMAND_MODULES` that adds each subcommand."""

SUBCOMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))
"""Modules that add subcommands (see the module docstring)."""

_BUILTIN = ("list", "summary")
_GLOBAL_FLAGS = ("--debug",)  # the global options a command word may follow (--version exits)


def _command_word(argv: Sequence[str]) -> str | None:
    """The first word after the global flags; ``None`` if another option comes first."""
    for token in argv:
        if not token.startswith("-"):
            return token
        if token not in _GLOBAL_FLAGS:
            return None
    return None


def _command_modules(command: str | None) -> tuple[str, ...]:
    """``command``'s module and those :data:`COMMANDS` does not name; all for an unknown or none."""
    home = COMMANDS.get(command) if command is not None else None
    if command not in _BUILTIN and home not in SUBCOMMAND_MODULES:
        return SUBCOMMAND_MODULES
    return tuple(m for m in SUBCOMMAND_MODULES if m == home or m not in COMMANDS.values())


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (with every subcommand when ``argv`` is ``None``)."""
    from . import __version__

    description = (__doc__ or "").split("\n\n")[0].replace("``", "")  # no reST in --help
    parser = _Parser(prog="resnetlib", description=description)
    parser.add_argument("--version", action="version", version=f"resnetlib {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (also RESNETLIB_DEBUG=1), for bug reports",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    list_cmd = commands.add_parser("list", help="list registered models")
    list_cmd.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'"
    )
    add_imports(list_cmd)
    summary_cmd = commands.add_parser(
        "summary",
        help="per-stage shapes, parameters, multiply-adds",
        description="Per-stage output shapes, parameters and multiply-adds of a registered "
        "model (with options) or of a checkpoint file.",
    )
    add_model_arguments(summary_cmd, checkpoint_alone=True, required=False)
    summary_cmd.add_argument(
        "--input",
        type=input_size,
        default=None,
        metavar="C,H,W",
        help="input size (default: what the model's stem was designed for)",
    )
    summary_cmd.set_defaults(run=guarded(_run_summary))
    list_cmd.set_defaults(run=guarded(_run_list))
    modules = SUBCOMMAND_MODULES if argv is None else _command_modules(_command_word(argv))
    for module in modules:
        importlib.import_module(module).add_commands(commands)
    for command in commands.choices.values():  # whose refusal a leftover argument is
        if command.get_default("parser") is None:
            command.set_defaults(parser=command)
    commands.metavar = "{" + ",".join(commands.choices) + "}"  # named when none is given
    return parser


def _run_list(args: argparse.Namespace) -> int:
    from .models.zoo import list_models

    import_modules(args.imports)
    names = list_models(args.pattern)
    if not names:
        print(f"no models match {args.pattern!r}", file=sys.stderr)
        return 1
    print("\n".join(names))
    return 0


def _run_summary(args: argparse.Namespace) -> int:
    from .analysis import summary

    defaults = {} if args.input is None else {"in_channels": args.input[0]}  # for a name only
    model, _ = model_from_args(args, defaults=defaults, device="meta")  # shapes only
    if args.input is not None:  # the check export's --input has
        check_input_size(args.input, name="--input", in_channels=model.spec.in_channels)
    print(summary(model, args.input, title=args.model or args.checkpoint))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``resnetlib ARGV...``; the exit status. Ctrl-C is one line and status 130 wherever
    it lands (a command may report more first: train says how to resume)."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = _parser(argv)
        args, extra = parser.parse_known_args(argv)
        # A command's trailing words (predict's images) may follow options: argparse fills a
        # "+" positional from its first run of words only, so later runs are added here.
        words = getattr(args, "words", None)
        if extra and (words is None or any(word.startswith("-") for word in extra)):
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
        if extra and words is not None:
            words.extend(extra)
        return int(args.run(args))
    except KeyboardInterrupt:
        print("resnetlib: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
