"""Self-describing checkpoints: spec, weights, data configuration and metadata in one file
(``torch.save``, or safetensors for a ``.safetensors`` path) with their SHA-256 digest. Reading
runs no code (``torch.load(weights_only=True)``), costs what the file holds, not what it
claims, and checks the spec against the weights before any model is built."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, TypeGuard

import torch

from ..common import PathLike, first_line, listing, optional_import, printable
from ..core.build import build
from ..core.data_config import config_from_dict, config_to_json, fitted_data_config, set_data_config
from ..core.features import ResNetFeatures
from ..core.model import ResNet
from ..core.spec import JSONScalar, ResNetSpec
from ..files import atomic_write, dump_json, open_regular, parse_json
from ..nn.activations import ACTIVATIONS
from ..nn.blocks import BLOCKS
from ..nn.drop_path import DropPath
from ..nn.norms import NORMS
from ..nn.shortcuts import SHORTCUTS
from ..nn.stems import STEMS
from ..registry import Registry, UnknownNameError
from ..validate import is_int
from .convert import is_batch_counter, unwrap_state_dict

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "check_fits",
    "is_checkpoint",
    "load",
    "read_checkpoint",
    "read_weights_file",
    "save",
]

FORMAT = "resnetlib.checkpoint"
"""The value of a checkpoint's ``"format"`` entry."""
FORMAT_VERSION = 2
"""The format version written (2 adds the data configuration); versions 1 and 2 are read."""
_READABLE_VERSIONS = (1, 2)


# torch.load reports truncated, corrupted and foreign bytes through all of these.
TORCH_READ_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,  # UnicodeError too
    LookupError,  # KeyError, IndexError
    AttributeError,
    TypeError,
    AssertionError,
    OverflowError,
)


class CheckpointError(ValueError):
    """A file that is not a readable resnetlib checkpoint; the message names the path."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's checked contents; ``pretrained_cfg`` is ``None`` in a version-1 file."""

    spec: ResNetSpec
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    format_version: int
    pretrained_cfg: dict[str, Any] | None = None


def _digest(spec: str, meta: str, state: Mapping[str, torch.Tensor], cfg: str | None = None) -> str:
    """SHA-256 of a checkpoint's entries; ``cfg`` (the data config) is ``None`` in version 1."""
    digest = hashlib.sha256()
    for text in (spec, meta, *([] if cfg is None else [cfg])):
        digest.update(text.encode())
        digest.update(b"\0")
    for key, tensor in state.items():
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        data = tensor.detach().cpu().contiguous()
        size = data.numel() * data.element_size()
        digest.update(ctypes.string_at(data.data_ptr(), size) if size else b"")
    return digest.hexdigest()


