"""Data configuration: what a model's inputs must look like (timm's ``pretrained_cfg``).

A model's ``pretrained_cfg`` is a plain dict with timm's keys, so that
``timm.data.resolve_data_config(model=model)`` and code written for timm's models read a
resnetlib model's own settings: ``input_size`` (from the stem: CIFAR stems 3x32x32,
ImageNet stems 3x224x224), ``mean``/``std``, ``interpolation``, ``crop_pct``,
``pool_size`` (the last feature map's size at ``input_size``), ``first_conv`` and
``classifier`` (module names) and ``num_classes``. Pretrained weights replace it with the
configuration their publisher evaluated them with (:mod:`resnetlib.models.weights`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..files import parse_json
from ..images import INTERPOLATIONS
from ..limits import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIDE,
    MAX_LABEL_NAME,
    MAX_NORM_VALUE,
    MIN_CROP_PCT,
    MIN_STD,
)
from ..validate import is_int, is_real

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
    "config_from_json",
    "config_to_json",
    "data_config",
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
# Data set statistics have one definition here: the per-channel mean and (population) std
# over every pixel of the training split, in [0, 1] (what ``data_statistics`` in
# resnetlib.train.data computes for a data set that publishes none).
# CIFAR-10, 50,000 training images: np.mean/np.std over axes (N, H, W) / 255, as computed by
# bamos/densenet.pytorch (compute-cifar10-mean.py) and quoted in kuangliu/pytorch-cifar#19.
# The often-copied std (0.2023, 0.1994, 0.2010) (mmpretrain's cifar10_bs16.py, 51.5865/255..)
# is the average of the per-image stds, another quantity: the weights published with it keep
# it in their own configuration (resnetlib.models.weights).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
# CIFAR-100, 50,000 training images, same definition: weiaicunzai/pytorch-cifar100
# conf/global_settings.py (CIFAR100_TRAIN_MEAN/STD); mmpretrain's cifar100_bs16.py gives the
# same to 1e-5 on the 0..255 scale (129.304, 124.070, 112.434) / (68.170, 65.392, 70.418).
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)


def per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """``values`` for ``channels`` input channels: as they are when there is one a channel,
    else their average for each (statistics of RGB for a 1-channel stem, say)."""
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
    classifier: str = "fc",
) -> dict[str, Any]:
    """A timm-style data configuration dict.

    Without ``mean``/``std``, inputs of side 32 or less get CIFAR-10's statistics and others
    ImageNet's; without ``crop_pct``, CIFAR-sized inputs are not cropped (1.0) and others
    get timm's default 0.875. For another number of input channels than the statistics
    have, each channel gets their average.
    """
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
        "classifier": classifier,
    }


def config_to_json(config: Mapping[str, Any]) -> str:
    """``config`` as JSON text (tuples as lists); a value JSON cannot hold is a ``ValueError``
    naming its key."""
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


def config_from_json(text: str | bytes) -> dict[str, Any]:
    """The inverse of :func:`config_to_json` (parsed by :func:`resnetlib.files.parse_json`),
    checked by :func:`check_data_config`."""
    return config_from_dict(parse_json(text, where="data configuration JSON"))


def config_from_dict(data: object) -> dict[str, Any]:
    """A configuration read from JSON (``run.json``'s, a checkpoint's), checked by
    :func:`check_data_config` (its tuple-valued keys as tuples again)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a data configuration must be a JSON object; got {type(data).__name__}")
    return check_data_config(data)


def _reals(
    where: str, name: str, values: object, count: int, low: float, high: float
) -> tuple[float, ...]:
    if (
        not isinstance(values, (tuple, list))
        or len(values) != count
        or not all(is_real(v) and math.isfinite(v) and low <= v <= high for v in values)
    ):
        rule = f"must hold {count} finite numbers (one per input channel) from {low:g} to {high:g}"
        raise _refused(where, name, rule, values)
    return tuple(float(v) for v in values)


def _refused(where: str, key: str, rule: str, value: object) -> ValueError:
    """The error of every check here: ``where``'s ``key`` must ``rule``; the value, cut short."""
    text = repr(value)
    return ValueError(
        f"{where} {key} {rule}; got {text if len(text) <= 200 else text[:200] + '...'}"
    )


def _size(where: str, name: str, value: object) -> tuple[int, int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or not all(is_int(v) for v in value)
        or not 1 <= value[0] <= MAX_CHANNELS
        or not all(1 <= side <= MAX_IMAGE_SIDE for side in value[1:])
    ):
        rule = (
            f"must be (channels, height, width): channels up to {MAX_CHANNELS:,}, sides up to "
            f"{MAX_IMAGE_SIDE:,} (resnetlib.limits)"
        )
        raise _refused(where, name, rule, value)
    return (value[0], value[1], value[2])


