"""Hugging Face model folders as timm shares models, read by ``local-dir:`` or ``hf-hub:``:
``model.safetensors`` (timm's names), ``config.json`` (timm's keys, resnetlib's spec under
``"resnetlib"``), ``README.md`` and ``checksums.sha256`` (``sha256sum``'s format; required in
a folder resnetlib wrote). Reading verifies the checksums, bounds the weights by the spec and
checks them against it before anything is built; nothing is imported or run."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from ..common import PathLike, printable
from ..core.data_config import check_data_config, fitted_data_config, set_data_config
from ..core.model import ResNet
from ..core.spec import ResNetSpec
from ..files import atomic_write, dump_json, parse_json, read_bytes, read_json, read_text
from ..interop.checkpoint import (
    CheckpointError,
    build_loaded,
    check_tensors,
    is_checkpoint,
    read_safetensors,
    safetensors_module,
    savable_state,
    weights_limit,
)
from ..limits import MAX_JSON_BYTES
from .pretrained import hub_file
from .weights import TIMM_DEFAULTS

__all__ = [
    "CHECKSUMS",
    "CONFIG",
    "SHARED_PREFIXES",
    "WEIGHTS",
    "load_shared",
    "save_pretrained",
    "shared_metadata",
]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
CHECKSUMS = "checksums.sha256"
SHARED_PREFIXES = ("local-dir:", "hf-hub:")
"""Model names :func:`~resnetlib.create_model` reads from a folder rather than the registry."""

FORMAT = "resnetlib.hf-folder"
FORMAT_VERSION = 1

# timm's model_args resnetlib reads, and the override each becomes (None: training-only).
_TIMM_ARGS: dict[str, str | None] = {
    "in_chans": "in_channels",
    "num_classes": "num_classes",
    "drop_path_rate": "drop_path_rate",
    "drop_rate": None,
    "global_pool": None,  # resnetlib pools by average, timm's "avg" (checked)
}
# pretrained_cfg keys written to config.json (timm drops sources such as file and url too).
_CFG_KEYS = (
    "input_size",
    "test_input_size",
    "interpolation",
    "crop_pct",
    "test_crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
    "pool_size",
    "first_conv",
    "classifier",
    "label_names",
    "license",
    "tag",
    "origin_url",
    "paper_ids",
)
_NEEDS_RESNETLIB = (
    "This model is resnetlib's own (no timm architecture has its layout): load it with "
    'resnetlib.create_model("hf-hub:ORG/NAME") or ("local-dir:FOLDER"); '
    "timm.create_model refuses it as an unknown model."
)
_MAX_CHECKSUMS_BYTES = 64 << 10
_LINE = re.compile(r"([0-9a-f]{64}) [ *]([A-Za-z0-9._-]{1,100})")
_REPO = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def _name_of(spec: ResNetSpec, names: Iterable[str] | None = None) -> str | None:
    """The first registered name of ``names`` (default: all, resnetlib's own before a user's)
    whose network ``spec`` is, head, input and drop path aside."""
    from .zoo import MODELS, model_spec

    def foreign(name: str) -> bool:
        return not str(getattr(MODELS.get(name), "__module__", "")).startswith("resnetlib.")

    for name in sorted(MODELS.names(), key=foreign) if names is None else names:
        if name not in MODELS:
            continue
        try:
            ref = model_spec(name, num_classes=spec.num_classes, in_channels=spec.in_channels)
        except (TypeError, ValueError):  # a user's factory that takes neither
            continue
        if replace(spec, zero_init_residual=ref.zero_init_residual, drop_path_rate=0.0) == ref:
            return name
    return None


def _card(model: ResNet, config: Mapping[str, Any]) -> str:
    architecture, library = config["architecture"], config["library_name"]
    cfg, metadata = config["pretrained_cfg"], config["resnetlib"]["metadata"]
    lines = [
        "---",
        "tags:",
        "- image-classification",
        *(["- timm"] if library == "timm" else []),
        "- resnetlib",
        f"library_name: {library}",
        "---",
        "",
        f"# {architecture}",
        "",
        f"A ResNet written by resnetlib's `save_pretrained` (`{architecture}`).",
        "",
        "## Model details",
        "",
        f"- Parameters: {sum(p.numel() for p in model.parameters()):,}",
        f"- Classes: {model.num_classes}",
        f"- Input size: {tuple(cfg.get('input_size', model.default_input_size))}",
        f"- Mean: {tuple(round(v, 4) for v in cfg.get('mean', ()))}",
        f"- Std: {tuple(round(v, 4) for v in cfg.get('std', ()))}",
        f"- Crop: {cfg.get('crop_pct')} ({cfg.get('interpolation')} resize)",
        "",
    ]
    data, metrics = metadata.get("data"), metadata.get("metrics")
    record = {k: v for k, v in metadata.items() if k not in ("data", "metrics")}
    if data is not None or metrics or record:
        lines += ["## Training", ""]
        if data is not None:
            lines += [f"- Data: {data}"]
        if isinstance(metrics, Mapping):
            lines += [f"- {key}: {value}" for key, value in metrics.items()]
        lines += [f"- {key}: {value}" for key, value in record.items()]
        lines += [""]
    lines += ["## Use", "", "```python", "import resnetlib", ""]
    lines += ['model = resnetlib.create_model("hf-hub:ORG/NAME")', "```", ""]
    if library == "timm":
        lines += ["or with timm:", "", "```python", "import timm", ""]
        lines += ['model = timm.create_model("hf-hub:ORG/NAME", pretrained=True)', "```", ""]
    else:
        lines += [_NEEDS_RESNETLIB, ""]
    lines += [f"`{CHECKSUMS}` holds each file's SHA-256 (`sha256sum -c {CHECKSUMS}`).", ""]
    return "\n".join(lines)


def save_pretrained(
    model: ResNet, folder: PathLike, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` as a Hugging Face model folder, returned, that
    ``create_model("local-dir:...")`` (and ``timm.create_model``, for its architectures)
    rebuilds; upload it with ``huggingface-cli upload ORG/NAME FOLDER``. ``metadata`` (JSON
    values) goes into the card and config.json, ``data`` and ``metrics`` (a dict) on lines of
    their own in the card. Files are written atomically, ``checksums.sha256`` last.

    Raises:
        TypeError: ``model`` is not a resnetlib ``ResNet``.
        ValueError: a fused model, a model that no longer matches its spec, metadata or a
            data config that JSON cannot hold.
        NotADirectoryError: ``folder`` is a file.
        FileExistsError: ``folder`` holds anything but an earlier ``save_pretrained`` output
            (its four files, then replaced); nothing is written.
        OSError: a file could not be written.
    """
    state = savable_state(model, "save_pretrained")
    root = Path(folder)
    _check_folder(root)
    spec = model.spec
    meta = dict(metadata or {})
    dump_json(meta, what="metadata")
    checked = fitted_data_config(model, model.pretrained_cfg)  # as loading fits it
    cfg = {key: checked[key] for key in _CFG_KEYS if key in checked}
    cfg["num_classes"] = model.num_classes
    timm_name = _name_of(spec, TIMM_DEFAULTS)
    architecture = timm_name or f"resnetlib/{_name_of(spec) or 'custom'}"
    model_args: dict[str, Any] = {"in_chans": spec.in_channels} if spec.in_channels != 3 else {}
    if spec.drop_path_rate:
        model_args["drop_path_rate"] = spec.drop_path_rate
    config: dict[str, Any] = {
        "architecture": architecture,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "library_name": "timm" if timm_name else "resnetlib",
        **({"model_args": model_args} if model_args else {}),
        "pretrained_cfg": {"architecture": architecture, **cfg},
        "resnetlib": {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "needs_resnetlib": timm_name is None,
            **({} if timm_name else {"note": _NEEDS_RESNETLIB}),
            "spec": spec.to_dict(),
            "metadata": meta,
        },
    }
    config_bytes = (dump_json(config, what="config.json", indent=2) + "\n").encode()
    weights: bytes = safetensors_module().save(
        dict(sorted(state.items())), metadata={"format": "pt"}
    )
    card = _card(model, config).encode()
    root.mkdir(parents=True, exist_ok=True)
    files = {WEIGHTS: weights, CONFIG: config_bytes, CARD: card}
    sums = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()
    ).encode()
    for name, data in {**files, CHECKSUMS: sums}.items():  # the checksums last
        atomic_write(root / name, data)
    return root


