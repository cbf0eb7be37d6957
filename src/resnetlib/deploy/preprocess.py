"""A model's preprocessing: its normalization in front of it (:class:`Normalized`, for an
export that takes images in [0, 1]), images read as its ``pretrained_cfg`` says, and
:func:`predict`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..common import PathLike, check_finite_outputs, evaluating
from ..core.data_config import check_data_config, normalization, set_data_config
from ..images import bombs_refused, decode_image
from ..validate import check_int

__all__ = ["Normalized", "Prediction", "class_names", "predict", "read_images"]


class Normalized(nn.Module):
    """``model`` behind its own normalization: takes images in [0, 1], applies
    ``(x - mean) / std`` from ``model.pretrained_cfg`` (checked), then runs ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        config = check_data_config(getattr(model, "pretrained_cfg", {}))
        channels = int(config.get("input_size", (3,))[0])
        mean, std = normalization(config, channels)
        self.model = model
        self.mean: torch.Tensor
        self.inverse_std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("inverse_std", torch.tensor(std).reciprocal().view(1, -1, 1, 1))
        self.default_input_size = tuple(config.get("input_size", ()))
        set_data_config(self, {**config, "mean": (0.0,) * channels, "std": (1.0,) * channels})
        self.normalization_in_graph = (mean, std)  # exports record: the input is in [0, 1]
        if hasattr(model, "spec"):
            self.spec = model.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model((x - self.mean) * self.inverse_std)
        return out


def normalizing(config: Mapping[str, Any], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``config``'s mean and 1 / std as ``(C, 1, 1)`` tensors, for ``(x - mean) * inverse_std``."""
    mean, std = normalization(config, channels)
    return torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).reciprocal().view(-1, 1, 1)


def _reader(checked: Mapping[str, Any]) -> Callable[[PathLike], torch.Tensor]:
    if "input_size" not in checked:
        raise ValueError("the model's pretrained_cfg has no input_size: no size to read images at")
    channels, height, width = checked["input_size"]
    if channels not in (1, 3):
        raise ValueError(f"images are read as 1 or 3 channels; the model takes {channels}")
    shift, scale = normalizing(checked, channels)

    def read(path: PathLike) -> torch.Tensor:
        with bombs_refused():
            pixels = decode_image(
                path,
                channels=channels,
                size=(height, width),
                crop_pct=float(checked.get("crop_pct") or 1.0),
                crop_mode=str(checked.get("crop_mode") or "center"),
                interpolation=str(checked.get("interpolation") or "bilinear"),
                dtype=torch.float32,
            )
        return (pixels - shift) * scale

    return read


def read_images(paths: Iterable[PathLike], config: Mapping[str, Any]) -> torch.Tensor:
    """Decode ``paths`` to one N x C x H x W float tensor as ``config`` (a ``pretrained_cfg``)
    says: channels, resize and centre crop (``crop_pct``, ``crop_mode``), then per-channel
    normalization.

    Raises:
        ValueError: ``config`` fails ``check_data_config``; or a file is not an image, or is
            refused by a bound (:class:`resnetlib.images.ImageError`, naming it).
    """
    read = _reader(check_data_config(config))
    return torch.stack([read(path) for path in paths])


def class_names(config: dict[str, Any], count: int) -> list[str]:
    """The class names a ``pretrained_cfg`` gives (``label_names``), or ``class i``."""
    names = config.get("label_names")
    if isinstance(names, (list, tuple)) and len(names) == count:
        return [str(name) for name in names]
    return [f"class {i}" for i in range(count)]


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image: (index, name, probability), best first."""

    path: str
    classes: tuple[tuple[int, str, float], ...]


def predict(
    model: nn.Module,
    paths: Iterable[PathLike],
    *,
    top: int = 5,
    batch_size: int = 32,
) -> Iterator[Prediction]:
    """The top classes of each image in ``paths``, best first, as an iterator: images are
    read as :func:`read_images` reads them and run ``batch_size`` at a time.

    Raises:
        ValueError: now, the model has no head (``num_classes`` 0) or its ``pretrained_cfg``
            fails ``check_data_config``; while iterating, an image that cannot be read (naming
            it), or outputs that are not finite (``check_finite_outputs``).
    """
    check_int("top", top, 1)
    check_int("batch_size", batch_size, 1)
    if getattr(model, "num_classes", None) == 0:
        raise ValueError(
            "the model has no classifier head (num_classes 0): its outputs are pooled "
            "features, not classes; predict with a model that has a head"
        )
    config = check_data_config(getattr(model, "pretrained_cfg", {}))
    read = _reader(config)
    remaining = iter(paths)

    def predictions() -> Iterator[Prediction]:
        names: list[str] | None = None
        while chunk := list(itertools.islice(remaining, batch_size)):
            x = torch.stack([read(path) for path in chunk])
            parameter = next(model.parameters(), x)
            x = x.to(parameter.device, parameter.dtype)
            with evaluating(model):
                logits = model(x).float()
            check_finite_outputs(model, logits)
            probabilities = logits.softmax(1).cpu()
            del x, logits
            if names is None:
                names = class_names(config, probabilities.shape[1])
            values, indices = probabilities.topk(min(top, probabilities.shape[1]), dim=1)
            for row, path in enumerate(chunk):
                ranked = zip(values[row].tolist(), indices[row].tolist(), strict=True)
                yield Prediction(str(path), tuple((i, names[i], p) for p, i in ranked))

    return predictions()
