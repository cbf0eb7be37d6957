"""Whole-step ``torch.compile`` against eager training on this machine: a same-process ratio.

The step is what ``resnetlib.train.fit`` runs each iteration: forward, cross-entropy,
backward, SGD (momentum 0.9, weight decay 1e-4) and the running sums of loss and error.
The ``step`` contender is ``torch.compile`` of that whole function (dynamo breaks the graph
at ``backward``: the forward and its AOT backward are one compiled graph, the optimizer step
and the sums another); ``model`` compiles the model alone, as ``Recipe.compile`` does.
Three copies of one ResNet start from the same weights; after a warm-up (compilation
included, reported apart), each round runs ``--steps`` steps of each contender on the same
batches, so drift in the machine's speed hits them alike. Reported: median ms per step of
each, and the per-round ratio eager / compiled (median, min, max; above 1: compile is
faster). It asserts nothing.

Run from the repository root: ``PYTHONPATH=src python benchmarks/cpu_step.py`` (a few
minutes on a 2-core CPU, the compile included); ``--device cuda`` measures a GPU the
same way; ``--quick`` is a seconds-long smoke run (a tiny net).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import resnetlib


def make_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, sums: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        wrong = (logits.detach().argmax(1) != y).sum()
        sums.add_(torch.stack([loss.detach().double() * y.numel(), wrong.double()]))

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per contender per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a tiny net, seconds")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = 32
    if args.quick:
        args.batch_size, args.rounds, args.steps, size = 16, 2, 2, 16

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
        torch.manual_seed(0)
        if args.quick:
            model = resnetlib.cifar_resnet(8, widths=(4, 8, 16))
        else:
            model = resnetlib.create_model(args.model)
        model.to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        return model, optimizer, torch.zeros(2, dtype=torch.float64, device=device)

    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(args.batch_size, 3, size, size, generator=generator).to(device),
            torch.randint(0, 10, (args.batch_size,), generator=generator).to(device),
        )
        for _ in range(args.steps)
    ]
    eager = make_step(*build())
    compiled = torch.compile(make_step(*build()))
    model, optimizer, sums = build()
    model_only = make_step(torch.compile(model), optimizer, sums)  # type: ignore[arg-type]

    def timed(step: Callable[[torch.Tensor, torch.Tensor], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for x, y in batches:
            step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return 1000 * (time.perf_counter() - start) / len(batches)

    contenders = {"step": compiled, "model": model_only}
    compile_s = {}
    for name, step in contenders.items():
        start = time.perf_counter()
        timed(step)  # compiles
        timed(step)  # recompiles are over (the optimizer's state now exists)
        compile_s[name] = time.perf_counter() - start
    timed(eager)
    times: dict[str, list[float]] = {"eager": [], "step": [], "model": []}
    for _ in range(args.rounds):
        times["eager"].append(timed(eager))
        for name, step in contenders.items():
            times[name].append(timed(step))
    cpu = platform.processor() or platform.machine()
    print(
        f"# {args.model if not args.quick else 'tiny'} batch {args.batch_size}, {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} "
        f"CPUs ({cpu}), load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds of "
        f"{args.steps} steps each"
    )
    print(f"eager          {statistics.median(times['eager']):8.1f} ms/step")
    for name in contenders:
        ratios = [e / c for e, c in zip(times["eager"], times[name], strict=True)]
        print(
            f"compiled {name:<5} {statistics.median(times[name]):8.1f} ms/step; eager/compiled "
            f"median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max "
            f"{max(ratios):.2f}); compile (first two calls) {compile_s[name]:.1f} s"
        )


if __name__ == "__main__":
    main()
