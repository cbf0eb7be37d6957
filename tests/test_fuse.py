"""Batch-norm folding and the eager inference fast path (resnetlib.deploy.fuse_bn,
resnetlib.deploy.optimize_for_inference), for every registered model and user blocks.

Every registered model is checked on its spec with stages cut to two blocks (see
tests/deploy_cases.py): same block, stem, shortcut, norm and options, so the same folds;
models whose cut specs coincide (resnet20 ... resnet1202) are checked once.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import resnetlib as rl

from .deploy_cases import case_spec, distinct_cases, input_for, randomize_norms

CASES = distinct_cases(blocks=2)


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol * scale)


def _model(name: str, device: torch.device) -> rl.ResNet:
    torch.manual_seed(0)
    model = rl.build(case_spec(name))
    randomize_norms(model)
    return model.to(device).eval()


@pytest.mark.parametrize(("name", "sharing"), CASES, ids=[name for name, _ in CASES])
def test_fused_and_channels_last_match_eager(
    name: str, sharing: tuple[str, ...], device: torch.device
) -> None:
    model = _model(name, device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = input_for(model.spec).to(device)
    with torch.no_grad():
        expected = model(x)
        fused, report = rl.deploy.fuse_bn(model, report=True)
        _close(fused(x), expected)
        # channels_last runs other kernels (group norm reduces in another order): 1e-4.
        fast = rl.deploy.optimize_for_inference(model)
        _close(fast(x), expected, atol=1e-4)
        channels_last = model.to(memory_format=torch.channels_last)
        out = channels_last(x.contiguous(memory_format=torch.channels_last))
        _close(out, expected, atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fused.spec == model.spec
    assert isinstance(fused, rl.ResNet)
    assert any(p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters())
    left = [
        n for n, m in fused.named_modules() if isinstance(m, (_BatchNorm, rl.nn.FrozenBatchNorm2d))
    ]
    assert sorted(n for n, _ in report.unfused if n in left) == sorted(left)
    if model.spec.block.startswith("preact"):
        # Only what normalizes a block's input, or the last unit's output, cannot fold.
        assert left
        assert all(n.endswith(".bn1") or n == "norm.bn" for n in left), left
        assert report.fused
    elif model.spec.norm == "groupnorm":
        assert not report.fused
        assert {n for n, _ in report.unfused} == {
            n for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)
        }
    else:
        assert not left, left
        convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
        assert all(c.bias is not None for c in convs)


def test_fused_model_is_inference_only(tmp_path: Path) -> None:
    model = _model("resnet20", torch.device("cpu")).train()
    fused = rl.deploy.fuse_bn(model)
    assert model.training  # the given model keeps its mode
    assert not fused.training
    assert rl.deploy.is_fused(fused)
    assert not rl.deploy.is_fused(model)
    with pytest.raises(RuntimeError, match="inference-only"):
        fused.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        nn.Sequential(fused).train()
    fused.eval()  # allowed
    x = input_for(model.spec).requires_grad_(True)
    with pytest.raises(RuntimeError, match="inference-only"):
        fused(x).sum().backward()
    with pytest.raises(RuntimeError, match="inference-only"):
        fused(x.detach()).sum().backward()
    assert not any(p.requires_grad for p in fused.parameters())
    # resnetlib.save refuses: the spec describes the unfolded model, not this one.
    with pytest.raises(ValueError, match=r"folded by fuse_bn\(\).*Save the model before fusing"):
        rl.save(fused, tmp_path / "fused.pt")
    # A pickled copy is still fused, still equal, still refuses training.
    again = pickle.loads(pickle.dumps(fused))
    x = input_for(model.spec)
    with torch.no_grad():
        torch.testing.assert_close(again(x), fused(x))
    with pytest.raises(RuntimeError, match="inference-only"):
        again.train()


class ConvNorm(nn.Module):
    """Not an nn.Sequential: a convolution and a norm the fold must find by tracing."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: rl.nn.NormLayer):
        super().__init__()
        self.conv = rl.nn.conv3x3(in_channels, out_channels, stride)
        self.norm = norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(self.conv(x))
        return out


