"""Device-resident batches and whole-batch augmentation (resnetlib.train.pipeline)."""

from __future__ import annotations

import json
from itertools import product

import pytest
import torch
import torch.nn.functional as F

from resnetlib.train.data import ImageDataset
from resnetlib.train.pipeline import (
    Augment,
    DeviceLoader,
    augment_batch,
    channel_stats,
    pixel_mean,
)


def _dataset(n: int = 12, size: int = 6, channels: int = 3, seed: int = 0) -> ImageDataset:
    """Random images; label i for image i, so yielded labels reveal the indices."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=generator)
    classes = tuple(f"c{i}" for i in range(n))
    return ImageDataset(images.to(torch.uint8), torch.arange(n), classes, "toy")


def _reference(image: torch.Tensor, dy: int, dx: int, flip: bool, pad: int) -> torch.Tensor:
    """One sample, the textbook way: pad with zeros, slice the crop, maybe mirror it."""
    h, w = image.shape[-2:]
    crop = F.pad(image, (pad, pad, pad, pad))[:, dy : dy + h, dx : dx + w]
    return crop.flip(-1) if flip else crop


def _epoch(loader: DeviceLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.cpu(), y.cpu()) for x, y in loader]


def _labels(loader: DeviceLoader) -> list[int]:
    return [int(v) for _, y in loader for v in y]


# --------------------------------------------------------------------------------------
# Augment, pixel_mean
# --------------------------------------------------------------------------------------


def test_augment_is_validated_data() -> None:
    assert Augment() == Augment(pad=4, flip=True)
    for bad in ({"pad": -1}, {"pad": True}, {"pad": 1.5}, {"flip": "yes"}):
        with pytest.raises(ValueError, match=f"Augment.{next(iter(bad))}"):
            Augment(**bad)  # type: ignore[arg-type]
    augment = Augment(pad=2, flip=False)
    assert Augment.from_dict(json.loads(json.dumps(augment.to_dict()))) == augment
    with pytest.raises(ValueError, match=r"Augment has unknown keys \['crop'\]"):
        Augment.from_dict({"pad": 2, "crop": 3})
    with pytest.raises(AttributeError):
        augment.pad = 3  # type: ignore[misc]


def test_pixel_mean() -> None:
    dataset = _dataset(n=5)
    mean = pixel_mean(dataset)
    assert mean.dtype == torch.float32
    assert mean.shape == (3, 6, 6)
    expected = dataset.images.double().mean(0) / 255
    torch.testing.assert_close(mean, expected.float(), rtol=0, atol=1e-7)


# --------------------------------------------------------------------------------------
# Test path and augmentation invariants
# --------------------------------------------------------------------------------------


def test_test_path_is_exact(device: torch.device) -> None:
    dataset = _dataset(n=10)
    mean = pixel_mean(dataset)
    loader = DeviceLoader(dataset, batch_size=4, device=device, mean=mean)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.device.type == device.type
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert y.tolist() == list(range(10))
    torch.testing.assert_close(x.cpu() + mean, dataset.images.float() / 255)
    # mean subtraction: the batch mean over the whole set is zero
    torch.testing.assert_close(x.mean(0).cpu(), torch.zeros(3, 6, 6), rtol=0, atol=1e-6)


def test_augment_batch_matches_per_sample_reference(device: torch.device) -> None:
    images = _dataset(n=16).images.to(device)
    pad = 2
    generator = torch.Generator().manual_seed(1)
    offsets = torch.randint(0, 2 * pad + 1, (16, 2), generator=generator)
    flips = torch.rand(16, generator=generator) < 0.5
    out = augment_batch(images, offsets.to(device), flips.to(device), pad).cpu()
    assert out.shape == images.shape
    assert out.dtype == torch.uint8
    for b in range(16):
        expected = _reference(images[b].cpu(), *offsets[b].tolist(), bool(flips[b]), pad)
        assert torch.equal(out[b], expected)
    # offset == pad is the identity, so the crop really is the image shifted by the offset
    centre = torch.full((16, 2), pad)
    none = torch.zeros(16, dtype=torch.bool)
    assert torch.equal(augment_batch(images, centre.to(device), none.to(device), pad), images)


def test_flip_is_exact(device: torch.device) -> None:
    images = _dataset(n=8).images.to(device)
    offsets = torch.randint(0, 9, (8, 2), generator=torch.Generator().manual_seed(2)).to(device)
    yes = torch.ones(8, dtype=torch.bool, device=device)
    no = torch.zeros(8, dtype=torch.bool, device=device)
    flipped = augment_batch(images, offsets, yes, 4)
    assert torch.equal(flipped, torch.flip(augment_batch(images, offsets, no, 4), dims=[3]))
    centre = torch.full((8, 2), 4, device=device)
    once = augment_batch(images, centre, yes, 4)
    assert not torch.equal(once, images)
    assert torch.equal(augment_batch(once, centre, yes, 4), images)


def test_loader_crops_lie_within_the_padding(device: torch.device) -> None:
    dataset = _dataset(n=12, size=5)
    zero = torch.zeros(3, 5, 5)
    loader = DeviceLoader(
        dataset, batch_size=5, device=device, mean=zero, augment=Augment(pad=2), shuffle=True
    )
    seen = {"flipped": 0, "shifted": 0}
    for x, y in loader:
        assert x.shape[1:] == (3, 5, 5)
        pixels = (x.cpu() * 255).round().to(torch.uint8)
        for image, label in zip(pixels, y.tolist(), strict=True):
            matches = [
                (dy, dx, flip)
                for dy, dx, flip in product(range(5), range(5), (False, True))
                if torch.equal(image, _reference(dataset.images[label], dy, dx, flip, 2))
            ]
            assert matches, f"sample {label} is no crop of its padded image"
            seen["flipped"] += matches[0][2]
            seen["shifted"] += matches[0][:2] != (2, 2)
    assert seen["flipped"] > 0
    assert seen["shifted"] > 0


def test_augmentation_is_off_at_test_and_can_be_partial(device: torch.device) -> None:
    dataset = _dataset(n=8)
    mean = pixel_mean(dataset)
    plain = next(iter(DeviceLoader(dataset, batch_size=8, device=device, mean=mean)))[0]
    flip_only = DeviceLoader(
        dataset, batch_size=8, device=device, mean=mean, augment=Augment(pad=0, flip=True)
    )
    x = next(iter(flip_only))[0].cpu()
    pixels = ((x + mean) * 255).round().to(torch.uint8)
    flipped = 0
    for image, original in zip(pixels, dataset.images, strict=True):  # itself or its mirror
        assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
        flipped += not torch.equal(image, original)
    assert 0 < flipped < 8
    off = DeviceLoader(
        dataset, batch_size=8, device=device, mean=mean, augment=Augment(pad=0, flip=False)
    )
    assert torch.equal(next(iter(off))[0], plain)


def test_channels_last(device: torch.device) -> None:
    dataset = _dataset(n=6)
    mean = pixel_mean(dataset)
    kwargs = {"batch_size": 6, "device": device, "mean": mean, "augment": Augment(), "seed": 3}
    a = next(iter(DeviceLoader(dataset, channels_last=True, **kwargs)))[0]  # type: ignore[arg-type]
    b = next(iter(DeviceLoader(dataset, **kwargs)))[0]  # type: ignore[arg-type]
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------
# Order, seeds, shards, resume
# --------------------------------------------------------------------------------------


def _loader(dataset: ImageDataset, **kwargs: object) -> DeviceLoader:
    options: dict[str, object] = {
        "batch_size": 4,
        "device": "cpu",
        "mean": pixel_mean(dataset),
        "augment": Augment(pad=1),
        "shuffle": True,
        "seed": 7,
    }
    options.update(kwargs)
    return DeviceLoader(dataset, **options)  # type: ignore[arg-type]


def test_seed_and_epoch_fix_the_batches() -> None:
    dataset = _dataset(n=20)
    a, b = _loader(dataset), _loader(dataset)
    a.set_epoch(3)
    b.set_epoch(3)
    first, second = _epoch(a), _epoch(b)
    for p, q in zip(first, second, strict=True):
        assert torch.equal(p[0], q[0])
        assert torch.equal(p[1], q[1])
    assert _epoch(a)[0][0].equal(first[0][0])  # iterating again repeats the epoch
    order = _labels(a)
    assert sorted(order) == list(range(20))
    a.set_epoch(4)
    assert _labels(a) != order
    assert _labels(_loader(dataset, seed=8, augment=None)) != _labels(
        _loader(dataset, augment=None)
    )
    assert _labels(_loader(dataset, shuffle=False)) == list(range(20))


@pytest.mark.parametrize(("n", "drop_last"), [(12, False), (10, False), (10, True)])
def test_shards_partition_the_epoch(n: int, drop_last: bool) -> None:
    dataset = _dataset(n=n)
    shards = []
    for rank in range(3):
        loader = _loader(dataset, rank=rank, world_size=3, drop_last=drop_last, batch_size=2)
        loader.set_epoch(5)
        shards.append(_labels(loader))
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1  # equal shares
    together = [i for s in shards for i in s]
    if n % 3 == 0:
        assert sorted(together) == list(range(n))  # a partition
    elif drop_last:
        assert len(set(together)) == len(together)  # disjoint
    else:
        assert set(together) == set(range(n))  # wrapped around: every sample, equal shares
        assert len(together) == 3 * -(-n // 3)
    # every rank shares one order: the ranks' shards interleave into the epoch's order
    single = _loader(dataset, batch_size=2, drop_last=False)
    single.set_epoch(5)
    order = single.indices().tolist()
    assert shards[0][0] == order[0]
    assert shards[1][0] == order[1]
    assert shards[2][0] == order[2]


def test_drop_last_and_len() -> None:
    dataset = _dataset(n=10)
    assert len(_loader(dataset, batch_size=4)) == 3
    assert len(_loader(dataset, batch_size=4, drop_last=True)) == 2
    assert [len(y) for _, y in _loader(dataset, batch_size=4, drop_last=True)] == [4, 4]


def test_state_dict_replays_the_rest_of_an_epoch(device: torch.device) -> None:
    dataset = _dataset(n=22)
    whole = _loader(dataset, device=device, batch_size=3)
    whole.set_epoch(2)
    expected = _epoch(whole)
    interrupted = _loader(dataset, device=device, batch_size=3)
    interrupted.set_epoch(2)
    for i, _ in enumerate(interrupted):
        if i == 2:
            break
    state = json.loads(json.dumps(interrupted.state_dict()))
    assert state["epoch"] == 2
    assert state["position"] == 3
    resumed = _loader(dataset, device=device, batch_size=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the loop's usual call keeps the position of the same epoch
    rest = _epoch(resumed)
    assert len(rest) == len(expected) - 3
    for (x, y), (ex, ey) in zip(rest, expected[3:], strict=True):
        assert torch.equal(x, ex)
        assert torch.equal(y, ey)
    assert len(_epoch(resumed)) == len(expected)  # the next pass is a whole epoch again
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # another epoch starts at its beginning
    assert len(_epoch(resumed)) == len(expected)
    with pytest.raises(ValueError, match="seed: the run's 7, now 8"):
        _loader(dataset, seed=8).load_state_dict(state)


def test_rank_zero_state_resumes_every_rank() -> None:
    dataset = _dataset(n=24)
    ranks = [_loader(dataset, rank=r, world_size=2, batch_size=2) for r in range(2)]
    for loader in ranks:
        loader.set_epoch(1)
    expected = [_epoch(loader) for loader in ranks]
    for loader in ranks:
        for i, _ in enumerate(loader):
            if i == 1:
                break
    state = ranks[0].state_dict()  # only rank 0 writes
    resumed = _loader(dataset, rank=1, world_size=2, batch_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    rest = _epoch(resumed)
    assert len(rest) == len(expected[1]) - 2
    for (x, y), (ex, ey) in zip(rest, expected[1][2:], strict=True):
        assert torch.equal(x, ex)
        assert torch.equal(y, ey)


def test_loader_validates() -> None:
    dataset = _dataset(n=4)
    with pytest.raises(ValueError, match=r"mean must hold one value per channel \(3\)"):
        _loader(dataset, mean=torch.zeros(4))
    with pytest.raises(ValueError, match="std must be positive"):
        _loader(dataset, mean=torch.zeros(3), std=(1.0, 0.0, 1.0))


def test_loader_normalizes_per_channel() -> None:
    """What a model's pretrained_cfg says: (x / 255 - mean) / std, channel by channel."""
    dataset = _dataset(n=4)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    x, _ = next(iter(DeviceLoader(dataset, batch_size=4, device="cpu", mean=mean, std=std)))
    expected = (dataset.images.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
        std
    ).view(3, 1, 1)
    torch.testing.assert_close(x, expected)


def test_channel_stats() -> None:
    dataset = _dataset(n=6)
    mean, std = channel_stats(dataset)
    pixels = dataset.images.double().div(255).transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), pixels.mean(1))
    torch.testing.assert_close(
        torch.tensor(std, dtype=torch.float64), pixels.std(1, unbiased=False)
    )
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\)"):
        _loader(dataset, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        _loader(dataset, batch_size=0)
    with pytest.raises(ValueError, match="augment must be an Augment"):
        _loader(dataset, augment={"pad": 4})
