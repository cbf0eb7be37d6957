"""Time to build ResNet-50: resnetlib's ``resnet50()`` against torchvision's ``resnet50()``.

The peer is torchvision's when it imports, else :class:`deploy.TVResNet` (torchvision's code,
copied) followed by torchvision's weight initialization (its ``__init__`` loop: He normal,
fan_out, for every convolution; norms at weight 1, bias 0), which the copy leaves out. Both
are timed in one process, interleaved round by round; the report is the median ratio
resnetlib / peer with its range. It asserts nothing about speed.

Run from the repository root: ``PYTHONPATH=src python benchmarks/build_time.py [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from deploy import TVBottleneck, TVResNet  # benchmarks/ is the script's directory
from torch import nn

import resnetlib


def torchvision_resnet50() -> tuple[Callable[[], nn.Module], str]:
    """torchvision's builder, or its code copied with its initialization."""
    try:
        from torchvision.models import resnet50

        return resnet50, "torchvision.models.resnet50"
    except Exception:  # torchvision absent, or built for another torch

        def build() -> nn.Module:
            model = TVResNet(TVBottleneck, [3, 4, 6, 3])
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.constant_(module.weight, 1)
                    nn.init.constant_(module.bias, 0)
            return model

        return build, "TVResNet with torchvision's init (benchmarks/deploy.py)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer, label = torchvision_resnet50()
    for _ in range(2):  # warm-up: imports, allocator
        peer()
        resnetlib.resnet50()
    ours, theirs = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        peer()
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        resnetlib.resnet50()
        ours.append(time.perf_counter() - start)
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    print(f"| build | peer ({label}) | resnetlib | ratio (min-max) | threads |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| resnet50 | {1e3 * statistics.median(theirs):.0f} ms | "
        f"{1e3 * statistics.median(ours):.0f} ms | {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}) | {args.threads} |"
    )


if __name__ == "__main__":
    main()
