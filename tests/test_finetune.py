"""Fine-tuning helpers: freeze, norm_eval, per-stage parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

import resnetlib as rl

from .helpers import tiny_imagenet


def tiny() -> rl.ResNet:
    return tiny_imagenet(num_classes=5)


def norms_of(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, _NormBase)]


def frozen_part(model: rl.ResNet, stages: int) -> list[nn.Module]:
    names = model.stem_names + model.stage_names[:stages]
    return [model.get_submodule(name) for name in names]


def train_step(model: rl.ResNet, device: torch.device) -> None:
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(4, 3, 33, 47, device=device)).square().mean()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("stages", [0, 2, 4])
def test_freeze_stops_gradients_and_running_stats(stages: int, device: torch.device) -> None:
    model = tiny().to(device)
    rl.interop.freeze(model, stages=stages)
    assert model.frozen_stages == stages
    frozen = frozen_part(model, stages)
    frozen_ids = {id(p) for part in frozen for p in part.parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(model, device)
    for part in frozen:
        assert all(not p.requires_grad and p.grad is None for p in part.parameters())
        assert all(not norm.training for norm in norms_of(part))
    after = model.state_dict()
    frozen_keys = {
        k
        for part_name in model.stem_names + model.stage_names[:stages]
        for k in after
        if k.startswith(f"{part_name}.")
    }
    assert frozen_keys
    for key in frozen_keys:  # weights and running statistics alike
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    trainable = [p for p in model.parameters() if id(p) not in frozen_ids]
    assert all(p.requires_grad for p in trainable)
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    if stages < 4:
        unfrozen_norm = norms_of(model.get_submodule(model.stage_names[stages]))[0]
        assert unfrozen_norm.training


def test_freeze_survives_train_and_unfreeze_undoes_it() -> None:
    model = tiny()
    rl.interop.freeze(model, stages=1)
    model.eval()
    model.train()
    assert not any(n.training for part in frozen_part(model, 1) for n in norms_of(part))
    rl.interop.freeze(model, stages=0)  # cumulative: still stem + layer1
    assert model.frozen_stages == 1
    assert not model.layer1[0].conv1.weight.requires_grad
    rl.interop.unfreeze(model)
    assert model.frozen_stages == -1
    assert all(p.requires_grad for p in model.parameters())
    assert all(n.training for n in norms_of(model))


@pytest.mark.parametrize("bad", [-1, 5, 1.0, True])
def test_freeze_rejects_bad_stage_counts(bad: object) -> None:
    with pytest.raises(ValueError, match=r"stages must be an int in 0\.\.4"):
        rl.interop.freeze(tiny(), stages=bad)  # type: ignore[arg-type]


def test_a_features_backbone_keeps_and_takes_the_freeze() -> None:
    model = tiny()
    rl.interop.freeze(model, stages=1)
    backbone = rl.core.features(model, out_indices=(1, 2, 3))
    assert backbone.frozen_stages == 1
    backbone.train()
    assert not model.layer1[0].bn1.training
    assert model.layer2[0].bn1.training
    fresh = rl.create_model("resnet18", features_only=True, out_indices=(2, 3))
    rl.interop.freeze(fresh, stages=2)
    fresh.train()
    assert not any(n.training for n in norms_of(fresh.layer2))
    assert all(n.training for n in norms_of(fresh.layer3))
    assert not fresh.layer2[0].conv1.weight.requires_grad
    assert [g["name"] for g in rl.interop.param_groups(fresh, lr=1.0)] == ["layer3"]
    with pytest.raises(ValueError, match=r"stages must be an int in 0\.\.3"):
        rl.interop.freeze(fresh, stages=4)


def test_freeze_rejects_other_modules() -> None:
    with pytest.raises(TypeError, match=r"expected a resnetlib ResNet or ResNetFeatures; got"):
        rl.interop.freeze(nn.Linear(2, 2), stages=0)  # type: ignore[arg-type]


def test_norm_eval_holds_every_norm(device: torch.device) -> None:
    model = tiny().to(device)
    model.norm_eval = True
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    train_step(model, device)
    assert model.training
    assert model.conv1.training
    assert not any(n.training for n in norms_of(model))
    after = model.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    # The norms' affine parameters still learn; only their statistics are held.
    assert model.bn1.weight.grad is not None
    model.norm_eval = False
    model.train()
    assert all(n.training for n in norms_of(model))


def test_param_groups_scale_per_stage() -> None:
    model = tiny()
    lr, decay = 0.4, 0.5
    groups = rl.interop.param_groups(model, lr=lr, decay=decay)
    assert [g["name"] for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    for depth, group in enumerate(reversed(groups)):
        assert group["lr"] == pytest.approx(lr * decay**depth)
        assert group["lr_scale"] == pytest.approx(decay**depth)
        assert "weight_decay" not in group
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    assert {id(p) for p in groups[-1]["params"]} == {id(p) for p in model.fc.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {
        id(p) for name in model.stem_names for p in model.get_submodule(name).parameters()
    }


def test_param_groups_split_off_norms_and_biases() -> None:
    model = tiny()
    groups = rl.interop.param_groups(model, lr=0.1, weight_decay=1e-4, no_decay_norm_bias=True)
    names = [g["name"] for g in groups]
    assert names[:2] == ["stem", "stem.no_decay"]
    assert names[-2:] == ["head", "head.no_decay"]
    for group in groups:
        exempt = group["name"].endswith(".no_decay")
        assert group["weight_decay"] == (0.0 if exempt else 1e-4)
        assert all((p.ndim <= 1) == exempt for p in group["params"])
    bn_weight = model.layer2[0].bn1.weight
    (layer2_exempt,) = [g for g in groups if g["name"] == "layer2.no_decay"]
    assert any(p is bn_weight for p in layer2_exempt["params"])
    optimizer = torch.optim.SGD(groups, lr=1.0, weight_decay=0.1)
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in groups]
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()


def test_param_groups_leave_out_frozen_parameters() -> None:
    model = tiny()
    rl.interop.freeze(model, stages=2)
    groups = rl.interop.param_groups(model, lr=0.1, decay=0.9)
    assert [g["name"] for g in groups] == ["layer3", "layer4", "head"]
    model.reset_classifier(0)
    assert [g["name"] for g in rl.interop.param_groups(model, lr=0.1)] == ["layer3", "layer4"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, r"lr must be a number > 0; got 0\.0"),
        ({"lr": 0.1, "decay": -1}, r"decay must be a number > 0; got -1"),
        ({"lr": 0.1, "weight_decay": -0.1}, r"weight_decay must be a number >= 0 or None"),
    ],
)
def test_param_groups_reject_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rl.interop.param_groups(tiny(), **kwargs)


def test_frozen_stages_stop_stochastic_depth_too() -> None:
    model = rl.resnet18(drop_path_rate=0.5, num_classes=3)
    rl.interop.freeze(model, stages=2)
    model.train()
    frozen = [b for name in ("layer1", "layer2") for b in model.get_submodule(name).children()]
    trained = [b for name in ("layer3", "layer4") for b in model.get_submodule(name).children()]
    assert all(not block.training for block in frozen)
    assert all(block.training for block in trained)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model.layer2(model.layer1(model.forward_stem(x)))
        second = model.layer2(model.layer1(model.forward_stem(x)))
    assert torch.equal(first, second)
    rl.interop.unfreeze(model)
    model.train()
    assert all(block.training for block in frozen)
