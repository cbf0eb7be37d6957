"""Compare resnetlib's speed with reference implementations of the same networks.

Pairs, each measured in inference (eval, ``torch.no_grad``) and in a training step
(train mode, forward, cross-entropy, backward, SGD with momentum):

- ``resnetlib.resnet18`` / ``resnet50`` against ``torchvision.models`` (skipped when
  torchvision does not import);
- ``resnetlib.resnet56`` against :class:`RefCifarResNet`, a plain CIFAR ResNet-56 written
  below in torchvision's style.

Both sides of a pair get the same seed and the same input, and are timed in one process,
interleaved round by round (peer, resnetlib, peer, resnetlib, ...) so that drift in the
machine's speed hits both alike. The report is a markdown table of medians with the
fastest and slowest round (min-max) and the ratio resnetlib / peer with the range of the
per-round ratios, so that noise shows; it asserts nothing about speed.

Defaults (batch 8 at 112x112 for the ImageNet nets, batch 32 at 32x32 for ResNet-56,
3 warm-up and 15 timed rounds) keep a full run on an otherwise idle 2-core CPU machine
to about 100 seconds. Other load on the machine inflates and scatters every timing.

Run from the repository root: ``python benchmarks/compare.py [--device cuda] [...]``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import resnetlib

RESNET56_PARAMS = 853_018


# --------------------------------------------------------------------------------------
# Reference CIFAR ResNet-56: textbook code, torchvision's style, option A shortcuts.
# --------------------------------------------------------------------------------------


class RefZeroPad(nn.Module):
    """Option A shortcut: subsample by ``stride`` and append ``extra`` zero channels."""

    def __init__(self, extra: int, stride: int) -> None:
        super().__init__()
        self.extra = extra
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class RefBasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut, as torchvision writes it."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = RefZeroPad(planes - inplanes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out: torch.Tensor = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class RefCifarResNet(nn.Module):
    """CIFAR ResNet (paper section 4.2): 3x3 stem, 3 stages of ``n`` blocks, pool, fc."""

    def __init__(self, n: int = 9, num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, n, stride=1)
        self.layer2 = self._make_layer(32, n, stride=2)
        self.layer3 = self._make_layer(64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [RefBasicBlock(self.inplanes, planes, stride)]
        self.inplanes = planes
        layers += [RefBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.fc(x)
        return out


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """A resnetlib model and its peer, with the input shape they are timed on."""

    name: str
    peer: Callable[[], nn.Module]
    lib: Callable[[], nn.Module]
    batch_size: int
    image_size: int
    num_classes: int


@dataclass(frozen=True)
class Timings:
    """Milliseconds of each timed round of both sides, in round order."""

    peer: tuple[float, ...]
    lib: tuple[float, ...]

    @property
    def round_ratios(self) -> list[float]:
        """resnetlib over peer, round by round (the two calls of a round are adjacent)."""
        return [lib / peer for peer, lib in zip(self.peer, self.lib, strict=True)]


@dataclass(frozen=True)
class Row:
    """One line of the report: medians in milliseconds, with each round's spread."""

    model: str
    mode: str
    timings: Timings

    @property
    def peer_ms(self) -> float:
        return statistics.median(self.timings.peer)

    @property
    def lib_ms(self) -> float:
        return statistics.median(self.timings.lib)

    @property
    def ratio(self) -> float:
        """resnetlib time over peer time: above 1 means resnetlib is slower."""
        return self.lib_ms / self.peer_ms

    def cells(self) -> list[str]:
        """The table's cells: median (min-max) for each side and for the ratio."""

        def spread(values: tuple[float, ...] | list[float], median: float, digits: int) -> str:
            return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

        return [
            self.model,
            self.mode,
            spread(self.timings.peer, self.peer_ms, 2),
            spread(self.timings.lib, self.lib_ms, 2),
            spread(self.timings.round_ratios, self.ratio, 3),
        ]


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock milliseconds of one call of ``fn``."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def interleaved_timings(
    peer: Callable[[], object],
    lib: Callable[[], object],
    device: torch.device,
    rounds: int,
    warmup: int,
) -> Timings:
    """Milliseconds of each round of ``peer`` and ``lib``, called alternately each round."""
    for _ in range(warmup):
        time_ms(peer, device)
        time_ms(lib, device)
    peer_times: list[float] = []
    lib_times: list[float] = []
    for _ in range(rounds):
        peer_times.append(time_ms(peer, device))
        lib_times.append(time_ms(lib, device))
    return Timings(tuple(peer_times), tuple(lib_times))


