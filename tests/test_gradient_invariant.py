"""The paper's argument, measured: at init, shortcuts keep the input gradient of a deep net
close to a shallow one's; without them, the deep plain net's departs by orders of magnitude.

Measured (train mode, i.e. BatchNorm on batch statistics, cross-entropy on random labels,
12 runs: seeds 0-5 at batch 8 and 32): resnet110/resnet20 input-gradient norm ratio
8.5 .. 12.0; plain110/plain20 ratio 1.1e6 .. 8.7e6. The plain net's gradient *explodes*
rather than vanishes: deep BatchNorm plain nets are known to blow up gradients at init
(Yang et al. 2019). The bounds below sit about 2x outside the residual range and 10x
below the plain range.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import resnetlib as rl

RESIDUAL_RATIO_BOUND = 20.0
PLAIN_RATIO_FLOOR = 1e5


def input_gradient_norm(name: str, seed: int, batch_size: int = 8) -> float:
    torch.manual_seed(seed)
    model = rl.create_model(name).train()
    generator = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(batch_size, 3, 32, 32, generator=generator, requires_grad=True)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    F.cross_entropy(model(x), labels).backward()
    assert x.grad is not None
    return float(x.grad.norm())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_shortcuts_keep_the_deep_nets_gradient_near_the_shallow_ones(seed: int) -> None:
    residual = input_gradient_norm("resnet110", seed) / input_gradient_norm("resnet20", seed)
    plain = input_gradient_norm("plain110", seed) / input_gradient_norm("plain20", seed)
    assert 1 / RESIDUAL_RATIO_BOUND < residual < RESIDUAL_RATIO_BOUND
    assert plain > PLAIN_RATIO_FLOOR
    assert plain / residual > 1e4
