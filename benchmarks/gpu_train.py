"""ResNet-56 with the paper's recipe through ``resnetlib.train.fit``: wall-clock per 1k
iterations with and without channels_last, bf16 autocast and ``torch.compile``.

Data: random uint8 images of CIFAR's shape (``--images``, default 12,800: 100 iterations an
epoch at batch 128) with a 1,000-image test split; the speed does not depend on content.
Each configuration trains a fresh ResNet-56 by :data:`PAPER_CIFAR` (SGD 0.9, wd 1e-4,
batch 128, lr 0.1, pad-4 crop + flip on the device) for ``1 + --epochs`` epochs;
``fit`` records each epoch's training images/s (the loop alone, evaluation excluded), and
the first epoch (compilation, cuDNN autotuning) is left out: the table gives the median of
the others as seconds per 1,000 iterations, and the loader's share of an eager step
(DeviceLoader time per batch / training step time). A configuration expected to end past
``--budget`` seconds (a compile costs what the previous one did, first guessed at 60 s) is
skipped and says so. It asserts nothing.

Run on the GPU from the repository root: ``PYTHONPATH=src python3 benchmarks/gpu_train.py``
(about 2 minutes on an H200, compilation included); ``--quick`` is a seconds-long CPU
smoke run (a tiny net, no compile).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

import resnetlib
from resnetlib.train import PAPER_CIFAR, DataSplits, DeviceLoader, ImageDataset, fit
from resnetlib.train.pipeline import Augment, pixel_mean

CONFIGS: dict[str, dict[str, object]] = {
    "eager fp32": {},
    "channels_last": {"channels_last": True},
    "bf16 autocast": {"autocast": "bf16"},
    "bf16 + channels_last + compile": {"autocast": "bf16", "channels_last": True, "compile": True},
    "compile": {"compile": True},
}


def synthetic(images: int, size: int) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images + 1_000, 3, size, size), generator=generator)
    labels = torch.randint(0, 10, (images + 1_000,), generator=generator)
    whole = ImageDataset(pixels.to(torch.uint8), labels, tuple(map(str, range(10))), "random")
    return DataSplits(
        train=whole.subset(torch.arange(images)),
        test=whole.subset(torch.arange(images, images + 1_000)),
    )


def loader_ms(data: DataSplits, device: torch.device, batch_size: int, batches: int) -> float:
    """DeviceLoader milliseconds per augmented training batch."""
    loader = DeviceLoader(
        data.train,
        batch_size=batch_size,
        device=device,
        mean=pixel_mean(data.train),
        augment=Augment(),
        shuffle=True,
        drop_last=True,
    )
    drawn, epoch = 0, 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    while drawn < batches:
        loader.set_epoch(epoch)
        for _ in loader:
            drawn += 1
            if drawn == batches:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1000 * (time.perf_counter() - start) / batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per config")
    parser.add_argument(
        "--budget", type=float, default=140.0, help="seconds; later configs are skipped"
    )
    parser.add_argument("--quick", action="store_true", help="CPU smoke run, seconds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    size, depth, configs = 32, 56, dict(CONFIGS)
    if args.quick:
        args.device, args.images, args.epochs, size, depth = "cpu", 128, 1, 16, 8
        configs = {k: v for k, v in configs.items() if "compile" not in v}
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = synthetic(args.images, size)
    recipe = dataclasses.replace(PAPER_CIFAR, val_size=0, batch_size=32 if args.quick else 128)
    per_epoch = args.images // recipe.batch_size
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"# ResNet-{depth}, paper recipe via fit(), batch {recipe.batch_size}, "
        f"{per_epoch} iterations an epoch, {args.epochs} measured epochs after 1 warm-up; "
        f"{gpu}, torch {torch.__version__}"
    )
    print(f"{'configuration':<32} {'s / 1k it':>10} {'images/s':>10} {'vs eager':>9}")
    eager = None
    step_ms = None
    compile_s = 60.0  # a guess until one compile is measured
    for name, options in configs.items():
        spent = time.perf_counter() - started
        expected = compile_s if options.get("compile") else 0.0
        if spent + expected > args.budget:
            print(
                f"{name:<32} skipped: {spent:.0f} s spent, about {expected:.0f} s more "
                f"needed, --budget {args.budget:.0f} s"
            )
            continue
        config_start = time.perf_counter()
        torch.manual_seed(0)
        if args.quick:
            model = resnetlib.cifar_resnet(depth, widths=(4, 8, 16))
        else:
            model = resnetlib.resnet56(num_classes=10)
        result = fit(
            model,
            data,
            dataclasses.replace(recipe, **options),
            device=device,
            epochs=1 + args.epochs,
            progress=False,
        )
        rate = statistics.median(row["images_per_s"] for row in result.history[1:])
        seconds = 1000 * recipe.batch_size / rate
        eager = eager or seconds
        step_ms = step_ms or seconds  # ms per iteration = s per 1k iterations
        print(f"{name:<32} {seconds:>10.2f} {rate:>10.0f} {eager / seconds:>8.2f}x")
        if options.get("compile"):  # the next compile costs about as much again
            compile_s = time.perf_counter() - config_start
    if step_ms is not None:
        share = loader_ms(data, device, recipe.batch_size, 50 if args.quick else 200)
        print(
            f"# DeviceLoader: {share:.3f} ms per batch = {100 * share / step_ms:.1f}% of an "
            f"eager fp32 step ({step_ms:.2f} ms); total {time.perf_counter() - started:.0f} s"
        )


if __name__ == "__main__":
    main()
