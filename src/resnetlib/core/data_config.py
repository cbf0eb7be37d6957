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
from collections.abc import Mapping
from typing import Any

from ..validate import is_real

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
    "config_from_dict",
    "config_from_json",
    "config_to_json",
    "data_config",
    "normalization",
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
# mmpretrain configs/_base_/datasets/cifar10_bs16.py and cifar100_bs16.py (0..255 scale there).
CIFAR10_MEAN = (125.307 / 255, 122.961 / 255, 113.8575 / 255)
CIFAR10_STD = (51.5865 / 255, 50.847 / 255, 51.255 / 255)
CIFAR100_MEAN = (129.304 / 255, 124.070 / 255, 112.434 / 255)
CIFAR100_STD = (68.170 / 255, 65.392 / 255, 70.418 / 255)


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
    if len(mean) != channels:
        mean = (sum(mean) / len(mean),) * channels
    if len(std) != channels:
        std = (sum(std) / len(std),) * channels
    return {
        "num_classes": num_classes,
        "input_size": input_size,
        "pool_size": (math.ceil(height / reduction), math.ceil(width / reduction)),
        "interpolation": interpolation,
        "crop_pct": crop_pct if crop_pct is not None else (1.0 if small else 0.875),
        "crop_mode": "center",
        "mean": tuple(mean),
        "std": tuple(std),
        "first_conv": first_conv,
        "classifier": classifier,
    }


# Keys whose values are tuples in a configuration (JSON turns them into lists).
_TUPLE_KEYS = ("input_size", "mean", "std", "pool_size", "test_input_size")


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


def config_from_json(text: str) -> dict[str, Any]:
    """The inverse of :func:`config_to_json`: the tuple-valued keys come back as tuples."""
    return config_from_dict(json.loads(text))


def config_from_dict(data: object) -> dict[str, Any]:
    """A configuration read from JSON (``run.json``'s, a checkpoint's), its tuple-valued
    keys as tuples again."""
    if not isinstance(data, dict):
        raise ValueError(f"a data configuration must be a JSON object; got {type(data).__name__}")
    config = dict(data)
    for key in _TUPLE_KEYS:
        if isinstance(config.get(key), list):
            config[key] = tuple(config[key])
    return config


def normalization(
    config: Mapping[str, Any], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` that ``config`` asks inputs in [0, 1] to be normalized
    with, checked: one positive finite std and one finite mean per channel."""
    checked: dict[str, tuple[float, ...]] = {}
    for name in ("mean", "std"):
        values = config.get(name)
        if (
            not isinstance(values, (tuple, list))
            or len(values) != channels
            or not all(is_real(v) and math.isfinite(v) for v in values)
        ):
            raise ValueError(
                f"the model's pretrained_cfg {name} must hold {channels} finite numbers (one "
                f"per input channel); got {values!r}"
            )
        checked[name] = tuple(float(v) for v in values)
    if min(checked["std"]) <= 0:
        raise ValueError(f"the model's pretrained_cfg std must be positive; got {checked['std']}")
    return checked["mean"], checked["std"]
