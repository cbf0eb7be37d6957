"""Test error of bf16-autocast training against fp32 on the CPU, same seeds, same data.

Two data sets a CPU machine has: scikit-learn's digits (``--data digits``, 16x16), and the
same digits written as a CIFAR-10 python batch set (32x32, the published pickle format,
loaded by ``load_data`` as CIFAR-10 is), so the CIFAR code path runs on real images. For
each data set and seed, ResNet-20 trains ``--iterations`` iterations in fp32 and with
``Recipe.autocast="bf16"`` (``resnetlib train --bf16``), and the final test errors are
reported per seed and as mean ± std, with the wall time of each. It asserts nothing.

Run from the repository root: ``PYTHONPATH=src python benchmarks/bf16_accuracy.py``
(about five minutes on 2 cores with the defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import resnetlib as rl
from resnetlib.train import DIGITS, fit
from resnetlib.train.data import load_data


def write_cifar_digits(root: Path) -> Path:
    """scikit-learn's digits as a cifar-10-batches-py folder: 32x32 RGB, five training
    batches and a test batch of the fixed digits split, in the published pickle format."""
    digits = load_data("digits", image_size=32)
    root.mkdir(parents=True, exist_ok=True)
    names = [str(c) for c in digits.classes]
    with open(root / "batches.meta", "wb") as file:
        pickle.dump({b"label_names": [n.encode() for n in names]}, file, protocol=2)

    def batch(images: torch.Tensor, labels: torch.Tensor, path: Path) -> None:
        data = images.reshape(len(images), -1).numpy().astype(np.uint8)
        record = {b"data": data, b"labels": [int(v) for v in labels]}
        with open(path, "wb") as file:
            pickle.dump(record, file, protocol=2)

    train = digits.train
    parts = torch.arange(len(train.images)).chunk(5)
    for number, part in enumerate(parts, start=1):
        batch(train.images[part], train.labels[part], root / f"data_batch_{number}")
    batch(digits.test.images, digits.test.labels, root / "test_batch")
    return root


def test_error(data: str, seed: int, iterations: int, bf16: bool, out: Path) -> tuple[float, float]:
    """(final test error, seconds) of one ResNet-20 run."""
    splits = load_data(data, val_size=0, seed=seed)
    torch.manual_seed(seed)
    model = rl.resnet20(num_classes=len(splits.classes))
    recipe = dataclasses.replace(DIGITS, autocast="bf16" if bf16 else None)
    start = time.perf_counter()
    result = fit(
        model,
        splits,
        recipe,
        out=out,
        progress=False,
        seed=seed,
        device="cpu",
        iterations=iterations,
    )
    return float(result.metrics["test_error"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        cifar = str(write_cifar_digits(Path(work) / "cifar-10-batches-py"))
        print(f"ResNet-20, {args.iterations} iterations, DIGITS recipe, {args.threads} threads")
        print("| data | precision | test error per seed | mean ± std | seconds per run |")
        print("|---|---|---|---|---|")
        for name, data in (("digits 16x16", "digits"), ("digits as CIFAR-10 files, 32x32", cifar)):
            for bf16 in (False, True):
                errors, seconds = [], []
                for seed in range(args.seeds):
                    out = Path(work) / f"{data.replace('/', '_')}-{bf16}-{seed}"
                    error, took = test_error(data, seed, args.iterations, bf16, out)
                    errors.append(100 * error)
                    seconds.append(took)
                spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
                print(
                    f"| {name} | {'bf16 autocast' if bf16 else 'fp32'} | "
                    f"{', '.join(f'{e:.2f}%' for e in errors)} | "
                    f"{statistics.mean(errors):.2f} ± {spread:.2f}% | "
                    f"{statistics.median(seconds):.0f} |"
                )


if __name__ == "__main__":
    main()