def savable_state(model: ResNet, caller: str) -> dict[str, torch.Tensor]:
    """``model``'s state dict, contiguous on the CPU, after refusing what ``caller`` could not
    rebuild: a non-``ResNet`` (``TypeError``), a fused model, one unlike its spec, or one
    pooling other than by average (the file's spec rebuilds ``global_pool="avg"``)."""
    if not isinstance(model, ResNet):
        wrapped = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if isinstance(model, ResNetFeatures):
            hint = (
                "a features-only backbone has no spec of its own: save the ResNet it was made "
                "from and rebuild the backbone with "
                "rl.core.features(rl.load(path), out_indices=...)"
            )
        elif isinstance(wrapped, ResNet):
            hint = "for a wrapped model pass model.module, for a compiled one model._orig_mod"
        else:  # an int8 or other deployed copy: remade from the float model after loading
            hint = "save the float ResNet it was made from, and quantize or export it after loading"
        raise TypeError(f"{caller}() takes a resnetlib ResNet; got {type(model).__name__} ({hint})")
    if any(type(p).__name__ == "DTensor" for p in model.parameters()):  # any torch's DTensor
        raise TypeError(
            f"{caller}() takes a model's whole weights, and this one is sharded (fully_shard): "
            "gather them on every rank with torch.distributed.checkpoint.state_dict."
            "get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, "
            "cpu_offload=True)), then on rank 0 load them into rl.build(model.spec) and save that"
        )
    if getattr(model, "_resnetlib_fused", False):  # set by resnetlib.deploy.fuse_bn
        raise ValueError(
            f"{caller}() cannot store a model folded by fuse_bn(): its spec describes the "
            "unfused network, which could not be rebuilt from the file. Save the model before "
            "fusing, and fuse after loading (fusing is fast and exact)"
        )
    if model.global_pool != "avg":
        raise ValueError(
            f"{caller}() cannot store global_pool={model.global_pool!r}: the file holds the "
            "spec, whose model pools by average, so it would be rebuilt computing other "
            "outputs. Save the model pooling by average, and after loading set the pool again "
            "(model.reset_classifier(model.num_classes, global_pool=...))"
        )
    state = model.state_dict()
    if any(value.is_meta for value in state.values()):
        raise ValueError(
            f"{caller}() cannot store a model on the meta device: it has shapes but no values "
            "(model.to_empty(device='cpu') allocates them, then load or initialize weights)"
        )
    check_fits(_CHANGED_MODEL, model.spec, state, error=ValueError)
    _check_modules(_CHANGED_MODEL, model, model.spec)
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def save(
    model: ResNet, path: PathLike, *, metadata: Mapping[str, JSONScalar] | None = None
) -> None:
    """Write ``model``'s spec, weights (in their dtypes) and ``pretrained_cfg`` to ``path``
    atomically; ``metadata`` (JSON scalars) comes back from :func:`read_checkpoint`. A
    ``.safetensors`` path is written as safetensors (the ``safetensors`` extra), any other
    with ``torch.save``. ``drop_rate``, used in training only, is not stored.

    Raises:
        TypeError: ``model`` is not a resnetlib ``ResNet``.
        ValueError: a model folded by ``fuse_bn``, unlike its spec (a layer replaced after
            building) or pooling other than by average, which could not be rebuilt; a
            ``pretrained_cfg`` ``check_data_config`` refuses once fitted (as ``load`` fits it).
        ModuleNotFoundError: a ``.safetensors`` path without the safetensors package.
        OSError: the file cannot be written.

    Examples:
        >>> import tempfile, pathlib, resnetlib as rl
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "resnet20.pt"
        >>> rl.save(rl.resnet20(), path, metadata={"epoch": 3})
        >>> rl.interop.read_checkpoint(path).metadata
        {'epoch': 3}
        >>> rl.load(path).spec == rl.resnet20().spec
        True
    """
    state = savable_state(model, "save")
    metadata_json = dump_json(dict(metadata or {}), what="metadata", sort_keys=True)
    spec_json = model.spec.to_json()
    config_json = config_to_json(fitted_data_config(model, model.pretrained_cfg))  # as load fits it
    safetensors = Path(path).suffix.lower() == ".safetensors"
    if safetensors:  # safetensors orders tensors its own way: the digest takes them sorted
        state = {key: state[key] for key in sorted(state)}
    entries = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION) if safetensors else FORMAT_VERSION,
        "torch_version": str(torch.__version__),
        "spec": spec_json,
        "metadata": metadata_json,
        "data_config": config_json,
        "sha256": _digest(spec_json, metadata_json, state, config_json),
    }
    if safetensors:  # the entries as strings in the header's metadata
        atomic_write(path, safetensors_module().save(state, metadata=entries))
    else:
        atomic_write(path, lambda file: torch.save({**entries, "state_dict": state}, file))


def safetensors_module() -> ModuleType:
    """The ``safetensors.torch`` module, or an error naming the extra that installs it."""
    needs = "safetensors checkpoints need the safetensors package"
    return optional_import("safetensors.torch", needs, "safetensors")


