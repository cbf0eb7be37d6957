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

``--what`` picks the measurements (comma-separated):

- ``configs``: the table above (ResNet-56; channels_last, bf16, compile);
- ``speed``: seconds per 1,000 iterations of ResNet-20, 56 and 110 at batch 128, each
  ``eager``, ``compiled`` (``torch.compile`` of the model) and ``graphed`` (the whole step
  replayed as a CUDA graph, ``Recipe.cuda_graphs``), with the graphed speed-up;
- ``table6``: the wall time of ``resnetlib.train.reproduce.table6`` (ResNet-20 to 110, one
  seed, the paper's recipe) on a synthetic CIFAR-10 written in the published format,
  ``--table6-iterations`` each (default 2,000; 64,000 is the paper's), and that time
  scaled to 64k iterations.

Run on the GPU from the repository root: ``PYTHONPATH=src python3 benchmarks/gpu_train.py
--what speed,table6`` (``configs``: about 2 minutes on an H200, compilation included);
``--quick`` is a seconds-long CPU smoke run (a tiny net, no compile, graphed falls back).
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import torch

import resnetlib
from resnetlib.train import PAPER_CIFAR, DataSplits, DeviceLoader, ImageDataset, fit
from resnetlib.train.pipeline import Augment, pixel_mean
from resnetlib.train.reproduce import TABLE6_MODELS, table6

SPEED_MODES: dict[str, dict[str, object]] = {  # compile last: it may run out of --budget
    "eager": {},
    "graphed": {"cuda_graphs": True},
    "compiled": {"compile": True},
}
SPEED_DEPTHS = (20, 56, 110)

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
    parser.add_argument("--what", default="configs", help="configs,speed,table6")
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per config")
    parser.add_argument(
        "--budget", type=float, default=140.0, help="seconds; later configs are skipped"
    )
    parser.add_argument("--table6-iterations", type=int, default=2_000, metavar="N")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run, seconds")
    args = parser.parse_args(argv)
    what = {item.strip() for item in args.what.split(",") if item.strip()}
    unknown = what - {"configs", "speed", "table6"}
    if unknown:
        parser.error(f"--what: unknown {sorted(unknown)}; choose from configs, speed, table6")
    started = time.perf_counter()
    if "configs" in what:
        configs_table(args, started)
    if "speed" in what:
        speed_table(args, started)
    if "table6" in what:
        table6_time(args)


def _header(args: argparse.Namespace, device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return f"{gpu}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"


def speed_table(args: argparse.Namespace, started: float) -> None:
    """Seconds per 1,000 iterations: ResNet-20/56/110 x eager, compiled, graphed."""
    device = torch.device("cpu" if args.quick else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    images, size, epochs = (64, 16, 1) if args.quick else (args.images, 32, args.epochs)
    data = synthetic(images, size)
    batch = 16 if args.quick else 128
    recipe = dataclasses.replace(PAPER_CIFAR, val_size=0, batch_size=batch)
    depths = (8,) if args.quick else SPEED_DEPTHS
    modes = {k: v for k, v in SPEED_MODES.items() if not (args.quick and v.get("compile"))}
    print(
        f"# speed: paper recipe via fit(), batch {batch}, {images // batch} iterations an "
        f"epoch, {epochs} measured after 1 warm-up; {_header(args, device)}"
    )
    print(f"{'model':<12} " + " ".join(f"{mode:>10}" for mode in modes) + "   graphed/eager")
    for depth in depths:
        cells: dict[str, float] = {}
        for mode, options in modes.items():
            if time.perf_counter() - started > args.budget:
                break
            torch.manual_seed(0)
            small = {"widths": (4, 8, 16)} if args.quick else {}
            model = resnetlib.cifar_resnet(depth, **small)
            lines: list[str] = []
            result = fit(
                model,
                data,
                dataclasses.replace(recipe, **options),
                device=device,
                epochs=1 + epochs,
                progress=False,
                log=lines.append,
            )
            notes = [line for line in lines if line.startswith("cuda graphs")]
            rate = statistics.median(row["images_per_s"] for row in result.history[-epochs:])
            cells[mode] = 1000 * batch / rate
            if notes:
                print(f"# {mode}, ResNet-{depth}: {notes[0]}")
        row = " ".join(
            f"{cells[mode]:>10.2f}" if mode in cells else f"{'skipped':>10}" for mode in modes
        )
        gain = cells["eager"] / cells["graphed"] if {"eager", "graphed"} <= set(cells) else None
        print(f"ResNet-{depth:<5} {row}   {'' if gain is None else f'{gain:.2f}x'}")
    print(f"# s / 1k iterations; total {time.perf_counter() - started:.0f} s")


def write_cifar10(root: Path, images: int, seed: int = 0) -> Path:
    """A synthetic CIFAR-10 in the published layout (five training batches, a test batch)."""
    generator = torch.Generator().manual_seed(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"class{i}" for i in range(10)]
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": names, "num_cases_per_batch": images // 5}, file)

    def batch(path: Path, n: int) -> None:
        data = torch.randint(0, 256, (n, 3 * 32 * 32), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=generator).tolist()
        with open(path, "wb") as file:
            pickle.dump({"data": data.numpy(), "labels": labels}, file)

    for i in range(1, 6):
        batch(folder / f"data_batch_{i}", images // 5)
    batch(folder / "test_batch", max(images // 5, 100))
    return folder


def table6_time(args: argparse.Namespace) -> None:
    """Wall time of the Table 6 set (one seed) at --table6-iterations each."""
    device = torch.device("cpu" if args.quick else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    iterations = 4 if args.quick else args.table6_iterations
    images = 500 if args.quick else 50_000
    models = ("resnet20", "resnet32") if args.quick else TABLE6_MODELS
    with tempfile.TemporaryDirectory() as temporary:
        data = write_cifar10(Path(temporary), images)
        print(f"# table6: {', '.join(models)}, one seed, {iterations:,} iterations each, "
              f"synthetic CIFAR-10; {_header(args, device)}")  # fmt: skip
        for graphs in (False, True):
            start = time.perf_counter()
            report = table6(
                data,
                Path(temporary) / f"out-{graphs}",
                models=models,
                iterations=iterations,
                batch_size=16 if args.quick else None,
                val_size=0 if args.quick else None,
                device=device,
                cuda_graphs=graphs,
                progress=False,
            )
            wall = time.perf_counter() - start
            per_model = ", ".join(f"{run.model} {run.seconds:.0f} s" for run in report.runs)
            scaled = wall * 64_000 / iterations
            print(
                f"cuda_graphs={graphs}: {wall:.0f} s wall ({per_model}); at 64k iterations "
                f"about {scaled / 60:.0f} min"
            )


def configs_table(args: argparse.Namespace, started: float) -> None:
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