def inference_step(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A closure running one eval-mode forward pass without autograd."""
    model.eval()

    def step() -> object:
        with torch.no_grad():
            return model(x)

    return step


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    """A closure running one SGD training step (forward, cross-entropy, backward, update)."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        torch.autograd.backward(loss)
        optimizer.step()
        return loss

    return step


def build(factory: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """Build a model from a fixed seed and move it to ``device``."""
    torch.manual_seed(seed)
    return factory().to(device)


def measure(pair: Pair, args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Time one pair in inference and training; check first that it is like for like."""
    peer = build(pair.peer, args.seed, device)
    lib = build(pair.lib, args.seed, device)
    peer_params, lib_params = count_params(peer), count_params(lib)
    assert peer_params == lib_params, f"{pair.name}: peer {peer_params:,} != {lib_params:,}"
    if pair.name == "resnet56":
        assert lib_params == RESNET56_PARAMS, f"resnet56 has {lib_params:,} parameters"
    generator = torch.Generator().manual_seed(args.seed)
    shape = (pair.batch_size, 3, pair.image_size, pair.image_size)
    x = torch.randn(shape, generator=generator).to(device)
    y = torch.randint(pair.num_classes, (pair.batch_size,), generator=generator).to(device)
    rows = []
    label = f"{pair.name} ({pair.batch_size}x3x{pair.image_size}x{pair.image_size})"
    for mode in ("inference", "train step"):
        if mode == "inference":
            peer_fn, lib_fn = inference_step(peer, x), inference_step(lib, x)
        else:
            peer_fn, lib_fn = train_step(peer, x, y), train_step(lib, x, y)
        timings = interleaved_timings(peer_fn, lib_fn, device, args.rounds, args.warmup)
        rows.append(Row(label, mode, timings))
    return rows


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def pairs(args: argparse.Namespace) -> tuple[list[Pair], str | None]:
    """The pairs to time, and why the torchvision ones are skipped (``None``: they are not)."""
    out: list[Pair] = []
    skipped: str | None = None
    try:
        tv = importlib.import_module("torchvision.models")
    except Exception as error:  # torchvision absent, or built for another torch
        skipped = f"{type(error).__name__}: {error}"
    else:
        for name in ("resnet18", "resnet50"):
            out.append(
                Pair(
                    name=name,
                    peer=getattr(tv, name),
                    lib=getattr(resnetlib, name),
                    batch_size=args.batch_size,
                    image_size=args.image_size,
                    num_classes=1000,
                )
            )
    out.append(
        Pair(
            name="resnet56",
            peer=RefCifarResNet,
            lib=resnetlib.resnet56,
            batch_size=args.cifar_batch_size,
            image_size=32,
            num_classes=10,
        )
    )
    return out, skipped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds per side first")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="batch size of the ImageNet nets (default 8)"
    )
    parser.add_argument(
        "--image-size", type=int, default=112, help="input side of the ImageNet nets (112)"
    )
    parser.add_argument(
        "--cifar-batch-size", type=int, default=32, help="batch size of ResNet-56 (32x32 input)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; use 1 on a busy machine)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and input")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given, but CUDA is not available")
    return args


def device_name(device: torch.device) -> str:
    """A readable name for the device the models run on."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def main(argv: list[str] | None = None) -> None:
    """Run every pair and print the report."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    todo, skipped = pairs(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device_name(device)}")
    print(
        f"{args.warmup} warm-up + {args.rounds} timed rounds per side, interleaved; "
        "median (min-max of the rounds)"
    )
    if skipped is not None:
        print(f"resnet18/resnet50 rows skipped: torchvision is absent ({skipped})")
    print()
    print("| model | mode | peer ms | resnetlib ms | ratio (resnetlib/peer) |")
    print("|---|---|---:|---:|---:|")
    for pair in todo:
        for row in measure(pair, args, device):
            print(f"| {' | '.join(row.cells())} |", flush=True)
    print()
    print("peer: torchvision.models for resnet18/50, RefCifarResNet (this file) for resnet56")


if __name__ == "__main__":
    main()