def _read(path: PathLike) -> object:
    """A file's contents, safetensors or torch's (weights-only), told apart by its bytes."""
    with open_regular(path, what="a checkpoint", error=CheckpointError) as file:
        head = file.read(16)
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        if len(head) >= 9 and head[8:9] == b"{":  # safetensors: the header's length, the header
            claimed = struct.unpack("<Q", head[:8])[0]
            if 8 + claimed > size:
                raise CheckpointError(
                    f"{path}: a safetensors file whose header claims {claimed} bytes, more "
                    f"than the file's {size}: truncated or damaged; save or download it again"
                )
            return read_safetensors(path, file.read())
        _refuse_other_kinds(path, head)  # after safetensors, whose length may look like ONNX
        if head[:4] == b"PK\x03\x04":
            _check_zip(path, file, size)
        file.seek(0)
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except (*TORCH_READ_ERRORS, OSError) as error:
            reason, torch_file = str(error), head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"
            content = _refused_content(reason) if "Weights only load failed" in reason else ""
            if content and (torch_file or content.startswith("it asks for")):  # code, or objects
                raise CheckpointError(
                    f"{path}: refused: the file holds Python objects other than tensors and "
                    "plain data, and resnetlib reads files with torch.load(weights_only=True) so "
                    f"that no code from a file ever runs ({content})"
                ) from None
            if not torch_file:  # neither zip nor a pickle of protocol 2 or later: text, say
                raise CheckpointError(
                    f"{printable(path)}: not a checkpoint, state dict or ONNX file (none of "
                    "torch's, safetensors' or ONNX's formats); give a checkpoint resnetlib.save "
                    "wrote (a run's final.pt)"
                ) from None
            raise _unreadable(path, "torch", error) from None


_IMAGES = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF87a": "a GIF image",
    b"GIF89a": "a GIF image",
}
_IMAGE_ADVICE = (
    "an image is not a model: give a checkpoint file resnetlib.save wrote (a run's final.pt) "
    "or a registered name; to classify images, resnetlib predict MODEL IMAGE..."
)
# The keys (field << 3 | wire type 0 or 2) an ONNX ModelProto may hold after its ir_version.
_ONNX_KEYS = frozenset(field << 3 | wire for field in range(1, 21) for wire in (0, 2))


def is_onnx(head: bytes) -> bool:
    """Whether a file's first bytes (three or more) begin an ONNX model: its ``ir_version``,
    then a ModelProto field. Every command tells an ONNX file by this, whatever its name."""
    return (
        head[:1] == b"\x08"
        and b"\x00" < head[1:2] < b"\x80"
        and len(head) > 2
        and head[2] in _ONNX_KEYS
    )


def _refuse_other_kinds(path: PathLike, head: bytes) -> None:
    """Name a file that is no checkpoint by its first bytes: ONNX, an image or JSON text (a zip
    archive is looked into by ``_check_zip``, a pickle by torch's weights-only reader)."""
    kind = advice = ""
    if is_onnx(head):
        kind = "an ONNX model"
        advice = (
            "resnetlib evaluate and predict run an ONNX file resnetlib exported, given as the "
            "model (resnetlib predict FILE.onnx IMAGE..., not --checkpoint); to train, export "
            "or load weights, use the checkpoint it was exported from"
        )
    elif image := next((name for magic, name in _IMAGES.items() if head.startswith(magic)), ""):
        kind, advice = image, _IMAGE_ADVICE
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind, advice = "a WEBP image", _IMAGE_ADVICE
    elif head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") and b"\x00" not in head:
        kind = "JSON text"
        advice = (
            "give a checkpoint file resnetlib.save wrote (a run's final.pt), or "
            "local-dir:FOLDER for the folder of a save_pretrained config.json"
        )
    if kind:
        raise _not_a_checkpoint(path, kind, advice)


def _not_a_checkpoint(path: PathLike, kind: str, advice: str) -> CheckpointError:
    return CheckpointError(f"{printable(path)} is {kind}, not a resnetlib checkpoint; {advice}")


def _unreadable(path: PathLike, kind: str, error: Exception) -> CheckpointError:
    reason = f"{type(error).__name__}: {first_line(error)}"
    return CheckpointError(f"{printable(path)}: not a readable {kind} file: {reason}")


def _refused_content(reason: str) -> str:
    """What torch's weights-only unpickler refused, without its advice (``weights_only=False``)."""
    _, found, detail = reason.partition("WeightsUnpickler error:")
    detail = re.sub(r"\x1b\[[0-9;]*m", "", detail).strip()
    line = detail.splitlines()[0] if found and detail else ""
    wanted = re.search(r"GLOBAL ([\w.]+)", line)
    if wanted:
        return f"it asks for {wanted[1][:200]}"
    line = re.split(r"\.?\s+(?:Please|Re-running|Check|To load)\b", line)[0].strip()
    if not line or "weights_only" in line or "safe_globals" in line:
        return "content torch's weights-only reader does not allow"
    return line[:200]


