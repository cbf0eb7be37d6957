"""model.set_grad_checkpointing(True): same gradients, batch-norm statistics updated once,
the same stochastic-depth masks, and fewer saved activations."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import resnetlib as rl

MODELS = {
    "basic": lambda **kw: rl.resnet20(base_channels=4, **kw),
    "bottleneck": lambda **kw: rl.resnet(layers=(2, 2), base_channels=4, block="bottleneck", **kw),
    "preact": lambda **kw: rl.preact_resnet164(base_channels=4, **kw),
}


def _step(model: rl.ResNet, x: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    out = model(x)
    out.square().mean().backward()
    return out.detach()


def _assert_same_step(plain: nn.Module, checkpointed: nn.Module) -> None:
    """Equal gradients (with drop path, only if the recomputation drew the same masks), and
    running statistics updated exactly once, by the forward, not again by the recomputation."""
    for (key, p), q in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert p.grad is not None, key
        assert q.grad is not None, key
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=key)
    buffers = dict(checkpointed.named_buffers())
    for key, value in plain.named_buffers():
        torch.testing.assert_close(buffers[key], value, msg=key)
        if key.endswith("num_batches_tracked"):
            assert int(buffers[key]) == 1, key


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("drop_path_rate", [0.0, 0.5])
def test_same_step_as_without(family: str, drop_path_rate: float, device: torch.device) -> None:
    torch.manual_seed(0)
    plain = MODELS[family](drop_path_rate=drop_path_rate).to(device).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    x = torch.randn(4, 3, 16, 16, device=device)
    expected = _step(plain, x, seed=1)
    actual = _step(checkpointed, x, seed=1)
    torch.testing.assert_close(actual, expected)
    _assert_same_step(plain, checkpointed)
    # Checkpointing is a setting of the model, not a change to it.
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward in one step (a features model's maps are summed),
    other than parameters and buffers, which exist anyway (as benchmarks/grad_checkpointing.py
    counts).
    """
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x)
        maps = out if isinstance(out, list) else [out]
        loss = sum(m.square().mean() for m in maps)
    loss.backward()
    return sum(storages.values())


def test_saves_far_fewer_activations() -> None:
    torch.manual_seed(0)
    model = rl.resnet56(base_channels=4).train()
    x = torch.randn(4, 3, 16, 16)
    plain = _saved_bytes(model, x)
    model.set_grad_checkpointing(True)
    checkpointed = _saved_bytes(model, x)
    assert checkpointed * 3 < plain
    model.set_grad_checkpointing(False)
    assert _saved_bytes(model, x) == plain


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18"])
def test_features_only_models_checkpoint_too(name: str) -> None:
    """timm's features_only models take set_grad_checkpointing: the same maps and gradients,
    norm statistics updated once, and fewer saved activations."""
    torch.manual_seed(0)
    plain = rl.create_model(name, features_only=True, base_channels=8).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 32, 32)
    expected = plain(x)
    actual = checkpointed(x)
    assert len(actual) == len(expected) == 5
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e)
    sum(m.square().mean() for m in expected).backward()
    sum(m.square().mean() for m in actual).backward()
    _assert_same_step(plain, checkpointed)
    with_checkpoints = _saved_bytes(checkpointed, x)
    without = _saved_bytes(plain, x)
    assert with_checkpoints * 2 < without


@pytest.mark.parametrize(("segment", "last_stage"), [(1, True), (3, False), (3, True), (100, True)])
def test_segments_give_the_same_step(segment: int, last_stage: bool, device: torch.device) -> None:
    """Blocks checkpointed in runs of ``segment`` (runs crossing stages, a short last run,
    one run for the whole net), the last stage or not: the plain step's outputs, gradients
    and statistics."""
    torch.manual_seed(0)
    plain = rl.resnet20(base_channels=4, drop_path_rate=0.3).to(device).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True, segment=segment, last_stage=last_stage)
    assert checkpointed.grad_checkpointing_segment == segment
    assert checkpointed.grad_checkpointing_last_stage == last_stage
    x = torch.randn(4, 3, 16, 16, device=device)
    torch.testing.assert_close(_step(checkpointed, x, seed=1), _step(plain, x, seed=1))
    _assert_same_step(plain, checkpointed)


def test_longer_segments_save_fewer_activations() -> None:
    torch.manual_seed(0)
    model = rl.resnet56(base_channels=4).train()
    x = torch.randn(4, 3, 16, 16)
    plain = _saved_bytes(model, x)
    saved = {}
    for segment in (1, 3, 9):
        model.set_grad_checkpointing(True, segment=segment, last_stage=True)
        saved[segment] = _saved_bytes(model, x)
    assert plain > saved[1] > saved[3] > saved[9]
    assert saved[3] * 2 < saved[1]
    # By default the last stage (the smallest maps) keeps its activations: more saved
    # bytes than checkpointing it too, still far fewer than none.
    model.set_grad_checkpointing(True, segment=3, last_stage=False)
    assert saved[3] < _saved_bytes(model, x) < plain / 3
    model.set_grad_checkpointing(False)  # the settings are kept for the next time
    assert model.grad_checkpointing_segment == 3
    assert not model.grad_checkpointing_last_stage
    assert _saved_bytes(model, x) == plain


@pytest.mark.parametrize("segment", [0, -1, 2.0, True])
def test_bad_segment(segment: object) -> None:
    model = rl.resnet20(base_channels=4)
    with pytest.raises(ValueError, match="segment must be a positive int"):
        model.set_grad_checkpointing(True, segment=segment)  # type: ignore[arg-type]
    assert not model.grad_checkpointing


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.5])
def test_compiled_checkpointing_gives_the_same_step(drop_path_rate: float) -> None:
    """torch.compile traces the checkpointed blocks: the plain eager step's outputs, gradients
    and statistics (updated once), the same drop-path masks."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    plain = rl.cifar_resnet(8, widths=(4, 8, 16), drop_path_rate=drop_path_rate).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True, segment=1, last_stage=True)
    compiled = torch.compile(checkpointed, backend="aot_eager")
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(_step(compiled, x, seed=1), _step(plain, x, seed=1))  # type: ignore[arg-type]
    _assert_same_step(plain, checkpointed)
