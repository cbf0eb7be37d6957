"""The model's contract inside an exported file (ONNX ``metadata_props``, ``.pt2`` extra
files): ``{key: JSON text}`` for ``CONFIG_KEYS``, ``normalization_in_graph``, ``spec`` and
``resnetlib_version``, as docs/deploying.md describes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..common import installed_version
from ..core.data_config import check_data_config, fitted_data_config
from ..core.spec import ResNetSpec
from ..files import parse_json
from ..limits import MAX_JSON_BYTES

__all__ = ["CONFIG_KEYS", "ExportContract", "export_metadata", "read_metadata"]

CONFIG_KEYS = (
    "num_classes",
    "input_size",
    "mean",
    "std",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "label_names",
)
"""The ``pretrained_cfg`` entries an export carries (those that say how to feed it)."""


def _dump(value: object) -> str:
    return json.dumps(value, allow_nan=False)


def export_metadata(
    model: nn.Module, input_size: tuple[int, int, int] | None = None
) -> dict[str, str]:
    """The contract of ``model`` as ``{key: JSON text}``. A model without a
    ``pretrained_cfg`` or spec gets what it has; :func:`read_metadata` then refuses the file.
    ``input_size``, the size a graph of fixed height and width was traced at, replaces the
    config's (fitted as ``fitted_data_config`` fits it), so a reader feeds what it takes.

    Raises:
        ValueError: the ``pretrained_cfg``, with ``input_size``, fails ``check_data_config``.
    """
    config = check_data_config(getattr(model, "pretrained_cfg", None) or {})
    if input_size is not None and tuple(config.get("input_size") or ()) != tuple(input_size):
        traced = {key: value for key, value in config.items() if key != "pool_size"}
        config = fitted_data_config(model, {**traced, "input_size": tuple(input_size)})
    metadata = {key: _dump(config[key]) for key in CONFIG_KEYS if key in config}  # tuples: lists
    inside = getattr(model, "normalization_in_graph", None)
    graph = {"mean": list(inside[0]), "std": list(inside[1])} if isinstance(inside, tuple) else None
    metadata["normalization_in_graph"] = _dump(graph)
    spec = getattr(model, "spec", None)
    if isinstance(spec, ResNetSpec):
        metadata["spec"] = spec.to_json()
    metadata["resnetlib_version"] = _dump(installed_version())
    return metadata


@dataclass(frozen=True)
class ExportContract:
    """What an exported file says about itself: its checked data ``config`` (``mean`` and ``std``
    for the graph's input), ``spec``, ``normalization_in_graph`` and resnetlib's ``version``."""

    config: dict[str, Any]
    spec: ResNetSpec
    normalization_in_graph: tuple[tuple[float, ...], tuple[float, ...]] | None
    version: str

    @property
    def takes_unit_range(self) -> bool:
        """Whether the graph takes images in [0, 1] (it normalizes them itself)."""
        return self.normalization_in_graph is not None


def read_metadata(metadata: Mapping[str, str], *, where: str) -> ExportContract:
    """The contract ``metadata`` (as :func:`export_metadata` wrote it) holds, checked as
    ``check_data_config`` checks; ``where`` names the file in messages.

    Raises:
        ValueError: an entry is missing (a file resnetlib did not export), too long, not
            JSON, or fails its check.
    """
    missing = [key for key in ("input_size", "mean", "std", "spec") if key not in metadata]
    if missing:
        raise ValueError(
            f"{where}: no resnetlib metadata ({', '.join(missing)} missing), so nothing says "
            "how to feed it; export it with resnetlib export"
        )

    def value(key: str) -> Any:
        text = metadata[key]
        if not isinstance(text, str) or len(text) > MAX_JSON_BYTES:
            raise ValueError(f"{where}: metadata {key} is not JSON text of at most 1 MiB")
        return parse_json(text, where=f"{where}: metadata {key}", error=ValueError)

    config = check_data_config(
        {key: value(key) for key in CONFIG_KEYS if key in metadata}, where=f"{where} metadata"
    )
    try:
        spec = ResNetSpec.from_dict(value("spec"))
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{where}: metadata spec: {error}") from None
    inside = value("normalization_in_graph") if "normalization_in_graph" in metadata else None
    normalization = None
    if inside is not None:
        if not isinstance(inside, dict):
            raise ValueError(f"{where}: metadata normalization_in_graph must be null or an object")
        checked = check_data_config(
            {"input_size": config["input_size"], **{k: inside.get(k) for k in ("mean", "std")}},
            where=f"{where} metadata normalization_in_graph",
        )
        normalization = (checked["mean"], checked["std"])
    version = value("resnetlib_version") if "resnetlib_version" in metadata else "unknown"
    return ExportContract(config, spec, normalization, str(version))