_MAX_VERSION_DIGITS = 18


def read_safetensors(path: PathLike, data: bytes) -> object:
    """A safetensors file's tensors, with its metadata when it is a resnetlib checkpoint."""
    module = safetensors_module()
    try:
        tensors: dict[str, torch.Tensor] = module.load(data)
        (length,) = struct.unpack("<Q", data[:8])
        header = parse_json(data[8 : 8 + length], where="header").get("__metadata__") or {}
    except Exception as error:  # the package raises its own SafetensorError, among others
        raise _unreadable(path, "safetensors", error) from None
    if not is_checkpoint(header):
        return tensors  # a plain state dict, as timm and others write them
    payload: dict[str, object] = dict(header)
    version = header.get("format_version")
    if isinstance(version, str) and version.isdecimal() and len(version) <= _MAX_VERSION_DIGITS:
        payload["format_version"] = int(version)
    payload["state_dict"] = {key: tensors[key] for key in sorted(tensors)}  # as digested
    return payload


def _check_zip(path: PathLike, file: BinaryIO, size: int) -> None:
    """Refuse a torch.export program (named as one), compressed records (a zip bomb's;
    ``torch.save`` writes none) or ones larger than the file."""
    try:
        with zipfile.ZipFile(file) as archive:
            records = archive.infolist()
    except (*TORCH_READ_ERRORS, OSError, zipfile.BadZipFile, struct.error) as error:
        raise _unreadable(path, "torch", error) from None
    names = {record.filename.split("/", 1)[-1] for record in records}
    if "data.pkl" not in names and ("archive_format" in names or "models/model.json" in names):
        raise _not_a_checkpoint(
            path,
            "a torch.export program (.pt2)",
            "load it with torch.export.load(path).module(); resnetlib commands take the "
            "checkpoint it was exported from (or an .onnx export for evaluate and predict)",
        )
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.compress_size != record.file_size:
            raise CheckpointError(
                f"{path}: record {record.filename!r} is compressed; torch.save never writes "
                "compressed records, and resnetlib does not inflate them (a zip bomb could)"
            )
    claimed = sum(record.file_size for record in records)
    if claimed > size:
        raise CheckpointError(
            f"{path}: its records claim {claimed} bytes, more than the file's {size}"
        )


def _require(path: PathLike, payload: Mapping[str, Any], key: str, kind: type) -> Any:
    value = payload.get(key)
    if not isinstance(value, kind):
        raise CheckpointError(
            f"{path}: entry {key!r} must be a {kind.__name__}; got {type(value).__name__}"
        )
    return value


def _parse(path: PathLike, payload: Mapping[str, Any]) -> Checkpoint:
    """A checkpoint's entries (:func:`is_checkpoint` is true of ``payload``), checked."""
    version = payload.get("format_version")
    limit = 10**_MAX_VERSION_DIGITS
    length = ""
    if is_int(version) and not -limit < version < limit:
        length = f"{version.bit_length()} bits"
    elif isinstance(version, str) and len(version) > _MAX_VERSION_DIGITS:
        length = f"{len(version)} characters"
    if length:  # refused before anything formats it
        raise CheckpointError(
            f"{path}: format_version is {length} long, not a version; this resnetlib "
            f"reads version {FORMAT_VERSION} (a damaged or crafted file)"
        )
    if not is_int(version):
        raise CheckpointError(f"{path}: format_version must be an int; got {version!r}")
    if version not in _READABLE_VERSIONS:
        readable = " and ".join(map(str, _READABLE_VERSIONS))
        raise CheckpointError(
            f"{path}: checkpoint format_version {version} is not supported; this resnetlib "
            f"reads versions {readable}"
            + (" (the file is from a newer resnetlib: upgrade)" if version > FORMAT_VERSION else "")
        )
    spec_json: str = _require(path, payload, "spec", str)
    metadata_json: str = _require(path, payload, "metadata", str)
    config_json = _require(path, payload, "data_config", str) if version >= 2 else None
    state: dict[str, Any] = dict(_require(path, payload, "state_dict", Mapping))
    digest: str = _require(path, payload, "sha256", str)
    check_tensors(path, state)
    if _digest(spec_json, metadata_json, state, config_json) != digest:
        raise CheckpointError(
            f"{path}: checksum mismatch: the weights, spec or metadata changed after saving "
            "(a corrupted or edited file)"
        )
    entry, config = "spec", None
    try:
        spec = ResNetSpec.from_dict(parse_json(spec_json))
        entry = "metadata"
        metadata = parse_json(metadata_json)
        entry = "data_config"
        if config_json is not None:
            config = config_from_dict(parse_json(config_json, where="data_config"))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: invalid {entry}: {error}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path}: invalid metadata: a JSON object expected; got {type(metadata).__name__}"
        )
    return Checkpoint(spec, state, metadata, version, pretrained_cfg=config)


