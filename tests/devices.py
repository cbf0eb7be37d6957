"""Devices every device test runs on: "cpu" always, "cuda" when one is present."""

from __future__ import annotations

import pytest
import torch

CUDA_REASON = "needs a CUDA device"
"""The one skip reason of every CUDA case; the summary folds them into one line."""

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]
