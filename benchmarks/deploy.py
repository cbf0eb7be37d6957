"""Inference fast path (and, on a GPU, training throughput) against torchvision's ResNets.

CPU mode (default; 1 thread, batch 8 at 112x112 for ResNet-18/50, batch 32 at 32x32 for
ResNet-56), inference under ``torch.no_grad``, every variant timed in one process,
interleaved round by round (one call of each variant per round, the order rotating):

- peer eager, and peer compiled (``torch.compile`` with inductor's freezing,
  channels_last input and weights): torchvision's ResNet-18/50 when torchvision imports,
  else :class:`TVResNet` below (torchvision's ResNet code, copied); the reference CIFAR
  ResNet-56 of benchmarks/compare.py for ResNet-56;
- resnetlib eager, fused (:func:`resnetlib.deploy.fuse_bn`), fused + channels_last, and the
  compiled fast path (``resnetlib.deploy.optimize_for_inference(model, compile=True)``);
- resnetlib int8 (:func:`resnetlib.deploy.quantize`, calibrated on 4 random batches: speed
  does not depend on the calibration), eager and compiled (``compile=True``).

Both sides carry the same weights (resnetlib's state dict loads strictly into the peer)
and must give the same outputs before anything is timed (the int8 models: within 10% in
relative L2 norm). The report gives the median,
min and max milliseconds and each median as a fraction of the peer's eager median.

GPU mode (``--device cuda``; about two minutes on an H200, compilation included):
inference images/s at batch 256, 224x224, fp32 and bf16 autocast, for the peer, resnetlib
eager and the fused channels_last copy; then ResNet-50 training images/s at batch 256,
224x224, synthetic data on the GPU, bf16 autocast + channels_last, eager and compiled.

Accuracy mode (``--accuracy``): ResNet-20 trained on the built-in digits (16x16, the
DIGITS recipe, CPU, a few minutes), then top-1 on the test split of the float model and of
its int8 copy (calibrated on 256 training images), and how often the two agree.

Run from the repository root: ``PYTHONPATH=src python benchmarks/deploy.py`` (``--quick``
for a small CPU smoke run, ``--nets resnet50`` for one net, ``--no-int8`` to skip int8).
Timings on a loaded machine are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import resnetlib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import RefCifarResNet

# --------------------------------------------------------------------------------------
# torchvision's ResNet (torchvision/models/resnet.py), copied for machines without it.
# --------------------------------------------------------------------------------------


def _conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class TVResNet(nn.Module):
    def __init__(self, block: type[TVBasicBlock | TVBottleneck], layers: list[int]) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, 1000)

    def _make_layer(
        self, block: type[TVBasicBlock | TVBottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))  # type: ignore[no-any-return]


def peer_factory(name: str) -> tuple[Callable[[], nn.Module], str]:
    """The peer of a resnetlib model, and its label."""
    if name == "resnet56":
        return RefCifarResNet, "RefCifarResNet (benchmarks/compare.py)"
    try:
        models = importlib.import_module("torchvision.models")
        return getattr(models, name), "torchvision"
    except Exception:  # torchvision absent, or built for another torch
        layers = {"resnet18": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3]}[name]
        block = TVBasicBlock if name == "resnet18" else TVBottleneck
        return (lambda: TVResNet(block, layers)), "TVResNet (torchvision's code, inline)"


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds per call of each function, called in turn each round (order rotating)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def no_grad_call(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad():
            return model(x)

    return call


def _check_close(name: str, out: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    error = float((out.float() - expected.float()).abs().max())
    scale = float(expected.abs().max())
    if error > tol * max(1.0, scale):
        raise SystemExit(f"{name}: output differs from eager by {error:.3g} (scale {scale:.3g})")


def _check_near(name: str, out: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    error = float((out.float() - expected.float()).norm() / expected.float().norm())
    if error > tol:
        raise SystemExit(f"{name}: output differs from eager by {error:.3g} (relative L2)")


def cpu_rows(name: str, batch: int, size: int, args: argparse.Namespace) -> None:
    factory, peer_label = peer_factory(name)
    torch.manual_seed(0)
    lib = getattr(resnetlib, name)().eval()
    peer = factory().eval()
    peer.load_state_dict(lib.state_dict())
    x = torch.randn(batch, 3, size, size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = lib(x)
        _check_close(f"{name} peer", peer(x), expected, 1e-4)
    variants: dict[str, nn.Module] = {
        "peer eager": peer,
        "resnetlib eager": lib,
        "resnetlib fused": resnetlib.deploy.fuse_bn(lib),
        "resnetlib fused + channels_last": resnetlib.deploy.optimize_for_inference(lib),
    }
    inputs = dict.fromkeys(variants, x)
    if args.compile:
        peer_cl = factory().eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        peer_cl.load_state_dict(lib.state_dict())
        variants["peer compiled (freezing, channels_last)"] = torch.compile(
            peer_cl, options={"freezing": True}
        )
        inputs["peer compiled (freezing, channels_last)"] = x_cl
        variants["resnetlib compiled fast path"] = resnetlib.deploy.optimize_for_inference(
            lib, compile=True
        )
        inputs["resnetlib compiled fast path"] = x
    for label, model in variants.items():
        with torch.no_grad():
            _check_close(f"{name} {label}", model(inputs[label]), expected, 1e-3)
    if args.int8:
        calibration = [torch.randn(batch, 3, size, size) for _ in range(4)]
        int8 = {"resnetlib int8 (quantize)": resnetlib.deploy.quantize(lib, calibration)}
        if args.compile:
            compiled = resnetlib.deploy.quantize(lib, calibration, compile=True)
            int8["resnetlib int8 compiled"] = compiled
        for label, model in int8.items():
            with torch.no_grad():
                _check_near(f"{name} {label}", model(x), expected, 0.1)
            variants[label] = model
            inputs[label] = x
    fns = {label: no_grad_call(model, inputs[label]) for label, model in variants.items()}
    times = interleaved(fns, torch.device("cpu"), args.rounds, args.warmup)
    base = statistics.median(times["peer eager"])
    print(f"\n{name}: batch {batch} at {size}x{size}; peer: {peer_label}")
    print("| variant | median ms | min ms | max ms | median / peer eager |")
    print("|---|---:|---:|---:|---:|")
    for label, values in times.items():
        median = statistics.median(values)
        print(
            f"| {label} | {median:.2f} | {min(values):.2f} | {max(values):.2f} "
            f"| {median / base:.3f} |",
            flush=True,
        )


# --------------------------------------------------------------------------------------
# GPU mode
# --------------------------------------------------------------------------------------


def images_per_s(fn: Callable[[], object], batch: int, device: torch.device, steps: int) -> float:
    times = interleaved({"fn": fn}, device, steps, warmup=3)["fn"]
    return batch / (statistics.median(times) / 1e3)


def gpu_rows(args: argparse.Namespace, device: torch.device) -> None:
    batch, size = args.gpu_batch, args.gpu_size
    factory, peer_label = peer_factory("resnet50")
    torch.manual_seed(0)
    lib = resnetlib.resnet50().to(device).eval()
    peer = factory().to(device).eval()
    peer.load_state_dict(lib.state_dict())
    x = torch.randn(batch, 3, size, size, device=device)
    models = {
        "peer eager": peer,
        "resnetlib eager": lib,
        "resnetlib fused + channels_last": resnetlib.deploy.optimize_for_inference(lib),
    }
    print(f"\nResNet-50 inference, batch {batch} at {size}x{size}, images/s; peer: {peer_label}")
    print("| variant | fp32 | bf16 autocast |")
    print("|---|---:|---:|")
    for label, model in models.items():
        rates = []
        for dtype in (None, torch.bfloat16):
            autocast = (
                torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
            )

            def call(model: nn.Module = model, autocast: object = autocast) -> object:
                with torch.no_grad(), autocast:  # type: ignore[attr-defined]
                    return model(x)

            rates.append(images_per_s(call, batch, device, args.gpu_steps))
        print(f"| {label} | {rates[0]:.0f} | {rates[1]:.0f} |", flush=True)

    print(
        f"\nResNet-50 training (SGD), batch {batch} at {size}x{size}, bf16 autocast, "
        "channels_last, synthetic data on the GPU, images/s"
    )
    print("| variant | images/s | first step s (compile) |")
    print("|---|---:|---:|")
    for compiled in (False, True):
        rate, first = train_throughput(compiled, batch, size, device, args.gpu_steps)
        label = "compiled (torch.compile)" if compiled else "eager"
        print(f"| {label} | {rate:.0f} | {first:.1f} |", flush=True)


def train_throughput(
    compiled: bool, batch: int, size: int, device: torch.device, steps: int
) -> tuple[float, float]:
    """ResNet-50 SGD steps, bf16 autocast, channels_last: images/s and the first step's s."""
    torch.manual_seed(0)
    model = resnetlib.resnet50().to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    net: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - start
    return images_per_s(step, batch, device, steps), first