_MAX_TIES = 8
"""Most keys that may name one and the same tensor (tied weights) in a state dict."""


_FLOATING = (".weight", ".bias", ".running_mean", ".running_var")  # floating in every part


def check_tensors(path: PathLike, state: Mapping[str, object]) -> None:
    """Refuse entries that are not plain CPU tensors or claim more bytes than their storage
    holds (a stride-0 view); a view shared by up to ``_MAX_TIES`` keys counts once. Weights,
    biases and running statistics are floating point; batch norms' ``num_batches_tracked``
    counters are integers (a user's own buffers, under other names, are what they are)."""
    used: dict[int, int] = {}
    views: dict[tuple[object, ...], int] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: state_dict entry {key!r} is not a tensor; got {type(value).__name__}"
            )
        if (
            type(value) not in (torch.Tensor, torch.nn.Parameter)
            or value.layout != torch.strided
            or value.device.type != "cpu"
            or value.is_quantized
            or value.is_nested
        ):
            raise CheckpointError(
                f"{path}: state_dict entry {key!r} is not a plain dense tensor "
                f"({type(value).__name__}, {value.layout}, on {value.device.type})"
            )
        counter, dtype = is_batch_counter(key), value.dtype
        integer = not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
        if (counter and not integer) or (key.endswith(_FLOATING) and not dtype.is_floating_point):
            kind = "an integer batch counter" if counter else "floating-point weights"
            raise CheckpointError(
                f"{path}: state_dict entry {key!r} holds {dtype} values where the model has "
                f"{kind} (a damaged or wrongly converted file); save the model's own state dict"
            )
        storage, offset = value.untyped_storage(), value.storage_offset()
        ptr, size = storage.data_ptr(), storage.nbytes()
        nbytes = value.numel() * value.element_size()
        view = (ptr, offset, value.dtype, tuple(value.shape), value.stride())
        ties = views[view] = views.get(view, 0) + 1
        if ties > _MAX_TIES:
            raise CheckpointError(
                f"{path}: state_dict entry {key!r} is the tensor of {ties - 1} other keys; "
                f"tied weights share a tensor between at most {_MAX_TIES} keys"
            )
        steps = zip(value.shape, value.stride(), strict=True)
        extent = offset + 1 + sum((length - 1) * step for length, step in steps)
        if ties == 1:
            used[ptr] = used.get(ptr, 0) + nbytes
        if nbytes and (used[ptr] > size or extent * value.element_size() > size):
            raise CheckpointError(
                f"{path}: state_dict entry {key!r} claims {nbytes} bytes of values, more than "
                f"the {size} bytes stored for it (a view that repeats its data)"
            )


_BLOCK_KEY = re.compile(r"layer(\d+)\.(\d+)\.")
_CHANGED_MODEL = "the model no longer matches its spec, so it could not be rebuilt from the file"


def _stored_blocks(state: Mapping[str, object]) -> dict[int, set[int]]:
    """The block indices each stage (``layer1`` is 1) has entries for."""
    found: dict[int, set[int]] = {}
    for match in filter(None, map(_BLOCK_KEY.match, state)):
        found.setdefault(int(match[1]), set()).add(int(match[2]))
    return found


