"""Device-resident batches with whole-batch augmentation (the paper's CIFAR pipeline): random
draws are made on the CPU from seeds of ``(seed, epoch)`` (the order, alike on every rank) and
``(seed, epoch, rank)`` (crops and flips), so a run replays alike on any device and resumes exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..validate import check_int, check_keys, is_int
from .data import ImageDataset, data_statistics

__all__ = ["MAX_PAD", "Augment", "DeviceLoader", "augment_batch", "channel_stats", "pixel_mean"]

MAX_PAD = 64
"""Largest ``Augment.pad`` (the paper pads 4): the padded training set is held on the device."""
_PAD_BOUND = "resnetlib.train.pipeline.MAX_PAD: the padded images are held on the device"


@dataclass(frozen=True)
class Augment:
    """Training augmentation, by default the paper's (section 4.2): a uniformly random crop of the
    image padded with ``pad`` zeros (``pad=0``: none), mirrored with probability 1/2 if ``flip``."""

    pad: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        check_int("Augment.pad", self.pad, 0, MAX_PAD, bound=_PAD_BOUND)
        if not isinstance(self.flip, bool):
            raise ValueError(f"Augment.flip must be a bool, got {self.flip!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of JSON types."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Augment:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**check_keys("Augment", data, [f.name for f in fields(cls)]))


def pixel_mean(dataset: ImageDataset) -> torch.Tensor:
    """The per-pixel mean image (float32 C x H x W, [0, 1] units) of ``dataset``."""
    if len(dataset) == 0:
        raise ValueError(f"pixel_mean needs at least one image; {dataset.name!r} has none")
    total = torch.zeros(dataset.images.shape[1:], dtype=torch.float64)
    for start in range(0, len(dataset), 4096):  # bounded memory for large sets
        total += dataset.images[start : start + 4096].sum(0, dtype=torch.float64)
    return (total / (255.0 * len(dataset))).to(torch.float32)


def _as_image_stat(
    name: str, value: torch.Tensor | Sequence[float], shape: tuple[int, ...]
) -> torch.Tensor:
    """``value`` (per channel, or a C x H x W image) as a tensor that broadcasts over one."""
    tensor = torch.as_tensor(value, dtype=torch.float32)
    if tensor.dim() == 1 and tensor.numel() == shape[0]:
        tensor = tensor.view(-1, 1, 1)
    if tensor.shape not in ((shape[0], 1, 1), shape):
        raise ValueError(
            f"{name} must hold one value per channel ({shape[0]}) or be a C x H x W image "
            f"{shape}; got shape {tuple(tensor.shape)}"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite")
    return tensor


def channel_stats(dataset: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``dataset``'s pixels in [0, 1], computed (never published)."""
    return data_statistics(replace(dataset, statistics=None))


def _seeded(*parts: int) -> torch.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _crop_flip(
    padded: torch.Tensor,
    index: torch.Tensor,
    offsets: torch.Tensor,
    flips: torch.Tensor | None,
    size: tuple[int, int],
) -> torch.Tensor:
    """One gather from a strided view of every window of ``padded``."""
    windows = padded.unfold(2, size[0], 1).unfold(3, size[1], 1)  # N, C, rows, cols, h, w
    crops = windows[index, :, offsets[:, 0], offsets[:, 1]]  # B, C, h, w
    if flips is None:
        return crops
    return torch.where(flips[:, None, None, None], crops.flip(3), crops)


def augment_batch(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int
) -> torch.Tensor:
    """Crop ``images`` (B x C x H x W) padded by ``pad`` zeros at row ``offsets[b, 0]``, column
    ``offsets[b, 1]`` (in ``[0, 2 * pad]``), mirrored left-right where ``flips[b]``."""
    padded = F.pad(images, (pad, pad, pad, pad))
    index = torch.arange(images.shape[0], device=images.device)
    return _crop_flip(padded, index, offsets, flips, (images.shape[2], images.shape[3]))