def accuracy_rows() -> None:
    """Top-1 of ResNet-20 trained on the digits, float and int8, on the test split."""
    from resnetlib.deploy.quantize import calibration_batches
    from resnetlib.train import DIGITS, fit, load_data

    data = load_data("digits")
    torch.manual_seed(0)
    model = resnetlib.resnet20()
    start = time.perf_counter()
    trained = fit(model, data, DIGITS, progress=False, device="cpu").model.eval()
    # Normalized as fit() trained it: the model's pretrained_cfg mean and std.
    mean = torch.tensor(trained.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(trained.pretrained_cfg["std"]).view(3, 1, 1)
    test = (data.test.images.to(torch.float32) / 255.0 - mean) / std
    calibration = calibration_batches(data.train.images, trained, size=256)
    int8 = resnetlib.deploy.quantize(trained, calibration)
    with torch.no_grad():
        float_top1 = trained(test).argmax(1)
        int8_top1 = int8(test).argmax(1)
    labels = data.test.labels
    count = len(labels)
    float_acc = float((float_top1 == labels).float().mean()) * 100
    int8_acc = float((int8_top1 == labels).float().mean()) * 100
    agree = float((float_top1 == int8_top1).float().mean()) * 100
    print(
        f"\nResNet-20 on the digits (16x16, DIGITS recipe, {time.perf_counter() - start:.0f} s); "
        f"test split, {count} images; int8 calibrated on 256 training images"
    )
    print("| model | top-1 % |")
    print("|---|---:|")
    print(f"| float | {float_acc:.2f} |")
    print(f"| int8 | {int8_acc:.2f} |")
    print(f"| int8 - float | {int8_acc - float_acc:+.2f} points |")
    print(f"| top-1 agreement | {agree:.2f} |")


@contextlib.contextmanager
def timer(label: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    print(f"\n({label}: {time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--gpu-size", type=int, default=224)
    parser.add_argument("--gpu-steps", type=int, default=15)
    parser.add_argument(
        "--throughput", action="store_true", help="GPU mode's measurements on any device"
    )
    parser.add_argument("--no-int8", dest="int8", action="store_false")
    parser.add_argument("--nets", default="resnet18,resnet50,resnet56", help="comma-separated")
    parser.add_argument(
        "--accuracy", action="store_true", help="int8 vs float top-1 on a net trained on digits"
    )
    parser.add_argument("--quick", action="store_true", help="small CPU smoke run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    with timer("total"):
        if device.type == "cuda" or args.throughput:
            gpu_rows(args, device)
            return
        if args.accuracy:
            accuracy_rows()
            return
        known = {"resnet18": (8, 112), "resnet50": (8, 112), "resnet56": (32, 32)}
        nets = [(name, *known[name]) for name in args.nets.split(",")]
        if args.quick:
            nets = [("resnet18", 2, 64), ("resnet56", 4, 32)]
            args.rounds, args.warmup = 3, 1
        print(f"{args.warmup} warm-up + {args.rounds} timed rounds, interleaved, no_grad")
        for name, batch, size in nets:
            cpu_rows(name, batch, size, args)


if __name__ == "__main__":
    main()
