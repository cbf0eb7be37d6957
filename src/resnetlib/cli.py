"""The ``resnetlib`` command: list models and summarize one.

Other subsystems add their own subcommands: each module named in :data:`SUBCOMMAND_MODULES`
defines ``add_commands(commands)``, which adds subparsers whose defaults carry
``run=<callable(args) -> int>``. Such a module imports its heavy dependencies inside ``run``,
so ``resnetlib --help`` and ``resnetlib list`` stay as light as ``import resnetlib``.
"""

from __future__ import annotations

import argparse
import collections.abc
import importlib
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .analysis import summary
from .zoo import ModelOverrides, create_model, list_models

__all__ = ["SUBCOMMAND_MODULES", "main"]

SUBCOMMAND_MODULES: tuple[str, ...] = ("resnetlib.train.cli", "resnetlib.deploy.cli")
"""Modules that add subcommands (see the module docstring)."""

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _plain(text: str) -> str:
    """reST markup out of a docstring for ``--help``: roles and double backticks."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def _input_size(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(part) for part in text.split(","))
    except ValueError:
        c = h = w = 0
    if min(c, h, w) < 1:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W of positive ints such as 3,224,224; got {text!r}"
        )
    return c, h, w


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}; got {text!r}")
        return value

    convert.__name__ = "int"
    return convert


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints >= 1 such as 16,32,64; got {text!r}"
        )
    return values


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as groups=32; got {text!r}")
    try:
        value = json.loads(raw)  # 32, 0.5, true, null, "text"
    except json.JSONDecodeError:
        value = raw  # a bare word is a string
    if isinstance(value, (list, dict)):
        raise argparse.ArgumentTypeError(f"{key}: expected a number, true/false or text")
    return key, value


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

# Smallest value of each int override; the rest must be >= 1.
_INT_MINIMUM = {"num_classes": 0}


def _override_option(name: str, hint: Any) -> dict[str, Any]:
    """``add_argument`` keywords for the :class:`ModelOverrides` field ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction, "default": None}
    if hint is int:
        return {"type": _int_at_least(_INT_MINIMUM.get(name, 1)), "metavar": "N"}
    if hint is float:
        return {"type": float, "metavar": "X"}
    if hint is str or (origin in (typing.Union, types.UnionType) and str in args):
        return {"type": str, "metavar": "NAME"}
    if origin is collections.abc.Sequence and args == (int,):
        return {"type": _int_list, "metavar": "N,N,..."}
    if origin is collections.abc.Mapping:
        return {"type": _key_value, "action": "append", "metavar": "KEY=VALUE"}
    raise TypeError(f"the CLI has no option type for override {name!r} ({hint!r})")


def _override_fields() -> dict[str, Any]:
    return typing.get_type_hints(ModelOverrides)


def _add_imports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the models it registers (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    description = _plain((__doc__ or "").split("\n\n")[0])
    parser = argparse.ArgumentParser(prog="resnetlib", description=description)
    parser.add_argument("--version", action="version", version=f"resnetlib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    list_cmd = commands.add_parser("list", help="list registered models")
    list_cmd.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'"
    )
    _add_imports(list_cmd)
    summary_cmd = commands.add_parser(
        "summary",
        help="per-stage shapes, parameters, multiply-adds",
        description="Per-stage output shapes, parameters and multiply-adds of a registered "
        "model (with overrides) or of a checkpoint file.",
    )
    summary_cmd.add_argument(
        "name", help="a registered model name (resnet56) or a checkpoint file (r110.pt)"
    )
    summary_cmd.add_argument(
        "--input",
        type=_input_size,
        default=None,
        metavar="C,H,W",
        help="input size (default: what the model's stem was designed for)",
    )
    _add_imports(summary_cmd)
    overrides = summary_cmd.add_argument_group(
        "model overrides", "any ModelOverrides field (see help(resnetlib.ModelOverrides))"
    )
    for name, hint in _override_fields().items():
        option = "--" + name.replace("_", "-")
        overrides.add_argument(option, dest=name, **_override_option(name, hint))
    summary_cmd.set_defaults(run=_run_summary, parser=summary_cmd)
    list_cmd.set_defaults(run=_run_list, parser=list_cmd)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def _import_modules(parser: argparse.ArgumentParser, modules: Sequence[str]) -> None:
    if not modules:
        return
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's module beside them, as `python -m` finds it
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # an import runs the user's code: any error is theirs
            parser.error(f"--import {module}: {type(error).__name__}: {error}")


def _run_list(args: argparse.Namespace) -> int:
    _import_modules(args.parser, args.imports)
    names = list_models(args.pattern)
    if not names:
        print(f"no models match {args.pattern!r}", file=sys.stderr)
        return 1
    print("\n".join(names))
    return 0


def _run_summary(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    _import_modules(parser, args.imports)
    overrides = {
        name: getattr(args, name) for name in _override_fields() if getattr(args, name) is not None
    }
    if "block_options" in overrides:
        overrides["block_options"] = dict(overrides["block_options"])
    path = Path(args.name)
    try:
        if path.is_file():
            if overrides:
                options = ", ".join("--" + n.replace("_", "-") for n in overrides)
                parser.error(
                    f"{options}: overrides apply to registered models; "
                    f"a checkpoint ({args.name}) keeps the architecture it was saved with"
                )
            from .checkpoint import load

            model = load(path)
            channels = model.spec.in_channels
            if args.input is not None and args.input[0] != channels:
                parser.error(
                    f"--input {','.join(map(str, args.input))}: the checkpoint's model takes "
                    f"{channels} input channels"
                )
        else:
            given = args.input is not None
            if given and overrides.setdefault("in_channels", args.input[0]) != args.input[0]:
                parser.error(
                    f"--input has {args.input[0]} channels but --in-channels is "
                    f"{overrides['in_channels']}; give one"
                )
            if path.suffix in _CHECKPOINT_SUFFIXES or os.sep in args.name:
                parser.error(f"no such checkpoint file: {args.name}")
            model = create_model(args.name, **overrides)
        report = summary(model, args.input, title=args.name)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        parser.error(message)
    print(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
