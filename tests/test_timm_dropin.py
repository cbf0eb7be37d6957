"""timm's model contract, as timm's tests/test_models.py checks it, without timm.

scripts/run_timm_model_tests.py runs timm's own file against resnetlib where timm is
installed; these tests hold the same semantics in CI, on the same nets at a small width
(base width 8; depth, block, stem and shortcut are the nets') to keep the time down.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import resnetlib as rl

MODELS = {
    "resnet18": dict(base_channels=8),
    "resnet50d": dict(base_channels=8),
    "resnet20": {},
    "preact_resnet18": dict(base_channels=8),
}


def small(name: str, **kwargs: object) -> rl.ResNet:
    """``name`` at a small width (its block, stem, shortcut and depth)."""
    torch.manual_seed(0)
    return rl.create_model(name, **MODELS[name], **kwargs).eval()  # type: ignore[arg-type]


def sample(model: rl.ResNet) -> torch.Tensor:
    return torch.randn(2, *model.pretrained_cfg["input_size"][:1], 48, 40)


@pytest.mark.parametrize("name", MODELS)
def test_feature_maps_have_the_reductions_feature_info_gives(name: str) -> None:
    model = small(name)
    backbone = rl.create_model(name, **MODELS[name], features_only=True).eval()  # type: ignore[call-overload]
    x = sample(model)
    maps = backbone(x)
    assert backbone.feature_info.channels() == [m.shape[1] for m in maps]
    for reduction, fmap in zip(backbone.feature_info.reduction(), maps, strict=True):
        assert fmap.shape[-2:] == tuple(math.ceil(side / reduction) for side in x.shape[-2:])
    assert len(set(backbone.feature_info.reduction())) >= 3
    final, taps = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
    assert [t.shape for t in taps] == [m.shape for m in maps]


@pytest.mark.parametrize("name", MODELS)
def test_prune_intermediate_layers_contract(name: str) -> None:
    """timm's test_prune_intermediate_layers_contract: taps survive pruning, a pruned model
    ends at its tap, and everything left trains."""
    model = small(name)
    x = sample(model)
    last = len(model.feature_info) - 1
    with torch.no_grad():
        expected = model(x)
        taps = model.forward_intermediates(x, intermediates_only=True)
        pruned = copy.deepcopy(model)
        pruned.prune_intermediate_layers([last], prune_head=False)
        torch.testing.assert_close(pruned(x), expected, rtol=0, atol=0)
    for i in range(last + 1):
        with torch.no_grad():
            early = model.forward_intermediates(x, [i], stop_early=True, intermediates_only=True)
            torch.testing.assert_close(early[0], taps[i], rtol=0, atol=0)
            pruned = copy.deepcopy(model)
            take = pruned.prune_intermediate_layers([i])
            got = pruned.forward_intermediates(x, take, intermediates_only=True)
            torch.testing.assert_close(got[0], taps[i], rtol=0, atol=0)
            pruned = copy.deepcopy(model)
            take = pruned.prune_intermediate_layers([i], prune_norm=True)
            torch.testing.assert_close(pruned.forward_features(x), taps[i], rtol=0, atol=0)
        pruned.train()
        got = pruned.forward_intermediates(x, take, intermediates_only=True)
        sum(f.sum() for f in [*got, pruned.forward_features(x)]).backward()
        unused = [n for n, p in pruned.named_parameters() if p.grad is None]
        assert not unused, f"pruned to {i}, unused: {unused}"


def test_head_hidden_size_follows_the_pool_and_pruning() -> None:
    model = small("resnet18", num_classes=0)
    x = sample(model)
    for pool, width in (("avg", 64), ("catavgmax", 128), ("avgmax", 64)):
        model.reset_classifier(7, pool)
        features = model.forward_features(x)
        assert model.head_hidden_size == width
        assert model.forward_head(features, pre_logits=True).shape == (2, width)
        assert model(x).shape == (2, 7)
    features = model.forward_features(x)
    avg, top = F.adaptive_avg_pool2d(features, 1), F.adaptive_max_pool2d(features, 1)
    torch.testing.assert_close(
        model.forward_head(features, pre_logits=True), (0.5 * (avg + top)).flatten(1)
    )
    model.reset_classifier(3, "catavgmax")
    torch.testing.assert_close(
        model.forward_head(features, pre_logits=True), torch.cat((avg, top), 1).flatten(1)
    )
    index = len(model.feature_info) - 2
    model.prune_intermediate_layers([index], prune_norm=True)
    model.reset_classifier(7, "avg")
    assert model.head_hidden_size == model.num_features == model.feature_info[index]["num_chs"]
    assert model(x).shape == (2, 7)


def test_device_and_dtype_arguments() -> None:
    model = rl.create_model("resnet50", device="meta", dtype=torch.float64)
    tensors = [*model.parameters(), *model.buffers()]
    assert {t.device.type for t in tensors} == {"meta"}
    assert {t.dtype for t in model.parameters()} == {torch.float64}
    assert model.in_chans == model.pretrained_cfg["input_size"][0] == 3
    assert rl.create_model("resnet20", in_chans=1, device="meta").in_chans == 1
    with pytest.raises(TypeError, match="not_a_model_arg"):
        rl.create_model("resnet18", device="meta", not_a_model_arg=1)


def test_reset_classifier_keeps_the_models_mode_device_and_dtype() -> None:
    """timm's _assert_reset_classifier_preserves_parent_device_dtype."""
    model = rl.create_model("resnet18", num_classes=0, global_pool="", device="meta").eval()
    model.to(dtype=torch.float64)
    model.reset_classifier(0)
    model.reset_classifier(2)  # a classifier needs pooling: "avg" comes back
    assert model.global_pool == "avg"
    assert all(p.device.type == "meta" and p.dtype == torch.float64 for p in model.fc.parameters())
    assert not any(module.training for module in model.modules())
    model.train()
    model.reset_classifier(3, "max")
    assert all(module.training for module in model.modules())