class DeviceLoader:
    """Float32 batches of ``((images / 255 - mean) / std, labels)`` from uint8 images held on
    ``device``; ``mean`` and ``std`` per channel or C x H x W (``std=None``: 1). Rank ``rank``
    takes every ``world_size``-th index of the epoch's order, wrapped around (or cut, with
    ``drop_last``) as ``DistributedSampler`` does; call :meth:`set_epoch` before each epoch."""

    def __init__(
        self,
        dataset: ImageDataset,
        *,
        batch_size: int,
        device: torch.device | str,
        mean: torch.Tensor | Sequence[float],
        std: torch.Tensor | Sequence[float] | None = None,
        augment: Augment | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        check_int("batch_size", batch_size)
        check_int("world_size", world_size)
        if not is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
        if augment is not None and not isinstance(augment, Augment):
            raise ValueError(f"augment must be an Augment or None, got {type(augment).__name__}")
        shape = tuple(dataset.images.shape[1:])
        mean = _as_image_stat("mean", mean, shape)
        scale = torch.ones(1, 1, 1) if std is None else _as_image_stat("std", std, shape)
        if not bool((scale > 0).all()):
            raise ValueError("std must be positive")
        if len(dataset) < world_size:
            raise ValueError(
                f"{len(dataset)} images cannot be shared among world_size={world_size} ranks"
            )
        self.device = torch.device(device)
        self.image_size = (int(dataset.images.shape[2]), int(dataset.images.shape[3]))
        images = dataset.images.to(self.device)
        if augment is not None and augment.pad:  # padded once; each batch is one gather
            images = F.pad(images, (augment.pad,) * 4)
        self._images = images
        self.labels = dataset.labels.to(self.device)
        self.mean = mean.to(self.device)
        self.inverse_std = scale.reciprocal().to(self.device)
        self.batch_size, self.augment, self.channels_last = batch_size, augment, channels_last
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._position = 0  # batches yielded in the current epoch
        self._resume_at = 0  # set by load_state_dict: where the next iteration starts
        n = len(dataset)
        self.num_samples = n // world_size if drop_last else -(-n // world_size)  # per epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order and augmentation draws for the next iteration (the epoch
        of a loaded state keeps its position: ``load_state_dict`` resumes mid-epoch)."""
        if epoch != self.epoch:
            self._resume_at = 0
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in order (CPU, int64)."""
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=_seeded(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        if total > n:  # wrap around so that every rank gets num_samples
            order = torch.cat([order, order[: total - n]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cpu_indices = self.indices()
        indices = cpu_indices.to(self.device, non_blocking=True)
        augment = self.augment
        if augment is not None and (augment.pad or augment.flip):
            generator = _seeded(self.seed, self.epoch, self.rank)  # offsets, then flips
            n = len(cpu_indices)
            offsets = torch.randint(0, 2 * augment.pad + 1, (n, 2), generator=generator)
            offsets = offsets.to(self.device, non_blocking=True)
            flips = (torch.rand(n, generator=generator) < 0.5).to(self.device, non_blocking=True)
        else:
            augment = None

        start, self._resume_at = self._resume_at, 0
        self._position = start
        for i in range(start, len(self)):
            window = slice(i * self.batch_size, (i + 1) * self.batch_size)
            index = indices[window]
            if augment is not None:
                flip = flips[window] if augment.flip else None
                images = _crop_flip(self._images, index, offsets[window], flip, self.image_size)
            else:
                images = self._images[index]
            x = images.to(torch.float32).div_(255.0).sub_(self.mean).mul_(self.inverse_std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self._position = i + 1
            yield x, self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        """Epoch, batches handed out in it, and what must match on resume (alike on all ranks)."""
        return {
            "epoch": self.epoch,
            "position": self._position,
            "seed": self.seed,
            "num_images": len(self.labels),
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue where ``state`` (from :meth:`state_dict`) left off, mid-epoch exactly."""
        from .run_dir import LOADER_KEYS, record_differences

        differ = record_differences(state, self.state_dict(), LOADER_KEYS)
        if differ:
            raise ValueError(
                f"a loader state of other data, seed, batch size or world size: {'; '.join(differ)}"
            )
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"loader state position must lie in [0, {len(self)}], got {position}")
        self.epoch = int(state["epoch"])
        self._position = self._resume_at = position