class NestedBlock(rl.ResidualBlock):
    """A user block whose convolutions and norms sit in sub-modules of its own."""

    expansion: ClassVar[int] = 1

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        residual: bool = True,
        norm_layer: rl.nn.NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            width=width,
            stride=stride,
            downsample=downsample,
            residual=residual,
        )
        self.first = ConvNorm(in_channels, width, stride, norm_layer)
        self.second = ConvNorm(width, width, 1, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.second(torch.relu(self.first(x)))
        return torch.relu(self.add_shortcut(out, x))

    def zero_init_last(self) -> None:
        rl.nn.zero_norm_weight(self.second.norm)


class BranchingBlock(NestedBlock):
    """A user block whose forward branches on data: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first(x)
        if bool(out.mean() > 100.0):
            out = out * 0.5
        out = self.second(torch.relu(out))
        return torch.relu(self.add_shortcut(out, x))


@pytest.mark.parametrize("block", [NestedBlock, BranchingBlock])
def test_user_blocks_fuse_or_are_reported(block: type[rl.ResidualBlock]) -> None:
    assert rl.testing.check_block(block).ok
    rl.register_block("deploy_test_block", block)
    try:
        spec = rl.ResNetSpec(
            stages=(rl.StageSpec(2, 8), rl.StageSpec(2, 16, stride=2)),
            block="deploy_test_block",
            stem=rl.StemSpec("cifar", 8),
            num_classes=5,
        )
        model = rl.build(spec)
    finally:
        rl.nn.BLOCKS.unregister("deploy_test_block")
    randomize_norms(model)
    model.eval()
    x = input_for(spec)
    fused, report = rl.deploy.fuse_bn(model, report=True)
    with torch.no_grad():
        _close(fused(x), model(x))
    block_norms = {
        n for n, m in model.named_modules() if "layer" in n and isinstance(m, _BatchNorm)
    }
    if block is NestedBlock:
        assert not report.unfused
        assert {norm for _, norm in report.fused} >= block_norms
    else:
        unfused = dict(report.unfused)
        assert set(unfused) == block_norms
        assert all("torch.fx" in reason for reason in unfused.values())
        assert "left" in str(report)


class BatchNormReLU(nn.BatchNorm2d):
    """A batch norm whose forward does more: folding it would drop the ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


def test_a_batch_norm_that_overrides_forward_is_left_and_reported() -> None:
    from resnetlib.deploy.quantize import _float_model

    rl.nn.register_norm("deploy_test_bnrelu", BatchNormReLU)
    try:
        torch.manual_seed(0)
        model = rl.resnet20(base_channels=4, norm="deploy_test_bnrelu")
    finally:
        rl.nn.NORMS.unregister("deploy_test_bnrelu")
    randomize_norms(model)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    fused, report = rl.deploy.fuse_bn(model, report=True)
    norms = {n for n, m in model.named_modules() if isinstance(m, BatchNormReLU)}
    assert norms
    assert not report.fused
    assert dict(report.unfused).keys() == norms
    assert all("overrides the batch norm's forward" in r for _, r in report.unfused)
    assert "BatchNormReLU" in str(report)
    with torch.no_grad():
        _close(fused(x), model(x))
        # quantize's float model (before int8) keeps them too: they run in float as written.
        _close(_float_model(model)(x), model(x))


def test_a_fused_feature_backbone_refuses_backward() -> None:
    """Every feature map of a features_only copy refuses backward, not only a lone output."""
    model = rl.create_model("resnet20", features_only=True).eval()
    fused = rl.deploy.fuse_bn(model)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    features = fused(x)
    assert isinstance(features, list)
    with torch.no_grad():
        for actual, expected in zip(features, model(x), strict=True):
            _close(actual, expected)
    for feature in features:
        with pytest.raises(RuntimeError, match="inference-only"):
            feature.sum().backward(retain_graph=True)
