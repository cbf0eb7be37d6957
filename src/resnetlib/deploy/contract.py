"""The model's contract inside an exported file: ONNX ``metadata_props``, ``.pt2`` extra files.

:func:`export_metadata` builds it from a model (its ``pretrained_cfg``, checked by
:func:`~resnetlib.core.data_config.check_data_config`, and its spec); :func:`read_metadata`
reads it back and checks it the same way. Each entry is a string holding JSON:

- ``mean``, ``std``: what to normalize images in [0, 1] with before they enter the graph;
  ``input_size`` (C, H, W), ``interpolation``, ``crop_pct``, ``num_classes`` and
  ``label_names``: how to read an image and name the classes (``pretrained_cfg``'s keys);
- ``normalization_in_graph``: ``null``, or the ``{"mean": ..., "std": ...}`` the graph
  applies itself (``export --normalize``): its input is then images in [0, 1], and ``mean``
  and ``std`` above are 0 and 1, so a consumer that always applies them is right both ways;
- ``spec`` (the model's :class:`~resnetlib.ResNetSpec`) and ``resnetlib_version``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..common import installed_version
from ..core.data_config import check_data_config
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
    "label_names",
)
"""The ``pretrained_cfg`` entries an export carries (those that say how to feed it)."""

_REQUIRED = ("input_size", "mean", "std", "spec")


def _dump(value: object) -> str:
    return json.dumps(value, allow_nan=False)


def export_metadata(model: nn.Module) -> dict[str, str]:
    """The contract of ``model`` as ``{key: JSON text}``, for ONNX ``metadata_props`` and
    ``.pt2`` extra files. A model without a ``pretrained_cfg`` or spec gets what it has
    (at least ``resnetlib_version``); :func:`read_metadata` then refuses the file.

    Raises:
        ValueError: the model's ``pretrained_cfg`` fails :func:`check_data_config`.
    """
    config = check_data_config(getattr(model, "pretrained_cfg", None) or {})
    metadata = {
        key: _dump(list(config[key]) if isinstance(config[key], tuple) else config[key])
        for key in CONFIG_KEYS
        if key in config
    }
    inside = getattr(model, "normalization_in_graph", None)
    if isinstance(inside, tuple):
        mean, std = inside
        metadata["normalization_in_graph"] = _dump({"mean": list(mean), "std": list(std)})
    else:
        metadata["normalization_in_graph"] = "null"
    spec = getattr(model, "spec", None)
    if isinstance(spec, ResNetSpec):
        metadata["spec"] = spec.to_json()
    metadata["resnetlib_version"] = _dump(installed_version())
    return metadata


@dataclass(frozen=True)
class ExportContract:
    """What an exported file says about itself: its data ``config`` (checked; ``mean`` and
    ``std`` are for the graph's input), ``spec``, the ``normalization_in_graph`` (mean,
    std) or ``None``, and the ``version`` of resnetlib that wrote it."""

    config: dict[str, Any]
    spec: ResNetSpec
    normalization_in_graph: tuple[tuple[float, ...], tuple[float, ...]] | None
    version: str

    @property
    def takes_unit_range(self) -> bool:
        """Whether the graph takes images in [0, 1] (it normalizes them itself)."""
        return self.normalization_in_graph is not None


def read_metadata(metadata: Mapping[str, str], *, where: str) -> ExportContract:
    """The contract ``metadata`` (as :func:`export_metadata` wrote it) holds, each entry
    parsed by :func:`resnetlib.files.parse_json` and the data config checked by
    :func:`check_data_config`. ``where`` names the file in messages.

    Raises:
        ValueError: an entry is missing (a file resnetlib did not export), too long, not
            JSON, or fails its check.
    """
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise ValueError(
            f"{where}: no resnetlib metadata ({', '.join(missing)} missing), so nothing says "
            "how to feed it; export it with resnetlib export (0.2 or later)"
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
            {
                "input_size": config["input_size"],
                "mean": inside.get("mean"),
                "std": inside.get("std"),
            },
            where=f"{where} metadata normalization_in_graph",
        )
        normalization = (checked["mean"], checked["std"])
    version = value("resnetlib_version") if "resnetlib_version" in metadata else "unknown"
    return ExportContract(config, spec, normalization, str(version))