def _check_folder(root: Path) -> None:
    """Refuse a file, or a folder holding anything but an earlier save_pretrained output (its
    regular files beside a config.json of ``FORMAT``); a missing or empty folder passes."""
    if not root.is_dir():
        if root.exists() or root.is_symlink():
            raise NotADirectoryError(
                f"{printable(root)}: is a file, not a folder; save_pretrained writes a folder "
                "(model.safetensors, config.json, ...): give a new or empty folder"
            )
        return
    names = sorted(os.listdir(root))
    ours = (WEIGHTS, CONFIG, CARD, CHECKSUMS)
    foreign = [
        n for n in names if n not in ours or (root / n).is_symlink() or not (root / n).is_file()
    ]
    if names and not foreign:
        try:  # the command's own output, not an input: own=True
            config = read_json(root / CONFIG, what=CONFIG, own=True)
        except (OSError, ValueError):  # not a regular file, too large, not JSON
            config = None
        own = config.get("resnetlib") if isinstance(config, dict) else None
        if not (isinstance(own, Mapping) and own.get("format") == FORMAT):
            foreign = names  # no config.json of resnetlib's says the others are its own
    if foreign:
        shown = ", ".join(printable(n) for n in sorted(foreign)[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise FileExistsError(
            f"{printable(root)}: holds files save_pretrained did not write ({shown}{more}), "
            "which it would replace or mix with; give a new or empty folder, or one that "
            "holds only an earlier save_pretrained output"
        )


# Where a folder's file comes from: (file name, required=True) -> its local path, or None.
FileSource = Callable[..., Path | None]


def _local_file(folder: Path, name: str, required: bool = True) -> Path | None:
    path = folder / name
    if os.path.lexists(path):  # a link that leads nowhere, or to itself, is the gate's to refuse
        return path
    if required:
        raise FileNotFoundError(f"{folder}: no {name}; not a model folder (save_pretrained)")
    return None


def _checksums(path: Path, where: str) -> dict[str, str]:
    text = read_text(path, limit=_MAX_CHECKSUMS_BYTES, what=CHECKSUMS, error=CheckpointError)
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line.strip())
        if not match or match[2] in sums:
            raise CheckpointError(
                f"{where}: {CHECKSUMS} line {number} is not '<sha256>  <file>' (once per file)"
            )
        sums[match[2]] = match[1]
    return sums


def _verify(sums: dict[str, str] | None, name: str, data: bytes, where: str) -> None:
    if sums is None:
        return
    if name not in sums:
        raise CheckpointError(f"{where}: {CHECKSUMS} has no checksum for {name}")
    if hashlib.sha256(data).hexdigest() != sums[name]:
        raise CheckpointError(
            f"{where}: {name} does not match its checksum in {CHECKSUMS} (changed or damaged "
            "since it was saved); download or save it again"
        )


def _timm_spec(config: Mapping[str, Any], where: str) -> ResNetSpec:
    from .zoo import MODELS, model_spec

    architecture = config.get("architecture")
    if not isinstance(architecture, str):
        raise CheckpointError(f"{where}: {CONFIG} names no architecture")
    name = architecture.split(".", 1)[0]
    if name not in TIMM_DEFAULTS or name not in MODELS:
        raise CheckpointError(
            f"{where}: architecture {architecture[:100]!r} is not one resnetlib builds "
            f"(timm's {', '.join(TIMM_DEFAULTS)})"
        )
    args = config.get("model_args") or {}
    if not isinstance(args, Mapping) or set(args) - set(_TIMM_ARGS):
        raise CheckpointError(
            f"{where}: model_args {args!r:.200} are not ones resnetlib reads "
            f"({', '.join(_TIMM_ARGS)})"
        )
    if args.get("global_pool", "avg") != "avg":
        raise CheckpointError(
            f"{where}: model_args global_pool {args['global_pool']!r:.50}; resnetlib pools "
            "by average ('avg')"
        )
    overrides = {str(_TIMM_ARGS[k]): v for k, v in args.items() if _TIMM_ARGS[k] is not None}
    classes = overrides.setdefault("num_classes", config.get("num_classes", 1000))
    if classes != config.get("num_classes", classes):
        raise CheckpointError(
            f"{where}: {CONFIG} says num_classes {config['num_classes']!r:.50} and model_args "
            f"{classes!r:.50}"
        )
    try:
        return model_spec(name, **overrides)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: {CONFIG}: {error}") from None


def _spec_of(config: Mapping[str, Any], where: str) -> ResNetSpec:
    own = config["resnetlib"]
    if not isinstance(own, Mapping) or own.get("format") != FORMAT:
        raise CheckpointError(f"{where}: {CONFIG}'s resnetlib entry is not format {FORMAT!r}")
    if own.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: folder format_version {own.get('format_version')!r:.40} is not the "
            f"{FORMAT_VERSION} this resnetlib reads"
        )
    try:
        spec = ResNetSpec.from_dict(own.get("spec") or {})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: invalid spec in {CONFIG}: {error}") from None
    if config.get("num_classes", spec.num_classes) != spec.num_classes:
        raise CheckpointError(f"{where}: {CONFIG}'s num_classes disagrees with its spec")
    return spec


