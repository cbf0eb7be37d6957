"""Training images/s fed by resnetlib's DeviceLoader against a conventional DataLoader.

Both feed the same model (ResNet-20 by default) the paper's training batches (pad 4, random
32x32 crop, random flip, per-pixel mean subtracted): ``DeviceLoader`` gathers, crops and
flips whole batches on the device; the conventional pipeline is a
``torch.utils.data.DataLoader`` with per-sample crop and flip (``PerSampleCifar`` of
benchmarks/data_pipeline.py, as torchvision's transforms do it), ``num_workers`` 0 and 2,
copied to the device. A training step is forward, cross-entropy, backward, SGD step.

Data: random uint8 images of CIFAR's shape. All contenders run in one process, interleaved
round by round (each round: ``--steps`` steps per contender), so that drift in the
machine's speed hits them alike. Reported: each contender's median images/s and the
per-round ratio DeviceLoader / contender (median, min, max). It asserts nothing.

Run from the repository root: ``PYTHONPATH=src python benchmarks/train_throughput.py
[--device cuda] [--quick]`` (``--quick``: a seconds-long CPU smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from data_pipeline import Batches, PerSampleCifar, conventional_batches, device_batches
from torch.utils.data import DataLoader

import resnetlib
from resnetlib.train.data import ImageDataset
from resnetlib.train.pipeline import Augment, DeviceLoader, pixel_mean


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="steps per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.quick:
        args.images, args.batch_size, args.steps, args.rounds = 256, 32, 2, 2
        args.model, args.workers = "resnet8", [0]
    args.images = args.images or (50_000 if cuda else 4_096)
    args.steps = args.steps or (50 if cuda else 5)
    args.rounds = args.rounds or 5
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), generator=generator)
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    dataset = ImageDataset(images.to(torch.uint8), labels, tuple(map(str, range(10))), "random")
    mean = pixel_mean(dataset)
    torch.manual_seed(0)
    if args.model == "resnet8":  # the quick run's tiny net (not a registered name)
        model = resnetlib.cifar_resnet(8, widths=(4, 8, 16))
    else:
        model = resnetlib.create_model(args.model, num_classes=10)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    loader = DeviceLoader(
        dataset,
        batch_size=args.batch_size,
        device=device,
        mean=mean,
        augment=Augment(),
        shuffle=True,
        drop_last=True,
    )
    feeds: dict[str, Batches] = {"DeviceLoader": device_batches(loader)}
    per_sample = PerSampleCifar(dataset, mean)
    for workers in args.workers:
        conventional = DataLoader(
            per_sample,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
        )
        feeds[f"DataLoader, {workers} workers"] = conventional_batches(conventional, device)

    def train(batches: Batches, steps: int) -> float:
        """Seconds for ``steps`` training steps fed by ``batches``."""
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            x, y = next(batches)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for batches in feeds.values():  # warm-up: workers start, kernels load
        train(batches, 2)
    rates: dict[str, list[float]] = {name: [] for name in feeds}
    for _ in range(args.rounds):
        for name, batches in feeds.items():
            rates[name].append(args.steps * args.batch_size / train(batches, args.steps))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# training throughput: {args.model}, batch {args.batch_size}, {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load average {load:.1f}"
    )
    print(f"# {args.rounds} rounds x {args.steps} steps per contender, interleaved")
    print(f"{'feed':<26} {'images/s':>10} {'DeviceLoader / it: median [min, max]':>38}")
    ours = rates["DeviceLoader"]
    for name, values in rates.items():
        ratios = [a / b for a, b in zip(ours, values, strict=True)]
        spread = (
            ""
            if name == "DeviceLoader"
            else f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
        )
        print(f"{name:<26} {statistics.median(values):>10.0f} {spread:>38}")


if __name__ == "__main__":
    main()
