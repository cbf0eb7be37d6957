"""Data configuration: what a model's inputs must look like, as a dict with timm's
``pretrained_cfg`` keys, so that ``timm.data.resolve_data_config(model=model)`` reads it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..images import CROP_MODES, INTERPOLATIONS
from ..limits import (
    MAX_CLASSES,
    MAX_IMAGE_SIDE,
    MAX_LABEL_NAME,
    MAX_NORM_VALUE,
    MIN_CROP_PCT,
    MIN_STD,
)
from ..validate import check_input_size, is_int, is_real, refusal

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "check_data_config",
    "config_from_dict",
    "config_to_json",
    "data_config",
    "fitted_data_config",
    "normalization",
    "set_data_config",
]

# timm/data/constants.py (IMAGENET_DEFAULT_*, IMAGENET_INCEPTION_*), also torchvision's
# ImageClassification defaults (torchvision/transforms/_presets.py).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
# batches.meta of cifar-10-batches-py, in label order.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel mean and population std of every training pixel in [0, 1] (``data_statistics``).
# CIFAR-10: bamos/densenet.pytorch's compute-cifar10-mean.py (kuangliu/pytorch-cifar#19); the
# often-copied std (0.2023, 0.1994, 0.2010) averages per-image stds, another quantity.
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
# CIFAR-100: weiaicunzai/pytorch-cifar100's conf/global_settings.py (mmpretrain's agrees).
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)


def per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """``values`` for ``channels`` input channels: as they are, or else their average for each."""
    if len(values) == channels:
        return tuple(values)
    return (sum(values) / len(values),) * channels


def data_config(
    *,
    num_classes: int,
    input_size: tuple[int, int, int],
    reduction: int,
    first_conv: str,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    interpolation: str = "bilinear",
    crop_pct: float | None = None,
) -> dict[str, Any]:
    """A timm-style data configuration; without ``mean``/``std`` or ``crop_pct``, inputs of side
    32 or less get CIFAR-10's statistics and 1.0, others ImageNet's and timm's 0.875."""
    channels, height, width = input_size
    small = max(height, width) <= 32
    mean = mean or (CIFAR10_MEAN if small else IMAGENET_MEAN)
    std = std or (CIFAR10_STD if small else IMAGENET_STD)
    return {
        "num_classes": num_classes,
        "input_size": input_size,
        "pool_size": (math.ceil(height / reduction), math.ceil(width / reduction)),
        "interpolation": interpolation,
        "crop_pct": crop_pct if crop_pct is not None else (1.0 if small else 0.875),
        "crop_mode": "center",
        "mean": per_channel(mean, channels),
        "std": per_channel(std, channels),
        "first_conv": first_conv,
        "classifier": "fc",
    }