def _config(files: FileSource, where: str) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A folder's config.json, checked against its checksums, and those (``None``: no file)."""
    config_path = files(CONFIG)
    assert config_path is not None  # a required file is a path or an error
    config_bytes = read_bytes(config_path, limit=MAX_JSON_BYTES, what=CONFIG, error=CheckpointError)
    sums_path = files(CHECKSUMS, required=False)
    sums = None if sums_path is None else _checksums(sums_path, where)
    _verify(sums, CONFIG, config_bytes, where)  # before a byte of it is parsed
    config = parse_json(config_bytes, where=f"{where}/{CONFIG}", error=CheckpointError)
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: {CONFIG} is not a JSON object")
    return config, sums


def _load(files: FileSource, where: str, source: dict[str, Any]) -> ResNet:
    config, sums = _config(files, where)
    ours = "resnetlib" in config
    if ours and sums is None:
        raise CheckpointError(
            f"{where}: no {CHECKSUMS}, which every folder resnetlib writes has; save or "
            "download the whole folder again"
        )
    spec = _spec_of(config, where) if ours else _timm_spec(config, where)
    cfg = config.get("pretrained_cfg", {})
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{where}: {CONFIG}'s pretrained_cfg is not a JSON object")
    cfg = {k: v for k, v in cfg.items() if k not in ("architecture", "file", "url")}
    if "label_names" in config:  # timm's save_for_hf writes them at the top level
        cfg["label_names"] = config["label_names"]
    cfg["num_classes"] = spec.num_classes
    try:
        cfg = check_data_config(cfg, where=f"{where}/{CONFIG} pretrained_cfg")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    weights_path = files(WEIGHTS)
    assert weights_path is not None  # a required file is a path or an error
    limit = weights_limit(where, spec)
    data = read_bytes(weights_path, limit=limit, what=WEIGHTS, error=CheckpointError)
    _verify(sums, WEIGHTS, data, where)
    state = read_safetensors(f"{where}/{WEIGHTS}", data)
    if not isinstance(state, dict) or is_checkpoint(state):
        raise CheckpointError(f"{where}: {WEIGHTS} is not a plain safetensors state dict")
    check_tensors(f"{where}/{WEIGHTS}", state)
    model = build_loaded(f"{where}/{WEIGHTS}", spec, state, None)
    # As timm does: the folder's keys over its architecture's defaults (a timm config.json
    # may hold no mean, std or crop).
    set_data_config(model, {**model.pretrained_cfg, **cfg, **source})
    return model


