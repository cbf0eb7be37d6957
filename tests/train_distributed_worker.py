"""The per-process side of tests/test_train_distributed.py: fit() under a gloo process group.

Each rank starts from its own random weights (DDP broadcasts rank 0's), trains a tiny CIFAR
ResNet on its shard of random images, and rank 0 saves what the test checks. Every process
tears its group down and leaves with ``os._exit`` once its results are flushed, so no gloo
teardown in the interpreter's exit can abort it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from resnetlib.train import DIGITS, Augment, DataSplits, ImageDataset, fit

from .helpers import tiny_cifar

ITERATIONS = 6


def _gathered(vector: torch.Tensor) -> list[torch.Tensor]:
    copies = [torch.empty_like(vector) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, vector)
    return copies


def _flat(model: torch.nn.Module) -> torch.Tensor:
    state = model.state_dict().values()
    return torch.cat([t.detach().reshape(-1).double() for t in state])


def _data() -> DataSplits:
    """Random 8x8 images, the same on every rank (no scikit-learn import in each process)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (600, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 4, (600,), generator=generator)
    whole = ImageDataset(images, labels, ("a", "b", "c", "d"), "random")
    return DataSplits(train=whole, test=whole.subset(torch.arange(100)))


def worker(rank: int, world_size: int, init_method: str, out: str) -> None:
    torch.set_num_threads(1)
    code = 0
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        data = _data()
        model = tiny_cifar(rank, num_classes=4)
        initial = _flat(model)
        recipe = dataclasses.replace(
            DIGITS, batch_size=100, augment=Augment(pad=1, flip=True), warmup_lr=0.05,
            warmup_error=0.99,
        )  # fmt: skip
        run_dir = Path(out) / "run"
        result = fit(
            model, data, recipe, out=run_dir, device="cpu", iterations=ITERATIONS,
            progress=False,
        )  # fmt: skip
        metrics = torch.tensor([result.metrics["train_loss"], result.metrics["train_error"]])
        results = {
            "initial": _gathered(initial),
            "final": _gathered(_flat(model)),
            "metrics": _gathered(metrics.double()),
            "wrote": _gathered(torch.tensor([float(result.run_dir is not None)])),
            "iteration": result.metrics["iteration"],
        }
        if rank == 0:
            torch.save(results, Path(out) / "results.pt")
        dist.barrier()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
