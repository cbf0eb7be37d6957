"""Self-describing checkpoints: a model's spec and weights in one file.

``save(model, path)`` writes a ``torch.save`` file holding plain data only: a format name
and version, the spec as JSON, the state dict, optional JSON metadata and a SHA-256 digest
of all of them. ``load(path)`` rebuilds the exact model from it with no code from the user.
Files are read with ``torch.load(..., weights_only=True)``, so reading one never runs code
from it; a file that is not such a checkpoint raises :class:`CheckpointError`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .build import build
from .convert import detect_source, load_weights, unwrap_state_dict
from .features import ResNetFeatures
from .files import atomic_write
from .model import ResNet
from .registry import UnknownNameError
from .spec import JSONScalar, ResNetSpec

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "load",
    "model_from_file",
    "read_checkpoint",
    "save",
]

FORMAT = "resnetlib.checkpoint"
"""The value of a checkpoint's ``"format"`` entry."""
FORMAT_VERSION = 1
"""The checkpoint format version this resnetlib writes and reads."""

PathLike = str | os.PathLike[str]

# torch.load reports truncated, corrupted and foreign bytes through all of these.
_READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, UnicodeError, KeyError)


class CheckpointError(ValueError):
    """A file that is not a readable resnetlib checkpoint; the message names the path."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's contents, checked: the spec, the weights and the user's metadata."""

    spec: ResNetSpec
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    format_version: int


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    data = tensor.detach().cpu().contiguous()
    size = data.numel() * data.element_size()
    return ctypes.string_at(data.data_ptr(), size) if size else b""


def _digest(spec_json: str, metadata_json: str, state: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for text in (spec_json, metadata_json):
        digest.update(text.encode())
        digest.update(b"\0")
    for key, tensor in state.items():
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def save(
    model: ResNet, path: PathLike, *, metadata: Mapping[str, JSONScalar] | None = None
) -> None:
    """Write ``model``'s spec and weights (in their dtypes) to ``path``, atomically.

    ``metadata`` (JSON scalars: epoch, accuracy, ...) comes back from :func:`read_checkpoint`.
    Raises ``ValueError`` if the model's modules no longer match its spec (a layer replaced
    after building), since :func:`load` could not rebuild it.
    """
    if not isinstance(model, ResNet):
        hint = (
            "a features-only backbone has no spec of its own: save the ResNet it was made "
            "from and rebuild the backbone with rl.features(rl.load(path), out_indices=...)"
            if isinstance(model, ResNetFeatures)
            else "for a wrapped model pass model.module, for a compiled one model._orig_mod"
        )
        raise TypeError(f"save() takes a resnetlib ResNet; got {type(model).__name__} ({hint})")
    _check_matches_spec(model)
    metadata_json = json.dumps(dict(metadata or {}), sort_keys=True)
    spec_json = model.spec.to_json()
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),
        "spec": spec_json,
        "metadata": metadata_json,
        "state_dict": state,
        "sha256": _digest(spec_json, metadata_json, state),
    }
    atomic_write(path, lambda file: torch.save(payload, file))


def _check_matches_spec(model: ResNet) -> None:
    with torch.device("meta"):
        fresh = build(model.spec).state_dict()
    own = model.state_dict()
    differ = sorted(set(own) ^ set(fresh)) + [
        key for key in own if key in fresh and own[key].shape != fresh[key].shape
    ]
    if differ:
        raise ValueError(
            "the model no longer matches its spec, so load() could not rebuild it; "
            f"differing entries: {', '.join(differ[:12])}"
        )


def _torch_load(path: PathLike) -> object:
    """``torch.load`` with the weights-only unpickler; read errors become CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except _READ_ERRORS as error:
        reason = str(error)
        if "Weights only load failed" in reason:
            detail = reason.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
            raise CheckpointError(
                f"{path}: refused: the file holds Python objects other than tensors and plain "
                "data, and resnetlib reads files with torch.load(weights_only=True) so that "
                f"no code from a file ever runs ({detail[0] if detail else 'unsupported'})"
            ) from None
        raise CheckpointError(f"{path}: not a readable torch file: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _require(path: PathLike, payload: Mapping[str, Any], key: str, kind: type) -> Any:
    value = payload.get(key)
    if not isinstance(value, kind):
        raise CheckpointError(
            f"{path}: entry {key!r} must be a {kind.__name__}; got {type(value).__name__}"
        )
    return value


def _parse(path: PathLike, payload: object) -> Checkpoint:
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        if isinstance(payload, Mapping):
            try:
                tensors = len(unwrap_state_dict(payload))
            except ValueError:
                tensors = 0
            if tensors:
                raise CheckpointError(
                    f"{path}: a plain state dict ({tensors} tensors), not a resnetlib "
                    "checkpoint, so it does not say which model it is; load it with "
                    "resnetlib.create_model(name, checkpoint_path=...) or "
                    "resnetlib.load_weights(model, torch.load(path, weights_only=True))"
                )
        raise CheckpointError(
            f"{path}: not a resnetlib checkpoint (a {type(payload).__name__} without "
            f"format={FORMAT!r})"
        )
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: format_version must be an int; got {version!r}")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version} is not supported; this resnetlib "
            f"reads version {FORMAT_VERSION}"
            + (" (the file is from a newer resnetlib: upgrade)" if version > FORMAT_VERSION else "")
        )
    spec_json: str = _require(path, payload, "spec", str)
    metadata_json: str = _require(path, payload, "metadata", str)
    state: dict[str, Any] = dict(_require(path, payload, "state_dict", Mapping))
    digest: str = _require(path, payload, "sha256", str)
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries are not tensors: {not_tensors[:12]}")
    if _digest(spec_json, metadata_json, state) != digest:
        raise CheckpointError(
            f"{path}: checksum mismatch: the weights, spec or metadata changed after saving "
            "(a corrupted or edited file)"
        )
    try:
        spec = ResNetSpec.from_json(spec_json)
        metadata = json.loads(metadata_json)
    except ValueError as error:
        raise CheckpointError(f"{path}: invalid spec or metadata: {error}") from None
    return Checkpoint(spec=spec, state_dict=state, metadata=metadata, format_version=version)


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read and check a checkpoint without building the model (tensors on the CPU)."""
    return _parse(path, _torch_load(path))


