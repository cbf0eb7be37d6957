"""Shared fixtures: devices ("cpu" always, "cuda" when available) and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from .devices import DEVICES

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The suite checks semantics in float32. On GPUs with TensorFloat-32, cuDNN may choose a TF32
# convolution for one batch size and not for another (differences near 1e-4), which would fail
# comparisons such as "a sample's eval output does not depend on the rest of the batch".
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device test runs on the CPU, and on CUDA where one is present."""
    return torch.device(request.param)
