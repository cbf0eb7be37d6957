"""The ``resnetlib`` command: list models and summarize one.

Other subsystems add their own subcommands: each module named in :data:`SUBCOMMAND_MODULES`
defines ``add_commands(commands)``, which adds subparsers whose defaults carry
``run=<callable(args) -> int>``. Such a module imports its heavy dependencies inside ``run``,
so ``resnetlib --help`` and ``resnetlib list`` stay as light as ``import resnetlib``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .analysis import summary
from .zoo import create_model, list_models

__all__ = ["SUBCOMMAND_MODULES", "main"]

SUBCOMMAND_MODULES: tuple[str, ...] = ("resnetlib.deploy.cli",)
"""Modules that add subcommands (see the module docstring)."""


def _input_size(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W such as 3,224,224; got {text!r}"
        ) from None
    return c, h, w


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnetlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    list_cmd = commands.add_parser("list", help="list registered models")
    list_cmd.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'"
    )
    summary_cmd = commands.add_parser("summary", help="per-stage shapes, parameters, multiply-adds")
    summary_cmd.add_argument("name", help="a registered model name, e.g. resnet56")
    summary_cmd.add_argument(
        "--input",
        type=_input_size,
        default=None,
        metavar="C,H,W",
        help="input size (default: what the model's stem was designed for)",
    )
    summary_cmd.add_argument("--num-classes", type=int, default=None, metavar="N")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = getattr(args, "run", None)
    if run is not None:
        return int(run(args))
    if args.command == "list":
        names = list_models(args.pattern)
        if not names:
            print(f"no models match {args.pattern!r}", file=sys.stderr)
            return 1
        print("\n".join(names))
        return 0
    overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
    try:
        if args.input is not None:
            overrides["in_channels"] = args.input[0]
        model = create_model(args.name, **overrides)
        report = summary(model, args.input, title=args.name)
    except (KeyError, ValueError) as error:
        print(f"resnetlib: error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
