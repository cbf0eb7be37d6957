"""CPU training step by precision and layout: each a same-run ratio against fp32 eager.

The step is what ``resnetlib.train.fit`` runs each iteration on a CPU: forward,
cross-entropy, backward, SGD (momentum 0.9, weight decay 1e-4). Contenders, each its own
copy of one ResNet-20 from the same weights: ``fp32`` (eager, contiguous: the reference),
``channels_last`` (model and batches, ``Recipe.channels_last``), ``bf16`` (CPU autocast to
bfloat16, ``--bf16``), ``bf16+channels_last`` and ``compile`` (``torch.compile`` of the
model, fp32). After a warm-up (compilation included, reported apart) each round runs
``--steps`` steps of every contender in turn on the same batch, so drift in the machine's
speed hits them alike. Reported: median ms per step and the median (min, max) per-round
ratio fp32 / contender (above 1: faster than fp32), and whether the CPU has native bf16
(AVX512-BF16 or AMX). It asserts nothing.

Run from the repository root: ``PYTHONPATH=src python benchmarks/cpu_precision.py``
(about two minutes on 2 cores, mostly the compile); ``--quick`` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F

import resnetlib
from resnetlib.train.loop import native_bf16

Step = Callable[[], None]


def make_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    channels_last: bool,
    bf16: bool,
) -> Step:
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload, unused-ignore]
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def autocast() -> AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        with autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2, help="steps per contender per round")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny batch, seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.rounds, args.steps, args.no_compile = 8, 2, 1, True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = resnetlib.create_model(args.model)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    contenders: dict[str, Step] = {}
    for name, channels_last, bf16 in (
        ("fp32", False, False),
        ("channels_last", True, False),
        ("bf16", False, True),
        ("bf16+channels_last", True, True),
    ):
        contenders[name] = make_step(
            copy.deepcopy(base), x, y, channels_last=channels_last, bf16=bf16
        )
    warmup: dict[str, float] = {}
    if not args.no_compile:
        compiled = torch.compile(copy.deepcopy(base))
        contenders["compile"] = make_step(compiled, x, y, channels_last=False, bf16=False)  # type: ignore[arg-type]
    for name, step in contenders.items():
        start = time.perf_counter()
        step()
        step()
        warmup[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, step in contenders.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}; "
        f"{args.model} batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'contender':<20} {'ms/step':>8} {'fp32/it':>8} {'min':>6} {'max':>6} {'warm-up s':>9}")
    for name, values in times.items():
        ratios = [f / v for f, v in zip(times["fp32"], values, strict=True)]
        print(
            f"{name:<20} {1000 * statistics.median(values):8.1f} "
            f"{statistics.median(ratios):8.2f} {min(ratios):6.2f} {max(ratios):6.2f} "
            f"{warmup[name]:9.1f}"
        )


if __name__ == "__main__":
    main()