def _build(path: PathLike, spec: ResNetSpec) -> ResNet:
    try:
        return build(spec)
    except UnknownNameError as error:
        raise UnknownNameError(
            f"{path}: the checkpoint's spec needs a name that is not registered here "
            f"(import the module that registers it before loading): {error}"
        ) from None


def load(path: PathLike, *, map_location: str | torch.device = "cpu") -> ResNet:
    """Rebuild the model saved at ``path``: same spec, same weights, same dtypes.

    Raises :class:`CheckpointError` for a file that is not an intact checkpoint and
    ``KeyError`` when its spec names a block, shortcut or stem not registered here.
    """
    checkpoint = read_checkpoint(path)
    model = _build(path, checkpoint.spec)
    model.load_state_dict(checkpoint.state_dict, strict=True, assign=True)
    return model.to(map_location)


def model_from_file(
    factory: Callable[..., ResNet],
    path: PathLike,
    *,
    source: str = "auto",
    overrides: Mapping[str, Any],
) -> ResNet:
    """``factory(**overrides)`` with the weights of a checkpoint or state-dict file.

    The file is a resnetlib checkpoint or a state dict in any layout
    :func:`~resnetlib.convert_state_dict` reads. akamaster's weights get
    ``shortcut="A_both"`` (their option A) or ``"B"`` (their option B, which has
    ``shortcut.*`` weights) unless ``overrides`` sets one. A resnetlib checkpoint keeps
    its own ``num_classes`` and ``in_channels`` unless ``overrides`` sets them, and must
    describe the network the factory builds in every other field.
    Loading is strict except for the stem and head (see :func:`~resnetlib.load_weights`).
    """
    payload = _torch_load(path)
    saved_spec: ResNetSpec | None = None
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        if source not in ("auto", "resnetlib"):
            raise ValueError(
                f"{path} is a resnetlib checkpoint; checkpoint_source={source!r} does not apply"
            )
        checkpoint = _parse(path, payload)
        weights, saved_spec = checkpoint.state_dict, checkpoint.spec
        source = "resnetlib"
    else:
        try:
            if not isinstance(payload, Mapping):
                raise ValueError(f"expected a dict of tensors; got {type(payload).__name__}")
            weights = unwrap_state_dict(payload)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
        if source == "auto":
            source = detect_source(weights)
    options = dict(overrides)
    if source == "akamaster" and "shortcut" not in options:
        projected = any(".shortcut." in key for key in weights)
        options["shortcut"] = "B" if projected else "A_both"
    if saved_spec is not None:  # the file says what it is: keep its head and input
        options.setdefault("num_classes", saved_spec.num_classes)
        options.setdefault("in_channels", saved_spec.in_channels)
    model = factory(**options)
    if saved_spec is not None:
        _check_same_network(path, saved_spec, model.spec)
    load_weights(model, weights, source=source, strict=True)
    return model


# Fields a caller may change when loading weights: the head and the stem's input adapt.
_ADAPTABLE = frozenset({"num_classes", "in_channels"})


def _check_same_network(path: PathLike, saved: ResNetSpec, built: ResNetSpec) -> None:
    """Refuse weights saved from another network, even one whose keys and shapes match
    (another activation, dilation, drop path or stride placement computes otherwise)."""
    saved_fields, built_fields = saved.to_dict(), built.to_dict()
    differ = sorted(
        key
        for key in saved_fields
        if key not in _ADAPTABLE and saved_fields[key] != built_fields[key]
    )
    if differ:
        details = "; ".join(
            f"{key}: file {saved_fields[key]!r}, model {built_fields[key]!r}" for key in differ
        )
        raise ValueError(
            f"{path} holds another network than the one asked for ({details}); load it "
            "with resnetlib.load(path), or pass the same overrides it was saved with"
        )
