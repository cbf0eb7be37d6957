"""``resnetlib export`` (a model to ONNX, a ``.pt2`` program or a Hugging Face folder) and
``resnetlib predict`` (the top classes of image files)."""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from ..cli import (
    UsageError,
    add_model_arguments,
    device_option,
    guarded,
    input_size,
    int_in,
    model_from_args,
    note_random_weights,
    override_values,
    random_weights,
    split_model_words,
    weights_metadata,
)
from ..common import printable, weights_not_finite
from ..core.data_config import check_data_config
from ..files import check_not_input, open_regular
from ..interop.checkpoint import is_onnx
from ..models.share import save_pretrained
from ..validate import check_input_size
from .export import ONNX_PACKAGES, export_onnx, export_pt2, require, smallest_side, trace_size
from .fuse import fuse_bn
from .preprocess import Normalized, predict
from .quantize import calibration_batches, check_quantize_support
from .runtime import OnnxModel, onnx_argument, refuse_given

__all__ = ["add_commands", "run", "run_hf", "run_predict"]

# export's options that shape a graph, not a --format hf folder: flag -> add_argument keywords.
GRAPH_OPTIONS: dict[str, dict[str, Any]] = {
    "--fuse": {"action": "store_true", "help": "fold batch norms into convolutions first"},
    "--normalize": {
        "action": "store_true",
        "help": "the graph takes images in [0, 1] and normalizes them as the model's "
        "pretrained_cfg says (mean, std)",
    },
    "--input": {
        "type": input_size,
        "metavar": "C,H,W",
        "help": "example input size (default: the model's data config)",
    },
    "--dynamic-size": {
        "action": "store_true",
        "help": "keep height and width dynamic too, not only the batch",
    },
    "--int8": {
        "action": "store_true",
        "help": 'int8 ONNX (QDQ), calibrated on --calibrate; needs "resnetlib[quantize]"',
    },
    "--calibrate": {
        "metavar": "DIR",
        "help": 'calibration images for --int8: "digits" or a data directory resnetlib can load',
    },
}


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``export`` and ``predict`` subcommands to the ``resnetlib`` command."""
    export = commands.add_parser(
        "export",
        help="export a model to ONNX, a torch.export .pt2 file or a Hugging Face folder",
        description=(
            "Export a checkpoint (or a registered model), in eval mode, with a dynamic batch "
            "dimension. --normalize puts the model's normalization (its data config) into the "
            'graph. ONNX needs the export extra: pip install "resnetlib[export]".'
        ),
    )
    add_model_arguments(export, checkpoint_alone=True, required=False)
    export.add_argument(
        "--format",
        choices=("onnx", "pt2", "hf"),
        required=True,
        help="onnx or pt2: a graph file; hf: a folder of weights and config (save_pretrained), "
        "which takes none of the graph options below",
    )
    for flag, keywords in GRAPH_OPTIONS.items():
        export.add_argument(flag, **keywords)
    export.add_argument(
        "--calibration-size",
        type=int_in(1, 1_000_000),
        default=512,
        metavar="N",
        help="calibration images to use (default 512)",
    )
    export.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="file to write, ending in .onnx or .pt2 (replaces only an export of that format), "
        "or the hf folder",
    )
    export.set_defaults(run=guarded(run))

    predict = commands.add_parser(
        "predict",
        help="the top classes of image files",
        description="Read each image as the model's data config says (channels, resize, "
        "centre crop, normalization) and print its top classes with their names. MODEL may "
        "be an ONNX file resnetlib exported: it runs in onnxruntime, fed as its metadata says.",
    )
    add_model_arguments(predict, checkpoint_alone=True, positional=False)
    predict.add_argument(
        "words",
        nargs="+",
        metavar="[MODEL] IMAGE",
        help="the model (a registered name or a checkpoint file; left out with --checkpoint "
        "FILE of a resnetlib checkpoint), then image files",
    )
    predict.add_argument(
        "--top", type=int_in(1, 1000), default=5, metavar="K", help="classes shown (5)"
    )
    predict.add_argument(
        "--batch-size",
        type=int_in(1, 4096),
        default=32,
        metavar="N",
        help="images decoded and run at a time; each batch's lines print as it finishes (32)",
    )
    predict.add_argument("--device", default=None, help="default: cpu")
    predict.set_defaults(run=guarded(run_predict))


def run(args: argparse.Namespace) -> int:
    """Build or load, optionally fuse and normalize, then export (a failure keeps ``--out``)."""
    if args.format == "hf":
        return run_hf(args)
    if args.int8 and (args.format != "onnx" or args.calibrate is None):
        raise UsageError("--int8 needs --format onnx and --calibrate DIR (or --calibrate digits)")
    if args.calibrate is not None and not args.int8:
        raise UsageError("--calibrate is used only with --int8; add --int8 or drop it")
    out = out_path(args.out, args.format)
    if args.format == "onnx":
        require(ONNX_PACKAGES, "ONNX export")
    defaults = {} if args.input is None else {"in_channels": args.input[0]}
    model, _ = model_from_args(args, defaults=defaults)
    _check_finite(model)
    check_not_input(out)  # before a long trace, not only when writing
    model = model.eval()
    config = check_data_config(model.pretrained_cfg)  # before a byte is allocated for it
    if args.input is not None:  # the export functions check it again, in the same function
        check_input_size(args.input, name="--input", in_channels=model.spec.in_channels)
    if args.fuse:
        model = fuse_bn(model)
    exported = Normalized(model).eval() if args.normalize else model
    size = args.input or tuple(config.get("input_size") or model.default_input_size)
    calibration = None
    if args.int8:
        from ..train.data import load_data

        check_quantize_support()
        images = load_data(str(args.calibrate)).train.images
        # for the graph's input: in [0, 1] with --normalize (float up to the first int8 op)
        calibration = calibration_batches(
            images, exported, size=args.calibration_size, input_size=args.input
        )
    if args.format == "onnx":  # both write beside --out and rename: all or nothing
        export_onnx(exported, out, size, dynamic_size=args.dynamic_size, calibration=calibration)
    else:
        export_pt2(exported, out, size, dynamic_size=args.dynamic_size)
    kind = "onnx int8 QDQ" if args.int8 else args.format
    notes = "dynamic batch"
    if args.dynamic_size:
        notes += f", height and width (each at least {smallest_side(exported)})"
    traced = trace_size(exported, size, dynamic_size=args.dynamic_size)
    if args.dynamic_size and calibration is None and traced != tuple(size):
        notes += f", traced at {traced[1]}x{traced[2]} since {size[1]}x{size[2]} would fix the size"
    notes += ", batch norms folded" if args.fuse else ""
    notes += ", random weights (no --pretrained or --checkpoint)" if random_weights(args) else ""
    notes += ", normalization inside (inputs in [0, 1])" if args.normalize else ""
    print(f"wrote {printable(out)} ({kind}, {notes})")
    return 0


EXPORT_SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2"}


def out_path(out: str, form: str) -> Path:
    """``--out`` for ``--format form``, checked for every format: its directory exists and is
    writable (an hf folder's own, when it exists). A file format's name ends in its suffix, and
    a file there is replaced only when it is an export of that format (never a checkpoint); a
    symbolic link there is replaced, not what it leads to."""
    path = Path(out)
    where = path if form == "hf" and path.is_dir() else path.parent
    if not where.is_dir():
        raise UsageError(f"--out {printable(path)}: directory {printable(where)} does not exist")
    if not os.access(where, os.W_OK):
        raise UsageError(f"--out {printable(path)}: directory {printable(where)} is not writable")
    if form == "hf":  # save_pretrained refuses a file or a folder of other files
        return path
    if path.is_dir():
        raise UsageError(f"--out {printable(path)}: is a directory; give a file path")
    suffix = EXPORT_SUFFIXES[form]
    if path.suffix.lower() != suffix:
        raise UsageError(
            f"--out {printable(path)}: a --format {form} file's name ends in {suffix}; give "
            f"--out {printable(path.with_suffix(suffix))}"
        )
    # a link is replaced itself, never written through (a link to an input: check_not_input)
    if os.path.lexists(path) and not path.is_symlink() and not _an_export(path, form):
        raise UsageError(
            f"--out {printable(path)}: an existing file that is not a --format {form} export "
            "would be overwritten; choose another --out or delete it"
        )
    return path


def _an_export(path: Path, form: str) -> bool:
    """Whether ``path`` is a regular file of ``form``: ONNX by its bytes (``is_onnx``), a
    ``.pt2`` by its zip archive's ``archive_format`` record."""
    if not path.is_file():
        return False
    with open_regular(path, what="an export", error=UsageError, own=True) as file:
        if form == "onnx":
            return is_onnx(file.read(16))
        if file.read(4) != b"PK\x03\x04":
            return False
        try:
            names = zipfile.ZipFile(file).namelist()
        except (zipfile.BadZipFile, OSError):
            return False
    return any(name.endswith("/archive_format") for name in names)


def _check_finite(model: Any) -> None:
    """Refuse to export weights that hold NaN or inf (``evaluate`` and ``predict`` would refuse
    what the export computes)."""
    if weights := weights_not_finite(model):
        raise UsageError(f"the model's weights {weights}; export a model with finite weights")


def run_hf(args: argparse.Namespace) -> int:
    """``export --format hf``: a Hugging Face folder at ``--out`` (with its weights' metadata)."""
    names = [flag[2:].replace("-", "_") for flag in GRAPH_OPTIONS]  # False: a flag not given
    given = {name: None if (v := getattr(args, name, None)) is False else v for name in names}
    refuse_given(given, "not used by --format hf (a folder of weights)")
    out = out_path(args.out, "hf")
    model, _ = model_from_args(args)
    _check_finite(model)
    save_pretrained(model, out, metadata=weights_metadata(args))
    random = ", random weights" if random_weights(args) else ""
    print(
        f"wrote {printable(out)} (Hugging Face folder: model.safetensors, config.json, "
        f"README.md{random})"
    )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Print the top classes of each image, a batch at a time as they are decoded; names
    and paths with their control characters escaped, so each result is one line."""
    args.images = split_model_words(args, args.words)
    if not args.images:
        raise UsageError("name the image files to classify (resnetlib predict MODEL IMAGE...)")
    for path in args.images:  # before a result prints; the decoder checks each again
        if not Path(path).exists():
            raise UsageError(f"{printable(path)}: no such image file")
        if not Path(path).is_file():
            raise UsageError(f"{printable(path)}: not a regular file; predict reads image files")
    given = {**override_values(args), "pretrained": args.pretrained, "checkpoint": args.checkpoint}
    model = onnx_argument(args.model, given, args.device)  # run by onnxruntime, or None
    if model is None:
        model, _ = model_from_args(args)
    model.to(device_option(args.device or "cpu"))
    results = predict(model, args.images, top=args.top, batch_size=args.batch_size)
    if not isinstance(model, OnnxModel):  # said once the model is taken, not beside a refusal
        note_random_weights(args)
    for count, prediction in enumerate(results, 1):
        ranked = ", ".join(
            f"{printable(name)}{'' if name == str(index) else f' ({index})'} {100 * p:.1f}%"
            for index, name, p in prediction.classes
        )
        print(f"{printable(prediction.path)}: {ranked}", flush=count % args.batch_size == 0)
    sys.stdout.flush()
    return 0