def _folder(name: str) -> tuple[FileSource, str, dict[str, Any]]:
    """Where the files of ``name`` come from, how errors name it, and its data config's source."""
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :]).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{name}: {folder} is not a folder")
        return partial(_local_file, folder), str(folder), {"source": "local-dir"}
    if not name.startswith("hf-hub:"):
        raise ValueError(f"{name!r:.200} names neither local-dir:FOLDER nor hf-hub:ORG/NAME")
    repo, _, revision = name[len("hf-hub:") :].partition("@")
    if not _REPO.fullmatch(repo) or ".." in repo:
        raise ValueError(f"{name!r:.200}: hf-hub: takes a repository ORG/NAME[@REVISION]")
    source = {"source": "hf-hub", "hf_hub_id": repo}
    return partial(hub_file, repo, revision=revision or None), name, source


def load_shared(name: str) -> ResNet:
    """The model of ``"local-dir:FOLDER"`` or ``"hf-hub:ORG/NAME[@REVISION]"`` (through
    huggingface_hub's cache; ``HF_HUB_OFFLINE=1`` reads only the cache), with its weights
    and data config, in training mode on the CPU.

    Raises:
        CheckpointError: a folder that is not an intact model folder (a checksum mismatch,
            an architecture resnetlib does not build, weights that do not fit).
        FileNotFoundError: a local folder without config.json or model.safetensors.
        PretrainedError: a hub file that could not be downloaded or is not in the cache.
        ModuleNotFoundError: ``hf-hub:`` without huggingface_hub (the ``hub`` extra).
    """
    return _load(*_folder(name))


def shared_metadata(name: str) -> dict[str, Any]:
    """The ``metadata`` that :func:`save_pretrained` wrote into the config.json of the folder
    ``name`` (as :func:`load_shared` names it); ``{}`` for a folder resnetlib did not write.

    Raises:
        CheckpointError, FileNotFoundError, PretrainedError: as :func:`load_shared`.
    """
    files, where, _ = _folder(name)
    own = _config(files, where)[0].get("resnetlib")
    metadata = own.get("metadata", {}) if isinstance(own, Mapping) else {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{where}: {CONFIG}'s resnetlib metadata is not a JSON object")
    return metadata