def check_data_config(
    config: Mapping[str, Any], *, where: str = "pretrained_cfg"
) -> dict[str, Any]:
    """``config`` as a new dict, checked: the one validator of a data configuration, used by
    :func:`~resnetlib.load`, the commands, export and predict alike.

    ``input_size`` is (C, H, W) within :mod:`resnetlib.limits`; ``mean`` and ``std`` hold
    one finite number per channel, ``|mean|`` and ``std`` at most ``MAX_NORM_VALUE`` and
    ``std`` at least ``MIN_STD`` (a std of 1e-300 makes every output NaN); ``crop_pct`` is
    from ``MIN_CROP_PCT`` to 1 and the resize it asks for (``side / crop_pct``) within
    ``MAX_IMAGE_SIDE``; ``interpolation`` one of :data:`resnetlib.images.INTERPOLATIONS`;
    ``label_names`` ``num_classes`` strings of at most ``MAX_LABEL_NAME`` characters. Keys
    it does not know (a weights file's URL, licence) pass unchecked. Tuple-valued keys come
    back as tuples.

    Raises:
        ValueError: naming ``where``, the key, the value and what is allowed.
    """
    checked = dict(config)
    for key in ("pool_size", "test_input_size"):
        if isinstance(checked.get(key), list):
            checked[key] = tuple(checked[key])
    if "num_classes" in checked and (
        not is_int(checked["num_classes"]) or not 0 <= checked["num_classes"] <= MAX_CLASSES
    ):
        rule = f"must be an int from 0 to {MAX_CLASSES:,}"
        raise _refused(where, "num_classes", rule, checked["num_classes"])
    channels = None
    for key in ("input_size", "test_input_size"):
        if checked.get(key) is not None:
            checked[key] = _size(where, key, checked[key])
    if "input_size" in checked:
        channels, height, width = checked["input_size"]
    for key, low, high in (
        ("mean", -MAX_NORM_VALUE, MAX_NORM_VALUE),
        ("std", MIN_STD, MAX_NORM_VALUE),
    ):
        if key in checked:
            values = checked[key]
            count = channels or (len(values) if isinstance(values, (tuple, list)) else 0)
            checked[key] = _reals(where, key, values, max(count, 1), low, high)
    crop = checked.get("crop_pct")
    if crop is not None:
        if not is_real(crop) or not MIN_CROP_PCT <= crop <= 1:
            raise _refused(where, "crop_pct", f"must be a number from {MIN_CROP_PCT} to 1", crop)
        if channels is not None and max(height, width) / crop > MAX_IMAGE_SIDE:
            raise ValueError(
                f"{where} crop_pct {crop} asks to resize to {max(height, width) / crop:,.0f} "
                f"pixels a side, more than resnetlib's {MAX_IMAGE_SIDE:,} (resnetlib.limits)"
            )
    interpolation = checked.get("interpolation")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        rule = f"must be one of {', '.join(INTERPOLATIONS)}"
        raise _refused(where, "interpolation", rule, interpolation)
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
            raise _refused(where, "label_names", rule, names)
        checked["label_names"] = list(names)
    return checked


def set_data_config(model: Any, config: Mapping[str, Any]) -> None:
    """Set ``model.pretrained_cfg`` to ``config`` fitted to the model and checked: the one
    place a model's data configuration is replaced.

    ``num_classes`` becomes the model's (``label_names`` of another number of classes are
    dropped: they named another head's outputs); where the model takes another number of input
    channels than ``config`` describes (an adapted stem), ``input_size`` takes the model's
    channels and ``mean``/``std`` the average of the configuration's channels.

    Raises:
        ValueError: the result fails :func:`check_data_config`.
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
            if isinstance(values, (tuple, list)) and values and all(is_real(v) for v in values):
                fitted[key] = per_channel(values, channels)
    model.pretrained_cfg = check_data_config(fitted)


def normalization(
    config: Mapping[str, Any], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` that ``config`` asks inputs in [0, 1] to be normalized
    with, checked by :func:`check_data_config` for ``channels`` input channels.

    Raises:
        ValueError: no valid mean and std for ``channels`` channels.
    """
    where = "the model's pretrained_cfg"
    mean = _reals(where, "mean", config.get("mean"), channels, -MAX_NORM_VALUE, MAX_NORM_VALUE)
    std = _reals(where, "std", config.get("std"), channels, MIN_STD, MAX_NORM_VALUE)
    return mean, std
