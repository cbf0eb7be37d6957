"""The per-process side of tests/test_distributed.py (kept small: each process imports it).

Each rank runs three phases on a tiny CIFAR ResNet with the gloo backend on the CPU and
rank 0 saves what the test checks: DDP, SyncBatchNorm, FSDP2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import resnetlib as rl

from .helpers import tiny_cifar

STEPS = 2
LR = 0.1


def tiny_model(seed: int) -> rl.ResNet:
    return tiny_cifar(seed, num_classes=3)


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * rank + step)
    x = torch.randn(4, 3, 12, 12, generator=generator)
    y = torch.randint(0, 3, (4,), generator=generator)
    return x, y


def train(model: nn.Module, rank: int, steps: int = STEPS) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()
    for step in range(steps):
        x, y = batch(rank, step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def gathered(vector: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of ``vector``."""
    copies = [torch.empty_like(vector) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, vector)
    return copies


def run_ddp(rank: int) -> dict[str, Any]:
    # Different seeds per rank: DDP must broadcast rank 0's weights at construction.
    model = tiny_model(seed=rank)
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    initial = flat(list(model.parameters())).clone()
    train(ddp, rank)
    final = flat(list(model.parameters()))
    return {
        "initial": gathered(initial),
        "final": gathered(final),
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def run_ddp_drop_path(rank: int) -> dict[str, Any]:
    """Stochastic depth under DDP with find_unused_parameters=False: every parameter must
    take part in every step, whichever samples each rank drops."""
    torch.manual_seed(rank)  # each rank its own weights (DDP broadcasts) and drop masks
    model = rl.preact_cifar_resnet(11, widths=(4, 8, 16), num_classes=3, drop_path_rate=0.9)
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    train(ddp, rank, steps=3)
    return {"final": gathered(flat(list(model.parameters())))}


def run_sync_bn(rank: int) -> dict[str, Any]:
    model = tiny_model(seed=0)
    plain_count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x, _ = batch(rank, 0)
    reference = model.eval()(x)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(synced, rl.ResNet)
    result: dict[str, Any] = {
        "plain_norms": plain_count,
        "sync_norms": sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()),
        "eval_matches": torch.equal(synced.eval()(x), reference),
        "forward_error": None,
        "ddp_error": None,
        "train_final": None,
    }
    try:  # a training-mode forward on CPU tensors, process group up
        synced.train()(x)
    except ValueError as error:
        result["forward_error"] = str(error)
    # Norms held in eval never synchronize, so that forward runs anywhere.
    synced.norm_eval = True
    result["held_forward_ok"] = synced.train()(x).shape == (4, 3)
    synced.norm_eval = False
    try:
        ddp = DistributedDataParallel(synced)
    except ValueError as error:
        result["ddp_error"] = str(error)
    else:  # a torch whose SyncBatchNorm trains on the CPU
        train(ddp, rank, steps=1)
        result["train_final"] = gathered(flat(list(synced.parameters())))
    return result


FSDP2_TORCH = "2.6"
"""The first torch whose ``torch.distributed.fsdp`` has FSDP2's ``fully_shard``."""


def fsdp2_missing() -> str | None:
    """Why this torch cannot run the FSDP2 phase, or ``None`` when it can."""
    try:
        from torch.distributed.device_mesh import init_device_mesh  # noqa: F401
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError as error:
        return (
            f"FSDP2 (torch.distributed.fsdp.fully_shard) needs torch >= {FSDP2_TORCH}; "
            f"this is torch {torch.__version__} ({error})"
        )
    return None


def run_fsdp2(rank: int, world_size: int, folder: Path) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    # The same start as the DDP phase (rank 0's seed) and the same data.
    model = tiny_model(seed=0)
    full_sizes = {name: p.numel() for name, p in model.named_parameters()}
    mesh = init_device_mesh("cpu", (world_size,))
    for name in model.stage_names:
        fully_shard(model.get_submodule(name), mesh=mesh)
    fully_shard(model, mesh=mesh)
    local_sizes = {}
    for name, parameter in model.named_parameters():
        assert isinstance(parameter, DTensor), name
        local_sizes[name] = parameter.to_local().numel()
    train(model, rank)
    full = {name: p.full_tensor() for name, p in model.named_parameters()}  # type: ignore[attr-defined]
    try:  # a sharded model is refused, naming the way to save it, which then works
        rl.save(model, folder / "sharded.pt")
    except TypeError as error:
        save_error = str(error)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    whole = get_model_state_dict(model, options=options)
    saved_equal = None
    if rank == 0:
        fresh = rl.build(model.spec)
        fresh.load_state_dict(whole)
        rl.save(fresh, folder / "gathered.pt")
        loaded = dict(rl.load(folder / "gathered.pt").named_parameters())
        saved_equal = all(torch.equal(loaded[name], value) for name, value in full.items())
    return {
        "save_error": save_error,
        "saved_equal": saved_equal,
        "class": type(model).__name__,
        "full_sizes": full_sizes,
        "local_sizes": gathered_sizes(local_sizes),
        "final": gathered(flat(list(full.values()))),
        "names": list(full),
    }


def gathered_sizes(sizes: dict[str, int]) -> list[dict[str, int]]:
    # all_gather_object would need numpy; gather the sizes as a tensor instead.
    copies = gathered(torch.tensor(list(sizes.values())))
    return [dict(zip(sizes, copy.tolist(), strict=True)) for copy in copies]


def worker(rank: int, world_size: int, init_method: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        results = {
            "ddp": run_ddp(rank),
            "ddp_drop_path": run_ddp_drop_path(rank),
            "sync_bn": run_sync_bn(rank),
            "fsdp2": None if fsdp2_missing() else run_fsdp2(rank, world_size, Path(out).parent),
        }
        if rank == 0:
            torch.save(results, Path(out))
        dist.barrier()  # every rank done before any tears down
    finally:
        dist.destroy_process_group()
    leave()


def leave() -> None:
    """End a worker that finished its work, without the interpreter's teardown.

    DistributedDataParallel keeps a C++ reference to the gloo backend past
    ``destroy_process_group`` (so does FSDP2's mesh), so the backend's worker and transport
    threads (``pt_gloo_runloop``, ``gloo_tcp_loop``) are still running when the process
    exits. On a busy machine C++ static destruction at exit then races those threads and
    the process dies with SIGABRT ("terminate called without an active exception") after
    all its work is done and saved. Everything is flushed here, so exit without running
    those destructors, as examples/train_ddp.py does. Only the success path comes here: an
    exception still propagates to ``mp.spawn``, which reports it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
