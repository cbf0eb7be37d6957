"""Shared fixtures: devices ("cpu" always, "cuda" when available) and hypothesis profiles.

The session runs torch on one CPU thread (``RESNETLIB_TEST_THREADS`` overrides it), and
subprocesses the tests start inherit it through ``OMP_NUM_THREADS``: the tests use tiny
tensors, where more threads only contend for the cores, and on a busy machine torch's
default (one per core) made some tests over 20 times slower. Every CUDA case skipped for
want of a device is reported on one line.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from . import devices
from .devices import CUDA_REASON, DEVICES


def session_threads() -> int:
    """Threads for torch in the test session: ``RESNETLIB_TEST_THREADS``, else 1."""
    text = os.environ.get("RESNETLIB_TEST_THREADS", "1")
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise pytest.UsageError(f"RESNETLIB_TEST_THREADS must be an int >= 1; got {text!r}")
    return threads


THREADS = session_threads()
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)  # for the subprocesses: docs, CLI, examples

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


def fold_cuda_skip(report: pytest.TestReport) -> None:
    """Report a CUDA case skipped for want of a device at the one place that skips them all.

    pytest's summary folds skips by location and reason; each test function is its own
    location, which printed one "needs a CUDA device" line per function.
    """
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and longrepr[2].endswith(CUDA_REASON):
        report.longrepr = (str(Path(devices.__file__)), None, longrepr[2])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fold_cuda_skip(report)
    return report