def _probe(where: str, spec: ResNetSpec) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The state-dict shapes and each module's :func:`_layout` by name of ``spec`` with at most
    two blocks a stage (later blocks have the second one's), built on the meta device;
    ``CheckpointError`` for a spec no ``build()`` accepts, ``KeyError`` for an unregistered name."""
    probe = replace(
        spec, stages=tuple(replace(s, num_blocks=min(s.num_blocks, 2)) for s in spec.stages)
    )
    registries: tuple[Registry[Any], ...] = (BLOCKS, SHORTCUTS, STEMS, NORMS, ACTIVATIONS)
    names = (spec.block, spec.shortcut, spec.stem.type, spec.norm, spec.act)
    try:
        parts = tuple(registry.get(name) for registry, name in zip(registries, names, strict=True))
        return _probe_of_spec(probe.to_json(), parts)
    except UnknownNameError as error:
        raise _unregistered(where, error) from None
    except ValueError as error:  # a spec no build() accepts
        raise CheckpointError(f"{where}: the spec cannot be built: {error}") from None


@functools.lru_cache(maxsize=16)
def _probe_of_spec(
    spec_json: str, parts: tuple[object, ...]
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """:func:`_probe`'s shapes and layouts of one meta build, cached by the spec and the types
    its names resolve to; callers must not change them."""
    with torch.device("meta"):
        fresh = build(ResNetSpec.from_json(spec_json))
    shapes = {key: tuple(value.shape) for key, value in fresh.state_dict().items()}
    return shapes, {name: _layout(module) for name, module in fresh.named_modules()}


def _layout(module: torch.nn.Module) -> str:
    """A module's type and settings (a convolution's stride, a pool's size) as far as they
    decide its outputs in evaluation: not a norm's ``momentum``, an activation's ``inplace``
    or a drop path's rate; a ``SyncBatchNorm`` is the ``BatchNorm2d`` it was converted from."""
    settings = "" if isinstance(module, DropPath) else module.extra_repr()
    settings = re.sub(r"momentum=[^,]*, |(, )?inplace=True", "", settings)
    kind = (
        "BatchNorm2d" if isinstance(module, torch.nn.SyncBatchNorm) else type(module).__qualname__
    )
    return f"{kind}({settings})"


def _check_modules(where: str, model: torch.nn.Module, spec: ResNetSpec) -> None:
    """Raise ``ValueError`` unless each of ``model``'s modules is what ``spec`` builds there
    (a layer swapped for one without weights, or a stride changed, escapes ``check_fits``)."""
    expected = _probe(where, spec)[1]
    seen = {""}
    for name, module in list(model.named_modules())[1:]:
        block, probed = _BLOCK_KEY.match(name + "."), name
        if block is not None and int(block[2]) > 1:  # a later block: the probe's second one's
            probed = f"layer{block[1]}.1.{(name + '.')[block.end() :]}".rstrip(".")
        seen.add(probed)
        if expected.get(probed) != _layout(module):
            built = expected.get(probed, "no module")
            raise ValueError(f"{where}: its {name} is {_layout(module)}, the spec builds {built}")
    missing = sorted(set(expected) - seen)
    if missing:
        raise ValueError(f"{where}: it lacks the spec's {', '.join(missing)}")


def _later_blocks(spec: ResNetSpec, key: str) -> tuple[int, str, range]:
    """A probe key's stage, the rest of the key and the later blocks it stands for (none but
    for a stage's second block)."""
    match = _BLOCK_KEY.match(key)
    if match is None or match[2] != "1":
        return 0, key, range(0)
    stage = int(match[1])
    return stage, key[match.end() :], range(2, spec.stages[stage - 1].num_blocks)


def weights_limit(where: str, spec: ResNetSpec) -> int:
    """The most bytes a file of ``spec``'s weights takes: 8 a value, 512 a key, 1 MiB more."""
    probe = _probe(where, spec)[0].items()
    each = [(1 + len(_later_blocks(spec, key)[2])) * (8 * math.prod(s) + 512) for key, s in probe]
    return sum(each) + (1 << 20)


def check_fits(
    where: str,
    spec: ResNetSpec,
    state: Mapping[str, torch.Tensor],
    *,
    error: type[ValueError] = CheckpointError,
) -> None:
    """Raise ``error`` (its message starts with ``where``) unless ``spec`` has exactly the
    names and shapes of ``state``, batch norms' ``num_batches_tracked`` counters aside (as
    :func:`~resnetlib.interop.load_weights`, a model keeps its own where ``state`` has none,
    as in torchvision's files); block counts are compared before any name is listed, so the
    cost follows the weights, not the spec."""
    probe = _probe(where, spec)[0]
    probe_blocks = _stored_blocks(probe)
    stored = _stored_blocks(state)
    problem = f"{where}: the spec does not describe the weights"
    for index, stage in enumerate(spec.stages, start=1):
        in_probe = probe_blocks.get(index, set())
        expected = set(range(stage.num_blocks)) if 1 in in_probe else in_probe
        have = stored.get(index, set())
        if have != expected:
            raise error(
                f"{problem}: its stage {index} (layer{index}) has {stage.num_blocks} blocks "
                f"with weights, and there are weights for {len(have)}"
            )
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in probe.items():
        shapes[key] = shape
        number, rest, later = _later_blocks(spec, key)
        shapes.update((f"layer{number}.{block}.{rest}", shape) for block in later)
    missing = [key for key in shapes if key not in state and not is_batch_counter(key)]
    unexpected = [key for key in state if key not in shapes]
    mismatched = [
        key for key, shape in shapes.items() if key in state and tuple(state[key].shape) != shape
    ]
    parts = [
        f"{label}: {listing(keys, 6)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            (
                "shapes differ",
                [f"{k} (weights {tuple(state[k].shape)}, spec {shapes[k]})" for k in mismatched],
            ),
        )
        if keys
    ]
    if parts:
        # CheckpointError: the weights come from a file (else from the model being saved)
        differing = [*missing, *unexpected, *mismatched]
        raise error(
            f"{problem}; "
            + "; ".join(parts)
            + _if_changed(spec, differing, from_file=issubclass(error, CheckpointError))
        )


