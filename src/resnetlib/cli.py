"""The ``resnetlib`` command: list, summarize, train, evaluate, predict, export, reproduce.

Other subsystems add their own subcommands: each module named in :data:`SUBCOMMAND_MODULES`
defines ``add_commands(commands)``, which adds subparsers whose defaults carry
``run=<callable(args) -> int>``. Such a module imports its heavy dependencies inside ``run``,
so ``resnetlib --help`` and ``resnetlib list`` stay as light as ``import resnetlib``. Every
command that takes a model takes the same options (:mod:`resnetlib.cli_options`).
"""

from __future__ import annotations

import argparse
import importlib
import re
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

__all__ = ["SUBCOMMAND_MODULES", "main"]

SUBCOMMAND_MODULES: tuple[str, ...] = ("resnetlib.train.cli", "resnetlib.deploy.cli")
"""Modules that add subcommands (see the module docstring)."""

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _plain(text: str) -> str:
    """reST markup out of a docstring for ``--help``: roles and double backticks."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    description = _plain((__doc__ or "").split("\n\n")[0])
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
    add_model_arguments(summary_cmd, checkpoint_alone=True)
    summary_cmd.add_argument(
        "--input",
        type=input_size,
        default=None,
        metavar="C,H,W",
        help="input size (default: what the model's stem was designed for)",
    )
    summary_cmd.set_defaults(run=guarded(_run_summary), parser=summary_cmd)
    list_cmd.set_defaults(run=guarded(_run_list), parser=list_cmd)
    for module in SUBCOMMAND_MODULES:
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
    if args.input is not None and not is_checkpoint_path(args.model):
        defaults["in_channels"] = args.input[0]
    model, _ = model_from_args(args, defaults=defaults, device="meta")  # shapes only
    channels = model.spec.in_channels
    if args.input is not None and args.input[0] != channels:
        raise UsageError(
            f"--input {','.join(map(str, args.input))} has {args.input[0]} channels; the "
            f"model takes {channels}"
        )
    print(summary(model, args.input, title=args.model))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
