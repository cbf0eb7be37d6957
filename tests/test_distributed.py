"""Scale-out on torch.distributed: two CPU processes, gloo backend.

One spawn runs every phase (tests/distributed_worker.py) and the tests check its results:
DDP keeps replicas bit-identical, SyncBatchNorm conversion, FSDP2 per stage then root.
The example script runs under torchrun.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import distributed_worker

ROOT = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("distributed") / "results.pt"
    init_method = f"tcp://127.0.0.1:{free_port()}"
    mp.spawn(
        distributed_worker.worker,
        args=(WORLD_SIZE, init_method, str(out)),
        nprocs=WORLD_SIZE,
        join=True,
    )
    loaded: dict[str, Any] = torch.load(out, weights_only=False)
    return loaded


def test_ddp_replicas_stay_identical_and_learn(results: dict[str, Any]) -> None:
    ddp = results["ddp"]
    initial, final = ddp["initial"], ddp["final"]
    # Each rank started from its own seed; DDP broadcast rank 0's weights.
    assert torch.equal(initial[0], initial[1])
    assert torch.equal(final[0], final[1])
    assert not torch.equal(final[0], initial[0])


def test_ddp_with_drop_path_needs_no_unused_parameter_search(results: dict[str, Any]) -> None:
    # Three steps with find_unused_parameters=False would have raised had any parameter
    # missed a gradient in a step; the replicas stay equal although their masks differ.
    first, second = results["ddp_drop_path"]["final"]
    assert torch.equal(first, second)


def test_sync_batchnorm_conversion(results: dict[str, Any]) -> None:
    sync = results["sync_bn"]
    assert sync["plain_norms"] > 0
    assert sync["sync_norms"] == sync["plain_norms"]
    assert sync["eval_matches"]
    assert sync["held_forward_ok"]
    if sync["train_final"] is not None:  # a torch whose SyncBatchNorm trains on the CPU
        first, second = sync["train_final"]
        assert torch.equal(first, second)
    else:  # torch 2.13: training-mode SyncBatchNorm needs GPU tensors, and DDP says so
        assert "SyncBatchNorm expected input tensor to be on GPU" in sync["forward_error"]
        assert "SyncBatchNorm layers only work with GPU modules" in sync["ddp_error"]


def test_fsdp2_per_stage_then_root_trains_like_ddp(results: dict[str, Any]) -> None:
    missing = distributed_worker.fsdp2_missing()
    if missing:
        pytest.skip(missing)
    fsdp = results["fsdp2"]
    assert fsdp["class"].startswith("FSDP")
    for name, size in fsdp["full_sizes"].items():
        shards = [sizes[name] for sizes in fsdp["local_sizes"]]
        assert sum(shards) == size, name
        assert max(shards) < size or size == 1, name
    first, second = fsdp["final"]
    assert torch.equal(first, second)
    # Same start, data and optimizer as the DDP phase: the same weights, up to rounding.
    torch.testing.assert_close(first, results["ddp"]["final"][0], rtol=1e-5, atol=1e-6)
    assert not torch.equal(first, results["ddp"]["initial"][0])
    # rl.save refuses the sharded model, naming how to gather its weights; that way saves
    assert "sharded (fully_shard)" in fsdp["save_error"]
    assert "get_model_state_dict" in fsdp["save_error"]
    assert fsdp["saved_equal"] is True


def test_train_ddp_example_under_torchrun(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={WORLD_SIZE}",
            str(ROOT / "examples" / "train_ddp.py"),
            "--steps",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert sum(line.startswith("step ") for line in lines) == 2, result.stdout
    assert "world size 2, backend gloo" in result.stdout
    assert "replicas identical: True" in result.stdout


def test_an_older_torch_without_fsdp2_gets_a_skip_naming_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert distributed_worker.fsdp2_missing() is None  # this torch has it
    monkeypatch.setitem(sys.modules, "torch.distributed.fsdp", types.ModuleType("fsdp"))
    missing = distributed_worker.fsdp2_missing()
    assert missing is not None
    assert missing.startswith("FSDP2 (torch.distributed.fsdp.fully_shard) needs torch >= 2.6")