def config_to_json(config: Mapping[str, Any]) -> str:
    """``config`` as JSON text; a value JSON cannot hold is a ``ValueError`` naming its key."""
    try:
        return json.dumps(dict(config), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        bad = [key for key, value in config.items() if not _jsonable(value)]
        raise ValueError(
            f"pretrained_cfg entries {bad or list(config)} cannot be stored as JSON ({error}); "
            "keep the configuration to numbers, strings, booleans, None, lists and dicts"
        ) from None


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def config_from_dict(data: object) -> dict[str, Any]:
    """A configuration read from JSON, checked by :func:`check_data_config`."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a data configuration must be a JSON object; got {type(data).__name__}")
    return check_data_config(data)


# timm's pretrained_cfg keys that hold a name or text (None: not given).
_TEXT_KEYS = ("classifier", "first_conv", "license", "hf_hub_id", "tag", "origin_url")
# The range of each value of a ``mean`` and a ``std`` (one per input channel).
_STATISTIC_RANGE = {"mean": (-MAX_NORM_VALUE, MAX_NORM_VALUE), "std": (MIN_STD, MAX_NORM_VALUE)}


def _statistic(where: str, name: str, values: object, count: int) -> tuple[float, ...]:
    low, high = _STATISTIC_RANGE[name]
    if (
        not isinstance(values, (tuple, list))
        or len(values) != count
        or not all(is_real(v) and math.isfinite(v) and low <= v <= high for v in values)
    ):
        rule = f"must hold {count} finite numbers (one per input channel) from {low:g} to {high:g}"
        raise refusal(f"{where} {name}", rule, values)
    return tuple(map(float, values))


def check_data_config(
    config: Mapping[str, Any], *, where: str = "pretrained_cfg"
) -> dict[str, Any]:
    """``config`` as a new dict, its ``num_classes``, ``input_size`` (and ``test_``),
    ``pool_size``, ``mean``/``std``, ``crop_pct`` (and ``test_``), ``crop_mode``,
    ``interpolation``, ``label_names`` and names and texts (``classifier``, ``first_conv``,
    ``license``, ``hf_hub_id``, ``tag``, ``origin_url``) checked within
    :mod:`resnetlib.limits` (the one validator of a data configuration); tuple-valued keys
    come back as tuples.

    Raises:
        ValueError: naming ``where``, the key, the value and what is allowed.
    """
    checked = dict(config)
    pool = checked.get("pool_size")
    if pool is not None:
        if (
            not isinstance(pool, (tuple, list))
            or len(pool) != 2
            or not all(is_int(v) and 1 <= v <= MAX_IMAGE_SIDE for v in pool)
        ):
            rule = f"must be (height, width): ints from 1 to {MAX_IMAGE_SIDE:,}"
            raise refusal(f"{where} pool_size", rule, pool)
        checked["pool_size"] = tuple(pool)
    for key in _TEXT_KEYS:
        text = checked.get(key)
        if text is not None and (not isinstance(text, str) or len(text) > MAX_LABEL_NAME):
            raise refusal(
                f"{where} {key}", f"must be a str of at most {MAX_LABEL_NAME:,} characters", text
            )
    if "num_classes" in checked and (
        not is_int(checked["num_classes"]) or not 0 <= checked["num_classes"] <= MAX_CLASSES
    ):
        rule = f"must be an int from 0 to {MAX_CLASSES:,}"
        raise refusal(f"{where} num_classes", rule, checked["num_classes"])
    channels = None
    for key in ("input_size", "test_input_size"):
        if key in checked and (checked[key] is not None or key == "input_size"):
            checked[key] = check_input_size(checked[key], name=f"{where} {key}")
    if "input_size" in checked:
        channels = checked["input_size"][0]
    for key in _STATISTIC_RANGE:
        if key in checked:
            values = checked[key]
            count = channels or (len(values) if isinstance(values, (tuple, list)) else 0)
            checked[key] = _statistic(where, key, values, max(count, 1))
    for key, size_key in (("crop_pct", "input_size"), ("test_crop_pct", "test_input_size")):
        crop = checked.get(key)
        if crop is None:
            continue
        if not is_real(crop) or not MIN_CROP_PCT <= crop <= 1:
            raise refusal(f"{where} {key}", f"must be a number from {MIN_CROP_PCT} to 1", crop)
        size = checked.get(size_key) or checked.get("input_size")
        if size is not None and max(size[1:]) / crop > MAX_IMAGE_SIDE:
            raise ValueError(
                f"{where} {key} {crop} asks to resize to {max(size[1:]) / crop:,.0f} "
                f"pixels a side, more than resnetlib's {MAX_IMAGE_SIDE:,} (resnetlib.limits)"
            )
    mode = checked.get("crop_mode")
    if mode is not None and mode not in (*CROP_MODES, "border"):  # timm's; border: not read
        rule = f"must be one of {', '.join(CROP_MODES)} or border"
        raise refusal(f"{where} crop_mode", rule, mode)
    interpolation = checked.get("interpolation")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        rule = f"must be one of {', '.join(INTERPOLATIONS)}"
        raise refusal(f"{where} interpolation", rule, interpolation)
    names = checked.get("label_names")
    if names is not None:
        classes = checked.get("num_classes")
        if (
            not isinstance(names, (tuple, list))
            or len(names) > MAX_CLASSES
            or (is_int(classes) and len(names) != classes)
            or not all(isinstance(n, str) and len(n) <= MAX_LABEL_NAME for n in names)
        ):
            rule = (
                f"must be a list of {classes if is_int(classes) else 'the'} class names "
                f"(strings of at most {MAX_LABEL_NAME} characters)"
            )
            raise refusal(f"{where} label_names", rule, names)
        checked["label_names"] = list(names)
    return checked


def fitted_data_config(model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` fitted to ``model``, as :func:`set_data_config` sets it and ``save`` stores
    it: its ``num_classes`` (dropping other ``label_names``) and, for other input channels,
    its ``input_size`` and the average of a ``mean``/``std`` given one per channel of it.

    Raises:
        ValueError: it fails :func:`check_data_config` (a ``mean``/``std`` not one per channel).
    """
    fitted = dict(config)
    # A wrapper (an export's Normalized) may have neither: its config is its model's.
    num_classes = getattr(model, "num_classes", fitted.get("num_classes"))
    names = fitted.get("label_names")
    if isinstance(names, (tuple, list)) and len(names) != num_classes:
        del fitted["label_names"]  # another head's classes (a fine-tune's new head)
    if num_classes is not None:
        fitted["num_classes"] = num_classes
    default_size = getattr(model, "default_input_size", None) or fitted.get("input_size")
    channels = default_size[0] if default_size else None
    size = tuple(fitted.get("input_size") or ())
    if channels is not None and size[:1] != (channels,):
        fitted["input_size"] = (channels, *size[1:]) if len(size) == 3 else default_size
        for key in ("mean", "std"):
            values = fitted.get(key)
            if (
                len(size) == 3
                and isinstance(values, (tuple, list))
                and len(values) == size[0]  # one per channel of the config's own input
                and all(is_real(v) for v in values)
            ):
                fitted[key] = per_channel(values, channels)
    return check_data_config(fitted)


def set_data_config(model: Any, config: Mapping[str, Any]) -> None:
    """Set ``model.pretrained_cfg`` (the one place that does) to :func:`fitted_data_config`.

    Raises:
        ValueError: the result fails :func:`check_data_config`.
    """
    model.pretrained_cfg = fitted_data_config(model, config)


def normalization(
    config: Mapping[str, Any], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` that ``config`` asks inputs in [0, 1] to be normalized
    with; ``ValueError`` without a valid mean and std for ``channels`` channels."""
    where = "the model's pretrained_cfg"
    mean = _statistic(where, "mean", config.get("mean"), channels)
    std = _statistic(where, "std", config.get("std"), channels)
    return mean, std
