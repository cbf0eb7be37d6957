"""``resnetlib export MODEL --format hf --out FOLDER``: a Hugging Face model folder
(:func:`resnetlib.save_pretrained`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_options import UsageError, is_checkpoint_path, model_from_args

__all__ = ["run_hf"]


def out_path(out: str) -> Path:
    """``--out`` as a path, refused when its directory does not exist."""
    path = Path(out)
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: directory {path.parent} does not exist")
    return path


def run_hf(args: argparse.Namespace) -> int:
    """Write the model (a checkpoint's metadata in its card) as a folder at ``--out``."""
    from ..interop.checkpoint import read_checkpoint
    from ..models.share import CONFIG, save_pretrained
    from .cli import GRAPH_OPTIONS
    from .runtime import refuse_given

    names = [flag[2:].replace("-", "_") for flag in GRAPH_OPTIONS]  # False: a flag not given
    given = {name: None if (v := getattr(args, name, None)) is False else v for name in names}
    refuse_given(given, "not used by --format hf (a folder of weights)")
    out = out_path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; --format hf writes a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG).is_file():
        raise UsageError(f"--out {out}: a folder that holds other files; give a new or empty one")
    model, _ = model_from_args(args)
    metadata = read_checkpoint(args.model).metadata if is_checkpoint_path(args.model) else {}
    save_pretrained(model, out, metadata=metadata)
    print(f"wrote {out} (Hugging Face folder: model.safetensors, config.json, README.md)")
    return 0
