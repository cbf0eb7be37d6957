"""Data-parallel training of a resnetlib model with DistributedDataParallel.

Launch one process per device (or per CPU share) with torchrun:

    torchrun --nproc_per_node=2 examples/train_ddp.py --steps 2              # CPU, gloo
    torchrun --nproc_per_node=8 examples/train_ddp.py --device cuda --sync-bn  # GPUs, nccl

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them the script runs as a single
process. The data is synthetic (random images, generated per rank), so nothing downloads.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import resnetlib as rl


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm (needs GPUs)")
    args = parser.parse_args(argv)
    # Refused here, before any process group starts: later it fails inside every process.
    if args.sync_bn and (args.device != "cuda" or not torch.cuda.is_available()):
        parser.error(
            "--sync-bn needs CUDA (--device cuda on a machine with GPUs): "
            "SyncBatchNorm trains only on GPU tensors"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given, but CUDA is not available")
    return args


def main() -> None:
    args = parse_args()
    distributed = "RANK" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    world_size = dist.get_world_size() if distributed else 1

    torch.manual_seed(0)  # DDP broadcasts rank 0's weights anyway
    model = rl.create_model(args.model, num_classes=10).to(device)
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net: nn.Module = model
    if distributed:
        net = DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(rank)  # each rank its own shard of data
    if rank == 0:
        backend = dist.get_backend() if distributed else "none"
        print(f"{args.model}: world size {world_size}, backend {backend}, device {device}")

    net.train()
    for step in range(args.steps):
        size = (args.batch_size, 3, args.image_size, args.image_size)
        images = torch.randn(size, generator=generator).to(device)
        labels = torch.randint(0, 10, (args.batch_size,), generator=generator).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        if distributed:  # the mean loss over ranks, for the log
            loss = loss.detach().clone()
            dist.all_reduce(loss)
            loss /= world_size
        if rank == 0:
            print(f"step {step + 1}/{args.steps}: loss {loss.item():.4f}")

    if distributed:
        weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        copies = [torch.empty_like(weights) for _ in range(world_size)]
        dist.all_gather(copies, weights)
        if rank == 0:
            same = all(torch.equal(copies[0], copy) for copy in copies)
            print(f"replicas identical: {same}")
        dist.barrier()  # every rank done before any tears down
        dist.destroy_process_group()
        # On a busy CPU machine gloo's transport threads can outlive the interpreter's
        # shutdown, and C++ static destruction then aborts the process after all the work is
        # done ("terminate called without an active exception"; 5 of 20 torchrun runs on a
        # loaded 2-core machine, 0 of 20 with this exit). Everything is finished and
        # flushed here, so leave without running those destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
