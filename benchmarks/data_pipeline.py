"""The CIFAR data pipeline alone: resnetlib's DeviceLoader against a conventional DataLoader.

Contenders, all producing the paper's training batches (4-pixel zero padding, a random 32x32
crop, a random horizontal flip, per-pixel mean subtracted, float32 on ``--device``):

- ``DeviceLoader``: the images live on the device; each batch is gathered, cropped and
  flipped as a whole with tensor ops (``resnetlib.train.pipeline``).
- ``DataLoader``: ``torch.utils.data.DataLoader`` over a ``Dataset`` whose ``__getitem__``
  pads, crops, flips and normalizes one image with torch ops (what torchvision's
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` do,
  written without torchvision), collated on the CPU and copied to the device (pinned memory
  on CUDA), with ``num_workers`` 0 and 2.

The data are random uint8 images of CIFAR's shape (the speed does not depend on content).
All contenders run in one process, interleaved round by round, so that drift in the
machine's speed hits them alike; each round times ``--batches`` batches. The report gives
each contender's median images/s and the per-round ratio DeviceLoader / contender (median,
min, max). With ``--device cuda`` it also measures the loader's share of a ResNet-56 training
step (forward, cross-entropy, backward, SGD): DeviceLoader time per batch divided by the
time per batch of the full step fed by it. It asserts nothing about speed.

On a CPU whose cores are oversubscribed by other processes, torch's multi-threaded batch ops
wait on descheduled threads while the per-sample ops (too small to be split) do not; compare
with ``--threads 1`` there.

Run from the repository root: ``PYTHONPATH=src python benchmarks/data_pipeline.py
[--device cuda] [--quick]``. ``--quick`` is a seconds-long CPU smoke run; the default on an
H200 takes well under a minute.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import resnetlib
from resnetlib.train.data import ImageDataset
from resnetlib.train.pipeline import Augment, DeviceLoader, pixel_mean

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class PerSampleCifar(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The conventional pipeline: one image at a time, padded, cropped, flipped, normalized."""

    def __init__(self, dataset: ImageDataset, mean: torch.Tensor, pad: int = 4) -> None:
        self.images = dataset.images
        self.labels = dataset.labels
        self.mean = mean
        self.pad = pad

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        h, w = image.shape[-2:]
        padded = F.pad(image, (self.pad, self.pad, self.pad, self.pad))
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        crop = padded[:, dy : dy + h, dx : dx + w]
        if torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        return crop.float().div_(255).sub_(self.mean), self.labels[index]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forever(make: Callable[[], Batches]) -> Batches:
    """Batches without end: a new epoch starts where one ends."""
    while True:
        yield from make()


def device_batches(loader: DeviceLoader) -> Batches:
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def conventional_batches(
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> Batches:
    for x, y in forever(lambda: iter(loader)):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def time_batches(batches: Batches, count: int, device: torch.device) -> float:
    """Seconds to draw ``count`` batches (and have them ready on the device)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    synchronize(device)
    return time.perf_counter() - start


def loader_share(
    loader: DeviceLoader, args: argparse.Namespace, device: torch.device
) -> tuple[float, float]:
    """(DeviceLoader ms per batch, ResNet-56 train step ms per batch fed by it)."""
    torch.manual_seed(args.seed)
    model = resnetlib.resnet56().to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    batches = device_batches(loader)

    def steps(count: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(count):
            x, y = next(batches)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)
        return time.perf_counter() - start

    steps(args.warmup_steps)
    step_times, load_times = [], []
    for _ in range(args.rounds):
        step_times.append(steps(args.steps) / args.steps)
        load_times.append(time_batches(batches, args.steps, device) / args.steps)
    return 1000 * statistics.median(load_times), 1000 * statistics.median(step_times)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--images", type=int, default=None, help="data set size")
    parser.add_argument("--batch-size", type=int, default=None, help="128 (quick: 32)")
    parser.add_argument("--batches", type=int, default=None, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per contender")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="DataLoader")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a seconds-long CPU smoke run")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.quick:
        defaults = {"images": 512, "batch_size": 32, "batches": 3, "rounds": 3}
        args.steps, args.warmup_steps = 1, 1
    else:
        defaults = {"images": 50_000 if cuda else 10_000, "batch_size": 128}
        defaults.update(batches=20 if cuda else 8, rounds=5)
        args.steps, args.warmup_steps = (20, 10) if cuda else (4, 1)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.share = cuda or args.quick
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), generator=generator)
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    dataset = ImageDataset(images.to(torch.uint8), labels, tuple(map(str, range(10))), "random")
    mean = pixel_mean(dataset)

    loader = DeviceLoader(
        dataset,
        batch_size=args.batch_size,
        device=device,
        mean=mean,
        augment=Augment(),
        shuffle=True,
        drop_last=True,
        seed=args.seed,
    )
    contenders: dict[str, Batches] = {"DeviceLoader": device_batches(loader)}
    per_sample = PerSampleCifar(dataset, mean)
    for workers in args.workers:
        conventional = DataLoader(
            per_sample,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
        contenders[f"DataLoader, {workers} workers"] = conventional_batches(conventional, device)

    for batches in contenders.values():  # warm-up: workers start, caches fill
        time_batches(batches, max(1, args.batches // 2), device)
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, batches in contenders.items():
            seconds[name].append(time_batches(batches, args.batches, device))

    per_round = args.batches * args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ", end="")
    print(torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor())
    if hasattr(os, "getloadavg"):  # other load inflates and scatters every timing
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{args.images} random 3x32x32 images, batch {args.batch_size}, pad 4 + crop + flip; "
        f"{args.rounds} interleaved rounds of {args.batches} batches"
    )
    print()
    print("| loader | median images/s | DeviceLoader / this: median [min, max] |")
    print("|---|---:|---:|")
    ours = seconds["DeviceLoader"]
    for name, times in seconds.items():
        ratios = sorted(t / o for t, o in zip(times, ours, strict=True))
        rate = per_round / statistics.median(times)
        print(
            f"| {name} | {rate:,.0f} | {statistics.median(ratios):.2f}x "
            f"[{ratios[0]:.2f}, {ratios[-1]:.2f}] |"
        )
    if args.share:
        load_ms, step_ms = loader_share(loader, args, device)
        print()
        print(
            f"ResNet-56 train step, batch {args.batch_size}: {step_ms:.2f} ms per batch, of which "
            f"the DeviceLoader {load_ms:.3f} ms ({100 * load_ms / step_ms:.2f}%)"
        )


if __name__ == "__main__":
    main()
