"""``resnetlib export NAME --format onnx|pt2 --out PATH``: a registered model to a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_commands", "run"]


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``export`` subcommand to the ``resnetlib`` command."""
    from ..cli import _input_size

    export = commands.add_parser(
        "export",
        help="export a model to ONNX or a torch.export .pt2 file (dynamic batch size)",
        description=(
            "Export a registered model, in eval mode, with a dynamic batch dimension. "
            'ONNX needs the export extra: pip install "resnetlib[export]".'
        ),
    )
    export.add_argument("name", help="a registered model name, e.g. resnet50")
    export.add_argument("--format", choices=("onnx", "pt2"), required=True)
    export.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
        help="weights: a resnetlib checkpoint or a state dict file (default: random init)",
    )
    export.add_argument(
        "--fuse", action="store_true", help="fold batch norms into convolutions first"
    )
    export.add_argument(
        "--input",
        type=_input_size,
        default=None,
        metavar="C,H,W",
        help="example input size (default: what the model's stem was designed for)",
    )
    export.add_argument(
        "--dynamic-size",
        action="store_true",
        help="keep height and width dynamic too, not only the batch",
    )
    export.add_argument(
        "--int8",
        action="store_true",
        help='int8 ONNX (QDQ), calibrated on --calibrate; needs "resnetlib[quantize]"',
    )
    export.add_argument(
        "--calibrate",
        metavar="DIR",
        default=None,
        help='calibration images for --int8: "digits" or a data directory resnetlib can load',
    )
    export.add_argument(
        "--calibration-size",
        type=int,
        default=512,
        metavar="N",
        help="calibration images to use (default 512)",
    )
    export.add_argument("--out", required=True, metavar="PATH", help="file to write")
    export.set_defaults(run=run)


def _fail(message: str) -> int:
    print(f"resnetlib export: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Build, optionally load and fuse, then export; one-line errors, exit status 2."""
    from ..interop.checkpoint import CheckpointError
    from ..models.zoo import create_model
    from .export import ONNX_PACKAGES, MissingDependencyError, export_onnx, export_pt2, require
    from .fuse import fuse_bn

    out = Path(args.out)
    if not out.parent.is_dir():
        return _fail(f"--out {out}: directory {out.parent} does not exist")
    if out.is_dir():
        return _fail(f"--out {out}: is a directory; give a file path")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        return _fail(f"--checkpoint {args.checkpoint}: no such file")
    int8 = getattr(args, "int8", False)
    calibrate = getattr(args, "calibrate", None)
    if int8 and (args.format != "onnx" or calibrate is None):
        return _fail("--int8 needs --format onnx and --calibrate DIR (or --calibrate digits)")
    if calibrate is not None and not int8:
        return _fail("--calibrate is used only with --int8; add --int8 or drop it")
    try:
        if args.format == "onnx":
            require(ONNX_PACKAGES, "ONNX export")
        overrides = {} if args.input is None else {"in_channels": args.input[0]}
        model = create_model(args.name, checkpoint_path=args.checkpoint, **overrides).eval()
        if args.fuse:
            model = fuse_bn(model)
        dynamic_size = bool(getattr(args, "dynamic_size", False))
        if int8:
            from ..train.data import load_data
            from .quantize import calibration_batches, check_quantize_support

            check_quantize_support()
            images = load_data(str(calibrate)).train.images
            size = getattr(args, "calibration_size", 512)
            batches = calibration_batches(images, model, size=size)
            export_onnx(model, out, calibration=batches, dynamic_size=dynamic_size)
        elif args.format == "onnx":
            export_onnx(model, out, args.input, dynamic_size=dynamic_size)
        else:
            export_pt2(model, out, args.input, dynamic_size=dynamic_size)
    except (MissingDependencyError, ImportError) as error:
        return _fail(str(error))
    except KeyError as error:
        return _fail(str(error.args[0]) if error.args else "unknown name")
    except (CheckpointError, ValueError, OSError, RuntimeError) as error:
        return _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    fused = ", batch norms folded" if args.fuse else ""
    dynamic = "dynamic batch, height and width" if dynamic_size else "dynamic batch"
    kind = "onnx int8 QDQ" if int8 else args.format
    print(f"wrote {out} ({kind}, {dynamic}{fused})")
    return 0
