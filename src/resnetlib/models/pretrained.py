"""Fetching registered pretrained weights into torch.hub's cache (``checkpoints``) or, for Hub
files, huggingface_hub's (the ``hub`` extra), and loading them. Every file with a published
checksum is checked, cached ones too, but not hashed again while unchanged (path, size, mtime)
since it was (records under ``torch.hub.get_dir()/resnetlib-verified``)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
import torch.hub

from ..common import PathLike, first_line, optional_import
from ..core.data_config import set_data_config
from ..core.model import ResNet
from ..files import atomic_write, open_regular, read_json
from ..interop.checkpoint import Checkpoint, read_weights_file
from ..interop.convert import load_weights
from .weights import PretrainedWeights

__all__ = ["PretrainedError", "load_pretrained", "weights_file"]


class PretrainedError(RuntimeError):
    """Pretrained weights that could not be downloaded or fail their checksum; the message
    names the URL (or hub file) and the cache path."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path, what="pretrained weights", error=PretrainedError) as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _check(entry: PretrainedWeights, path: Path, where: str) -> None:
    """Hash ``path`` unless the cache's record says it was, unchanged since."""
    expected = entry.sha256 or entry.hash_prefix
    if expected is None:
        return
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    record = Path(torch.hub.get_dir()) / "resnetlib-verified" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError):
        known = read_json(record, own=True)
        fresh = isinstance(known, dict) and known.get("file") == _fingerprint(path)
        digest = known.get("sha256") if fresh else None
        if isinstance(digest, str) and digest.startswith(expected):
            return
    actual = _sha256(path)
    if not actual.startswith(expected):
        raise PretrainedError(
            f"checksum mismatch for {entry.name} from {where}: the file at {path} has "
            f"SHA-256 {actual}, but the publisher's is {expected}...; delete the file to "
            "download it again"
        )
    with contextlib.suppress(OSError):
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(record, json.dumps({"file": _fingerprint(path), "sha256": actual}).encode())


def hub_file(
    repo: str, filename: str, *, revision: str | None = None, required: bool = True
) -> Path | None:
    """The local path of ``filename`` in the Hugging Face Hub repository ``repo``, through
    huggingface_hub's cache; ``None`` for a file the repository lacks unless ``required``."""
    needs = f"{repo} is on the Hugging Face Hub, which needs huggingface_hub"
    hub: Any = optional_import("huggingface_hub", needs, "hub")
    try:
        return Path(hub.hf_hub_download(repo, filename, revision=revision))
    except Exception as error:  # the hub's own types: offline, 404, gated, ...
        if not required:  # a missing optional file
            errors: Any = importlib.import_module("huggingface_hub.errors")
            if isinstance(error, errors.EntryNotFoundError):
                return None
        reason = f"{type(error).__name__}: {first_line(error, 200)}"
        where = f"https://huggingface.co/{repo}/blob/{revision or 'main'}/{filename}"
        raise PretrainedError(
            f"could not download {filename} of {repo} ({where}) into the Hugging Face cache "
            f"{hub.constants.HF_HUB_CACHE} ({reason})"
        ) from None


def weights_file(entry: PretrainedWeights) -> Path:
    """The local path of ``entry``'s file, downloaded into the cache if it is not there."""
    if entry.hf_hub_id is not None:
        filename = entry.filename or "model.safetensors"
        path = hub_file(entry.hf_hub_id, filename)
        assert path is not None  # a required file is a path or an error
        _check(entry, path, f"https://huggingface.co/{entry.hf_hub_id}/blob/main/{filename}")
        return path
    url = entry.url
    if url is None:
        raise PretrainedError(f"{entry.name} names neither a URL nor a hub file")
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if path.is_dir():  # not a reason to download: a download could not replace it
        raise PretrainedError(
            f"{path}: a directory is in the way of {entry.name}'s file; remove it to download "
            f"the file from {url}, or place the file there"
        )
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # a temporary file, renamed once whole and checked against the hash prefix
            torch.hub.download_url_to_file(
                url, str(path), hash_prefix=entry.hash_prefix, progress=True
            )
        except RuntimeError as error:  # torch.hub's hash check
            if "hash" not in str(error):
                raise
            raise PretrainedError(
                f"checksum mismatch downloading {entry.name} from {url} to {path}: {error}"
            ) from None
        except (URLError, OSError) as error:
            raise PretrainedError(
                f"could not download {entry.name} from {url} to {path} "
                f"({type(error).__name__}: {error}); check the network, or place the file "
                "at that path (it then loads without network)"
            ) from None
    _check(entry, path, url)
    return path


def load_pretrained(
    model: ResNet, entry: PretrainedWeights, *, file: PathLike | None = None
) -> ResNet:
    """Load ``entry``'s weights (or those in ``file``, in ``entry``'s layout) into ``model``
    and set its ``pretrained_cfg`` to theirs; strict but for a new head and an adapted stem."""
    path = Path(file) if file is not None else weights_file(entry)
    contents = read_weights_file(path)  # a checkpoint or a state dict, by content
    weights = contents.state_dict if isinstance(contents, Checkpoint) else contents
    load_weights(model, weights, source=entry.source, strict=True)
    cfg: dict[str, Any] = entry.pretrained_cfg
    if file is not None:
        cfg["file"] = str(file)
    set_data_config(model, cfg)  # an adapted stem gets the channels' average statistics
    return model
