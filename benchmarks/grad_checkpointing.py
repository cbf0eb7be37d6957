"""Activation (gradient) checkpointing: saved activation bytes and step time, with and without.

For each net, one training step (train mode, forward, cross-entropy, backward, SGD) is
timed with ``model.set_grad_checkpointing(False)`` and with ``(True, segment=k)`` for each
setting asked for (``--segments``: ``k`` for segments of ``k`` blocks with the last stage
kept, as by default; ``k+last`` to checkpoint the last stage too; ``1+last`` is every block
alone, the behaviour before segments), interleaved round by round in one process.
Saved bytes are the distinct storages that autograd keeps for
backward, counted with ``torch.autograd.graph.saved_tensors_hooks`` (deterministic;
parameters and buffers, which exist anyway, are left out). Timings on a loaded machine
are noisy; the byte counts are not.

Run from the repository root: ``PYTHONPATH=src python benchmarks/grad_checkpointing.py``
(``--quick`` for a small smoke run, ``--device cuda`` on a GPU, ``--nets resnet1202`` for one
net, ``--segments 1+last,4,8,4+last`` to compare settings).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import resnetlib
from resnetlib.core.grad_checkpoint import DEFAULT_SEGMENT


def saved_bytes(model: resnetlib.ResNet, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves, other than parameters and buffers."""
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def step_fn(
    model: resnetlib.ResNet, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> Callable[[], float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def configure(model: resnetlib.ResNet, setting: str | None) -> None:
    """Checkpointing off (``None``) or on as ``setting`` says (``"4"``, ``"4+last"``)."""
    if setting is None:
        model.set_grad_checkpointing(False)
    else:
        segment, _, last = setting.partition("+")
        model.set_grad_checkpointing(True, segment=int(segment), last_stage=last == "last")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch's default)")
    parser.add_argument(
        "--nets", default="resnet152,resnet1202", help="comma-separated: resnet152,resnet1202"
    )
    parser.add_argument(
        "--segments",
        default=f"1+last,{DEFAULT_SEGMENT}",
        help=f"comma-separated settings: K or K+last (default 1+last,{DEFAULT_SEGMENT})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    known = {"resnet152": ("resnet152", 224, 2), "resnet1202": ("resnet1202", 32, 4)}
    cases = [known[name] for name in args.nets.split(",")]
    segments = args.segments.split(",")
    if args.quick:
        cases = [("resnet50", 64, 2), ("resnet110", 32, 2)]
        args.rounds = 1
    print(f"device: {device}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(
        "| net | input | batch | segment | saved MB off | saved MB on | ratio | step s off | "
        "step s on | time ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, size, batch in cases:
        torch.manual_seed(0)
        model = resnetlib.create_model(name).to(device).train()
        num_classes = model.spec.num_classes
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, num_classes, (batch,), device=device)
        settings: list[str | None] = [None, *segments]  # None: checkpointing off

        saved = {}
        for segment in settings:
            configure(model, segment)
            saved[segment] = saved_bytes(model, x, y)
        step = step_fn(model, x, y, device)
        times: dict[str | None, list[float]] = {segment: [] for segment in settings}
        for round_index in range(args.rounds + 1):  # the first round warms up
            for segment in settings:
                configure(model, segment)
                seconds = step()
                if round_index:
                    times[segment].append(seconds)
        off = statistics.median(times[None])
        for segment in segments:
            on = statistics.median(times[segment])
            print(
                f"| {name} | {size} | {batch} | {segment} | {saved[None] / 2**20:.1f} | "
                f"{saved[segment] / 2**20:.1f} | {saved[None] / saved[segment]:.2f}x fewer | "
                f"{off:.3f} | {on:.3f} | {on / off:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
