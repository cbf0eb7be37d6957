"""The ``resnetlib`` command: list, summarize, train, evaluate, predict, export, reproduce.

A module of :data:`SUBCOMMAND_MODULES` adds its subcommands with ``add_commands(commands)``
(their defaults carry ``run=<callable(args) -> int>``), importing heavy dependencies only
inside ``run``. :data:`COMMANDS` says which module adds which command, so ``resnetlib train``
imports that module alone; ``--help``, no command or an unknown one imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .cli_options import (
    UsageError,
    add_imports,
    add_model_arguments,
    guarded,
    import_modules,
    input_size,
    is_checkpoint_path,
    model_from_args,
)

__all__ = ["COMMANDS", "SUBCOMMAND_MODULES", "main"]

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
    """The subcommand ``argv`` names: its first word after the global flags, or ``None``
    when there is none or something else (``--help``, an unknown option) comes first."""
    for token in argv:
        if not token.startswith("-"):
            return token
        if token not in _GLOBAL_FLAGS:
            return None
    return None


def _command_modules(command: str | None) -> tuple[str, ...]:
    """The modules to import to run ``command``: its own (if any) and those :data:`COMMANDS`
    does not name (they may add any command); all of them for an unknown or no command."""
    modules = SUBCOMMAND_MODULES
    known = set(COMMANDS.values())
    home = COMMANDS.get(command) if command is not None else None
    if command not in _BUILTIN and home not in modules:
        return modules
    return tuple(m for m in modules if m == home or m not in known)


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (with every subcommand when ``argv`` is ``None``)."""
    from . import __version__

    description = (__doc__ or "").split("\n\n")[0].replace("``", "")  # no reST in --help
    parser = argparse.ArgumentParser(prog="resnetlib", description=description)
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
    summary_cmd.set_defaults(run=guarded(_run_summary), parser=summary_cmd)
    list_cmd.set_defaults(run=guarded(_run_list), parser=list_cmd)
    modules = SUBCOMMAND_MODULES if argv is None else _command_modules(_command_word(argv))
    for module in modules:
        importlib.import_module(module).add_commands(commands)
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

    defaults = {}
    if args.input is not None and args.model and not is_checkpoint_path(args.model):
        defaults["in_channels"] = args.input[0]
    model, _ = model_from_args(args, defaults=defaults, device="meta")  # shapes only
    channels = model.spec.in_channels
    if args.input is not None and args.input[0] != channels:
        raise UsageError(
            f"--input {','.join(map(str, args.input))} has {args.input[0]} channels; the "
            f"model takes {channels}"
        )
    print(summary(model, args.input, title=args.model or args.checkpoint))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
    args, extra = parser.parse_known_args(argv)
    # A command's trailing words (predict's images) may follow options: argparse fills a
    # "+" positional from its first run of words only, so later runs are added here.
    words = getattr(args, "words", None)
    if extra and (words is None or any(word.startswith("-") for word in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra and words is not None:
        words.extend(extra)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
