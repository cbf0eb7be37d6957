"""fit() under DDP: two CPU processes with gloo keep identical replicas; only rank 0 writes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import train_distributed_worker

WORLD_SIZE = 2

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("train_ddp")
    mp.spawn(
        train_distributed_worker.worker,
        args=(WORLD_SIZE, f"tcp://127.0.0.1:{_free_port()}", str(out)),
        nprocs=WORLD_SIZE,
        join=True,
    )
    loaded: dict[str, Any] = torch.load(out / "results.pt", weights_only=False)
    return loaded, out / "run"


def test_replicas_stay_identical_and_learn(results: tuple[dict[str, Any], Path]) -> None:
    found, _ = results
    initial, final = found["initial"], found["final"]
    assert not torch.equal(initial[0], initial[1])  # each rank built its own weights
    assert torch.equal(final[0], final[1])  # DDP broadcast rank 0's and kept them equal
    assert not torch.equal(final[0], initial[0])
    assert found["iteration"] == train_distributed_worker.ITERATIONS


def test_metrics_are_reduced_and_only_rank_0_writes(
    results: tuple[dict[str, Any], Path],
) -> None:
    found, run_dir = results
    first, second = found["metrics"]
    assert torch.equal(first, second)  # both ranks report the all-reduced epoch metrics
    assert found["wrote"][0].item() == 1.0
    assert found["wrote"][1].item() == 0.0
    assert (run_dir / "final.pt").is_file()
    assert sorted(p.name for p in run_dir.glob("*.partial")) == []
