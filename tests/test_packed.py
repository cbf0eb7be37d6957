"""A packed network of K models equals the K models (forward, backward, norms, SGD)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import resnetlib as rl
from resnetlib.train.packed import PackedResNet, pack


def models(shortcut: str, count: int = 3) -> list[rl.ResNet]:
    built = []
    for seed in range(count):
        torch.manual_seed(seed)
        model = rl.cifar_resnet(8, widths=(4, 8, 16), shortcut=shortcut, num_classes=10)
        for module in model.modules():  # non-trivial norms, so that a mix-up would show
            if isinstance(module, torch.nn.BatchNorm2d):
                torch.nn.init.uniform_(module.weight, 0.5, 1.5)
                torch.nn.init.uniform_(module.bias, -0.5, 0.5)
        built.append(model)
    return built


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_packed_equals_separate_models(shortcut: str, device: torch.device) -> None:
    separate = [model.to(device) for model in models(shortcut)]
    packed = pack(separate).to(device)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(6, 3, 16, 16, generator=generator).to(device) for _ in separate]
    labels = torch.randint(0, 10, (6, len(separate)), generator=generator).to(device)

    logits = packed(PackedResNet.join(inputs))
    assert logits.shape == (6, 3, 10)
    outputs = [m(x) for m, x in zip(separate, inputs, strict=True)]
    torch.testing.assert_close(logits, torch.stack(outputs, dim=1), rtol=1e-5, atol=1e-5)

    # one SGD step each way: gradients, norms' running statistics and weights agree
    loss = F.cross_entropy(logits.reshape(-1, 10), labels.reshape(-1), reduction="sum")
    loss.backward()
    torch.optim.SGD(packed.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4).step()
    for k, model in enumerate(separate):
        F.cross_entropy(outputs[k], labels[:, k], reduction="sum").backward()
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4).step()
    for mine, theirs in zip(packed.unpack(), separate, strict=True):
        got, want = mine.state_dict(), theirs.state_dict()
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key].cpu(), rtol=1e-5, atol=1e-5)
    # the models stay independent: model 0's input alone moves model 0's logits alone
    packed.eval()
    with torch.no_grad():
        before = packed(PackedResNet.join(inputs))
        inputs[0] = inputs[0] + 1.0
        after = packed(PackedResNet.join(inputs))
    assert not torch.allclose(before[:, 0], after[:, 0])
    torch.testing.assert_close(before[:, 1:], after[:, 1:])


def test_unpack_round_trip_and_errors() -> None:
    separate = models("A", count=2)
    for mine, theirs in zip(pack(separate).unpack(), separate, strict=True):
        for key, value in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[key], value), key
    with pytest.raises(ValueError, match="at least two"):
        pack(separate[:1])
    other = rl.cifar_resnet(8, widths=(4, 8, 16), num_classes=5)
    with pytest.raises(ValueError, match="one spec"):
        pack([separate[0], other])
    with pytest.raises(ValueError, match="cannot be packed"):
        pack([rl.resnet18(num_classes=10), rl.resnet18(num_classes=10)])