def _owner(key: str) -> tuple[str, str]:
    """The part of a model (``"block"``, ``"shortcut"``, ``"stem"``, or ``""`` for the head)
    that holds the weight ``key``, and the module path that names it."""
    top = key.split(".", 1)[0]
    match = _BLOCK_KEY.match(key)
    if match is not None:
        path = match[0].rstrip(".")
        if key[match.end() :].startswith("downsample."):
            return "shortcut", f"{path}.downsample"
        return "block", path
    if top == "norm":  # the block type's final_layers
        return "block", top
    return ("", top) if top == "fc" else ("stem", top)


def _if_changed(spec: ResNetSpec, differing: Sequence[str], *, from_file: bool) -> str:
    """A hint on why the weights and what ``spec`` builds differ in the ``differing`` keys.
    Weights from a file: the user-registered parts of ``spec`` that hold those keys (and its
    registered norm and activation, which any part builds), changed since the weights were
    saved. The weights of a model being saved: its modules that differ from what its spec
    builds."""
    owners = {_owner(key) for key in differing}
    if not from_file:
        modules = sorted({path for _, path in owners})
        return f" (changed after the model was built: {listing(modules, 6)})" if modules else ""
    kinds = {kind for kind, _ in owners if kind}
    named = (
        (BLOCKS, "block", spec.block),
        (SHORTCUTS, "shortcut", spec.shortcut),
        (STEMS, "stem", spec.stem.type),
        (NORMS, "norm", spec.norm),
        (ACTIVATIONS, "act", spec.act),
    )
    custom = [
        f"{kind} {name!r}"
        for registry, kind, name in named
        if (kind in kinds or (kinds and kind in ("norm", "act")))
        and _user_registered(registry.get(name))
    ]
    if not custom:
        return ""
    names = ", ".join(custom[:-1]) + " and " + custom[-1] if len(custom) > 1 else custom[0]
    return (
        f" (the {names} registered here may build other parameters than when the weights "
        "were saved)"
    )


