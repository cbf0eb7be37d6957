"""Cross-check resnetlib's pretrained-weights registry and timm interface against the real
timm and torchvision packages, offline (no download: both packages carry their registries).

Checks, each reported as a row (items checked, mismatches, first mismatches):

- ``torchvision``: every torchvision entry's URL, top-1 and crop (``crop_size /
  resize_size``) against ``torchvision.models`` weight enums (its alias is the enum name);
- ``timm cfg``: every timm entry's hub id, input size, crop_pct, interpolation, mean, std,
  first_conv and licence against ``timm.models.get_pretrained_cfg``; timm's ``tv_in1k`` /
  ``tv2_in1k`` URLs against the torchvision entries they alias;
- ``resolve_data_config``: ``timm.data.resolve_data_config(model=resnetlib_model)`` returns
  the model's own ``pretrained_cfg`` (CIFAR and ImageNet nets);
- ``timm weights`` / ``torchvision weights``: a randomly initialised timm / torchvision model's
  state dict loads strictly into the resnetlib model of the same name with the registry's
  layout, and both give the same logits (eval, float32, TF32 off).

It asserts nothing and downloads nothing; it exits 1 when any check has mismatches. Run from
the repository root: ``PYTHONPATH=src python3 benchmarks/check_weights_registry.py``;
``--quick`` checks one model per weights test (a CPU smoke run). About a minute on a
16-core machine without ``--quick`` (it builds every architecture twice, on the CPU).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import torch

import resnetlib as rl
from resnetlib.models import weights as w


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) < 1e-3
    return bool(a == b)


def check_torchvision(tv: Any) -> tuple[int, list[str]]:
    bad, count = [], 0
    for entry in w.WEIGHTS:
        if entry.source != "torchvision":
            continue
        count += 1
        enum = tv.models.get_model_weights(entry.model)
        weights = enum[entry.aliases[0]]
        crop = weights.transforms().crop_size[0] / weights.transforms().resize_size[0]
        acc = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        for what, ours, theirs in (
            ("url", entry.url, weights.url),
            ("top1", entry.top1, acc),
            ("crop_pct", entry.config["crop_pct"], crop),
        ):
            if not _close(ours, theirs):
                bad.append(f"{entry.name} {what}: ours {ours!r}, torchvision {theirs!r}")
    return count, bad


def check_timm_cfgs(timm: Any) -> tuple[int, list[str]]:
    bad, count = [], 0
    for entry in w.WEIGHTS:
        names = [entry.name] if entry.source == "timm" else []
        if entry.source == "torchvision":
            names = [f"{entry.model}.{entry.tag}"]  # timm hosts the same file under the tag
        for name in names:
            cfg = timm.models.get_pretrained_cfg(name)
            if cfg is None:
                bad.append(f"{name}: not in timm")
                continue
            count += 1
            theirs = cfg.to_dict()
            if entry.source == "torchvision":
                pairs = [("url", entry.url, theirs.get("url"))]
            else:
                pairs = [("hf_hub_id", entry.hf_hub_id, theirs.get("hf_hub_id"))]
                pairs += [
                    (key, entry.config[key], theirs.get(key))
                    for key in (
                        "input_size",
                        "crop_pct",
                        "interpolation",
                        "mean",
                        "std",
                        "first_conv",
                        "pool_size",
                    )
                ]
                pairs.append(("license", entry.license, theirs.get("license")))
            bad += [
                f"{name} {key}: ours {ours!r}, timm {value!r}"
                for key, ours, value in pairs
                if not _close(ours, value)
            ]
    return count, bad


def check_resolve(timm: Any) -> tuple[int, list[str]]:
    bad = []
    names = ["resnet20", "resnet56", "preact_resnet110", "resnet18", "resnet50d"]
    for name in names:
        model = rl.create_model(name)
        resolved = timm.data.resolve_data_config(model=model)
        for key in ("input_size", "interpolation", "mean", "std", "crop_pct"):
            if not _close(resolved[key], model.pretrained_cfg[key]):
                bad.append(f"{name} {key}: resolved {resolved[key]!r}")
    return len(names), bad


def _same_logits(theirs: torch.nn.Module, name: str, source: str) -> str | None:
    torch.manual_seed(0)
    ours = rl.create_model(name).eval()
    report = rl.interop.load_weights(ours, theirs.state_dict(), source=source, strict=True)
    if report.reinitialized:
        return f"{name}: head not loaded"
    theirs.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        difference = (ours(x) - theirs(x)).abs().max().item()
    return None if difference < 1e-4 else f"{name}: max |logit difference| {difference:.2e}"


def check_weights(make: Any, names: list[str], source: str) -> tuple[int, list[str]]:
    bad = []
    for name in names:
        problem = _same_logits(make(name), name, source)
        if problem:
            bad.append(problem)
    return len(names), bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one model per weights check")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows: list[tuple[str, int, list[str]]] = []
    try:
        tv = importlib.import_module("torchvision")
    except ImportError:
        tv = None
    try:
        timm = importlib.import_module("timm")
        importlib.import_module("timm.data")
    except ImportError:
        timm = None
    tv_models = sorted({e.model for e in w.WEIGHTS if e.source == "torchvision"})
    timm_models = sorted({e.model for e in w.WEIGHTS if e.source == "timm"})
    if args.quick:
        tv_models, timm_models = tv_models[:1], timm_models[:1]
    if tv is None:
        print("torchvision: not installed, skipped")
    else:
        rows.append(("torchvision", *check_torchvision(tv)))
        rows.append(
            (
                "torchvision weights",
                *check_weights(lambda n: tv.models.get_model(n), tv_models, "torchvision"),
            )
        )
    if timm is None:
        print("timm: not installed, skipped")
    else:
        rows.append(("timm cfg", *check_timm_cfgs(timm)))
        rows.append(("resolve_data_config", *check_resolve(timm)))
        rows.append(
            ("timm weights", *check_weights(lambda n: timm.create_model(n), timm_models, "timm"))
        )
    print("| check | items | mismatches | first mismatches |")
    print("| --- | ---: | ---: | --- |")
    for check, items, bad in rows:
        print(f"| {check} | {items} | {len(bad)} | {'; '.join(bad[:3])} |")
    for check, _, bad in rows:
        for line in bad[3:]:
            print(f"  {check}: {line}")
    return 1 if any(bad for _, _, bad in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
