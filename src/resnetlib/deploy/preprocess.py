"""A model's preprocessing as part of the model: normalization, and images read as it expects.

:class:`Normalized` puts a model's per-channel normalization in front of it, so that an
exported graph takes images scaled to [0, 1] and needs no preprocessing code beside it.
:func:`read_images` decodes image files the way a model's ``pretrained_cfg`` says (channels,
resize, centre crop, interpolation) and normalizes them; :func:`predict` ranks the classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..common import PathLike, evaluating
from ..core.data_config import CIFAR10_CLASSES, normalization

__all__ = [
    "MAX_DECODED_PIXELS",
    "Normalized",
    "Prediction",
    "class_names",
    "predict",
    "read_images",
]


MAX_DECODED_PIXELS = 64 * 1024 * 1024
"""The largest image (width x height) :func:`read_images` decodes: 64 megapixels."""


class Normalized(nn.Module):
    """``model`` behind its own normalization: takes images in [0, 1], applies
    ``(x - mean) / std`` from ``model.pretrained_cfg``, then runs ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        config: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}))
        channels = int(config.get("input_size", (3,))[0])
        mean, std = normalization(config, channels)
        self.model = model
        self.mean: torch.Tensor
        self.inverse_std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("inverse_std", torch.tensor(std).reciprocal().view(1, -1, 1, 1))
        self.pretrained_cfg = {**config, "mean": (0.0,) * channels, "std": (1.0,) * channels}
        self.default_input_size = tuple(config.get("input_size", ()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model((x - self.mean) * self.inverse_std)
        return out


def _resample(name: object) -> Any:
    from PIL import Image

    return {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }.get(str(name), Image.Resampling.BILINEAR)


def read_images(paths: Sequence[PathLike], config: dict[str, Any]) -> torch.Tensor:
    """Decode ``paths`` as ``config`` (a ``pretrained_cfg``) says: its channels (L or RGB),
    the shorter side resized to ``size / crop_pct``, a centre crop of ``input_size``, then
    per-channel normalization. Returns an N x C x H x W float tensor.

    Raises:
        ValueError: a file that is not an image, or larger than :data:`MAX_DECODED_PIXELS`
            (named in the message).
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError('reading images needs Pillow: pip install "resnetlib[train]"') from None
    channels, height, width = (int(n) for n in config["input_size"])
    crop = float(config.get("crop_pct") or 1.0)
    mean, std = normalization(config, channels)
    batch = []
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_DECODED_PIXELS:
                    raise ValueError(
                        f"{path}: {image.width}x{image.height} pixels is more than the "
                        f"{MAX_DECODED_PIXELS:,} resnetlib decodes"
                    )
                image = image.convert("L" if channels == 1 else "RGB")
                scale = max(height, width) / crop / min(image.width, image.height)
                size = (
                    max(width, math.floor(image.width * scale + 0.5)),
                    max(height, math.floor(image.height * scale + 0.5)),
                )
                image = image.resize(size, _resample(config.get("interpolation")))
                left, top = (size[0] - width) // 2, (size[1] - height) // 2
                image = image.crop((left, top, left + width, top + height))
                data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from None
        pixels = data.view(height, width, channels).permute(2, 0, 1).float() / 255
        batch.append(pixels)
    x = torch.stack(batch)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def class_names(config: dict[str, Any], count: int) -> list[str]:
    """The class names a ``pretrained_cfg`` knows (``label_names``, or CIFAR-10's), else
    ``class 0`` .. ``class N-1``."""
    names = config.get("label_names")
    if isinstance(names, (list, tuple)) and len(names) == count:
        return [str(name) for name in names]
    if config.get("classes") == "cifar10" and count == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return [f"class {i}" for i in range(count)]


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image: (index, name, probability), best first."""

    path: str
    classes: tuple[tuple[int, str, float], ...]


def predict(model: nn.Module, paths: Sequence[PathLike], *, top: int = 5) -> list[Prediction]:
    """Read ``paths`` as the model expects (:func:`read_images`) and rank its classes."""
    config: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}))
    x = read_images(paths, config)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        x = x.to(parameter.device, parameter.dtype)
    with evaluating(model):
        probabilities = model(x).float().softmax(1).cpu()
    names = class_names(config, probabilities.shape[1])
    k = min(top, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    return [
        Prediction(
            str(path),
            tuple(
                (int(i), names[int(i)], float(p))
                for p, i in zip(values[row], indices[row], strict=True)
            ),
        )
        for row, path in enumerate(paths)
    ]