def _user_registered(item: object) -> bool:
    """Whether a registry entry is the user's, not resnetlib's or torch's (a
    ``functools.partial`` counts as what it wraps)."""
    module = getattr(getattr(item, "func", item), "__module__", None) or ""
    return not module.startswith(("resnetlib.", "torch."))


def is_checkpoint(payload: object) -> TypeGuard[Mapping[str, Any]]:
    """Whether a file's contents are a resnetlib checkpoint rather than a plain state dict."""
    return isinstance(payload, Mapping) and payload.get("format") == FORMAT


def read_weights_file(
    path: PathLike, *, check: bool = True
) -> Checkpoint | dict[str, torch.Tensor]:
    """A resnetlib checkpoint (with ``check``, checked against its spec as :func:`load`
    does) or the unwrapped plain state dict of any other torch or safetensors file.

    Raises:
        CheckpointError: a damaged, code-carrying or tensor-less file.
        OSError: the file cannot be read.
    """
    payload = _read(path)
    if is_checkpoint(payload):
        checkpoint = _parse(path, payload)
        if check:
            check_fits(str(path), checkpoint.spec, checkpoint.state_dict)
        return checkpoint
    try:
        weights = unwrap_state_dict(payload)  # type: ignore[arg-type]  # it checks the type
    except ValueError as error:
        raise CheckpointError(
            f"{path}: not a resnetlib checkpoint (no format={FORMAT!r}) nor a state dict: {error}"
        ) from None
    check_tensors(path, weights)
    return weights


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read a checkpoint and check it against its digest, without building the model
    (tensors on the CPU).

    Raises:
        CheckpointError: the file is not an intact resnetlib checkpoint.
        OSError: the file cannot be read (``FileNotFoundError`` for a missing one).
    """
    contents = read_weights_file(path, check=False)
    if isinstance(contents, Checkpoint):
        return contents
    reader = 'torch.load(path, map_location="cpu", weights_only=True)'  # saved on a GPU too
    if Path(path).suffix.lower() == ".safetensors":  # as save() names them
        reader = "safetensors.torch.load_file(path)"
    raise CheckpointError(
        f"{path}: a plain state dict ({len(contents)} tensors), not a resnetlib checkpoint, "
        "so it does not say which model it is; load it with "
        "resnetlib.create_model(name, checkpoint_path=...) (on the command line: name the "
        "model and pass --checkpoint FILE) or "
        f"resnetlib.interop.load_weights(model, {reader})"
    )


def _unregistered(where: str, error: UnknownNameError) -> UnknownNameError:
    wrapped = UnknownNameError(
        f"{where}: the spec needs a name that is not registered here (import the module "
        f"that registers it before loading): {error}"
    )
    wrapped.kind = error.kind
    return wrapped


def build_loaded(
    where: str, spec: ResNetSpec, state: dict[str, torch.Tensor], config: Mapping[str, Any] | None
) -> ResNet:
    """The model of ``spec``, checked against ``state`` before it is built, with ``state``
    (its tensors' dtypes as they are) and the data configuration ``config`` (if any); errors
    name ``where``."""
    check_fits(where, spec, state)
    try:
        model = build(spec)
    except UnknownNameError as error:
        raise _unregistered(where, error) from None
    counters = {
        k: v for k, v in model.state_dict().items() if is_batch_counter(k) and k not in state
    }
    model.load_state_dict({**state, **counters}, strict=True, assign=True)
    if config is not None:
        set_data_config(model, config)
    return model


def load(path: PathLike, *, map_location: str | torch.device = "cpu") -> ResNet:
    """Rebuild the model saved at ``path`` on ``map_location``, in training mode: same spec,
    weights, dtypes and ``pretrained_cfg`` (a version-1 file's model keeps the defaults).

    Raises:
        CheckpointError: the file is not an intact checkpoint, or its spec does not
            describe its weights.
        KeyError: its spec names a part not registered here (register it before loading).
        OSError: the file cannot be read (``FileNotFoundError`` for a missing one).
    """
    file = read_checkpoint(path)
    return build_loaded(str(path), file.spec, file.state_dict, file.pretrained_cfg).to(map_location)
