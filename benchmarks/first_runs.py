"""Issue 25's frictions, before and after: the first runs a user makes, on two source trees.

For each friction the issue lists, the same ``resnetlib`` command runs against a "before" and
an "after" source tree (each in a subprocess, ``PYTHONPATH=<tree>``, 120 s at most, inside one
temporary directory), and the script prints a markdown table: friction | command | before |
after, each cell the output line that shows the friction (or the exit status), trimmed.

The data it needs it writes itself, with seeded random pixels: a CIFAR-10-format directory
(``cifar-10-batches-py``: 1,000 training images in five batches, 200 test images; under the
paper recipe's 5,000 held-out images), a TinyImageNet-200 layout (4 WordNet ids, 64x64
JPEGs), and an image folder of dark 32x32 PNGs (``train/``, ``val/``; a copy with
``valid/``). Weights come from a 2-iteration run each tree trains on that CIFAR directory
(no download: ``--pretrained`` commands fail at the download here, which is the point of
showing them). Each tree gets its own run directories and caches (``RESNETLIB_CACHE_DIR``,
``TORCH_HOME``).

Run it from the repository root, with a worktree of the "before" revision beside it::

    git worktree add --detach /work/wt-before 8d4a48a
    PYTHONPATH=src python benchmarks/first_runs.py --before /work/wt-before/src \\
        --after /work/main/src

About 10 minutes on 2 cores. ``--keep DIR`` keeps the runs and data in DIR; ``--out FILE``
also writes the table there. It asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

TIMEOUT = 120  # seconds, each command
WIDTH = 120  # characters, each cell


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def write_cifar10(root: Path, train: int = 1000, test: int = 200) -> Path:
    """A ``cifar-10-batches-py`` directory as the published one is pickled: dicts with bytes
    keys, ``b"data"`` a uint8 N x 3072 array, ``b"labels"`` a list of ints."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    meta = {b"label_names": names, b"num_cases_per_batch": train // 5, b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    files = [(f"data_batch_{i}", train // 5) for i in range(1, 6)] + [("test_batch", test)]
    for name, n in files:
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def _image(rng: np.random.Generator, size: int, high: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, high, (size, size, 3), dtype=np.uint8))


def write_tinyimagenet(root: Path, per_class: int = 40, val_per_class: int = 4) -> Path:
    """TinyImageNet-200's layout with 4 classes: wnids.txt, words.txt,
    train/<wnid>/images/*.JPEG, val/images/*.JPEG with val/val_annotations.txt."""
    rng = np.random.default_rng(1)
    wnids = [f"n0000000{i}" for i in range(1, 5)]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
    lines = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(per_class):
            _image(rng, 64, 256).save(folder / f"{wnid}_{i}.JPEG", "JPEG")
        for i in range(val_per_class):
            name = f"val_{wnid}_{i}.JPEG"
            _image(rng, 64, 256).save(root / "val" / "images" / name, "JPEG")
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def write_folder(root: Path, held_out: str, per_class: int = 80) -> Path:
    """An image folder, ``train/<class>/*.png`` and ``<held_out>/<class>/*.png``, of dark
    32x32 images (pixels 0..99: mean about 0.19, std about 0.11, far from ImageNet's)."""
    rng = np.random.default_rng(2)
    for split, n in (("train", per_class), (held_out, per_class // 8)):
        for name in ("left", "right"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                _image(rng, 32, 100).save(folder / f"{i}.png")
    return root


# --------------------------------------------------------------------------------------
# Running a command against a tree
# --------------------------------------------------------------------------------------


@dataclass
class Result:
    code: int | None  # None: timed out (killed)
    output: str  # stdout and stderr as they interleaved
    seconds: float


class Tree:
    """One source tree, its own working directory and caches."""

    def __init__(self, label: str, src: Path, work: Path) -> None:
        self.label, self.src, self.work = label, src, work
        self.count = 0
        (work / "logs").mkdir(parents=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(src),
            "PYTHONUNBUFFERED": "1",
            "RESNETLIB_CACHE_DIR": str(work / "cache"),
            "TORCH_HOME": str(work / "torch"),
            "HF_HOME": str(work / "hf"),
        }

    def run(self, *args: str, stop_at: str | None = None) -> Result:
        """``python -m resnetlib ARGS`` (or ``python -c`` when args[0] is ``-c``), in the
        tree's directory; with ``stop_at``, Ctrl-C once the output matches it."""
        command = [sys.executable, *(args if args[0] == "-c" else ("-m", "resnetlib", *args))]
        start = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(process.stdout.read1, b"")))
        reader.start()
        interrupted = timed_out = False
        while process.poll() is None:
            if time.monotonic() - start > TIMEOUT:
                process.kill()
                timed_out = True
                break
            if stop_at and not interrupted and re.search(stop_at, b"".join(chunks).decode()):
                process.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.05)
        process.wait()
        reader.join()
        output = b"".join(chunks).decode(errors="replace")
        code = None if timed_out else process.returncode
        self.count += 1
        log = self.work / "logs" / f"{self.count:02d}-{args[0].lstrip('-')}.txt"
        log.write_text(f"$ {' '.join(args)}\nexit {code}\n{output}")
        return Result(code, output, time.monotonic() - start)


# --------------------------------------------------------------------------------------
# What a cell shows
# --------------------------------------------------------------------------------------


def lines(output: str) -> list[str]:
    """The output's lines, progress-bar redraws (\\r) split apart, blank ones dropped."""
    return [s.strip() for s in re.split(r"[\r\n]+", output) if s.strip()]


def status(result: Result) -> str:
    if result.code is None:
        return f"timed out after {TIMEOUT} s"
    if result.code == 0:
        return f"exit 0 ({result.seconds:.0f} s)"
    error = [s for s in lines(result.output) if "error" in s.lower()] or lines(result.output)
    return f"exit {result.code}: {error[-1] if error else '(no output)'}"


def first(result: Result, pattern: str) -> str:
    """The first line matching ``pattern``, else the exit status."""
    found = [s for s in lines(result.output) if re.search(pattern, s)]
    return found[0] if found else status(result)


STARTUP = r"parameters\) on "  # the start-up line: "ResNet-20 (269,722 parameters) on ..."
LENGTH = r"[\d,]+ in all \([^)]*\)"  # "4 in all (the paper's CIFAR recipe, batch 128; ...)"
SPLIT = r"[\d,]+ train[^;]*? images"  # "900 train / 100 val / 200 test images"


def grab(line: str, *patterns: str, missing: str | None = None) -> str:
    """What each pattern matches in ``line``, joined by " … "; ``missing`` (else the whole
    line: an error or exit status) where none matches."""
    found = [m.group(0) for p in patterns if (m := re.search(p, line))]
    return " … ".join(found) or (line if missing is None else missing)


def cell(text: str, width: int | None = WIDTH) -> str:
    text = " ".join(text.split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("|", "\\|") or "(nothing)"


def recorded(path: Path, *keys: str) -> str:
    """``key=value`` for each key of a JSON file (searched at any depth), or why not."""
    if not path.is_file():
        return f"no {path.name}"
    data = json.loads(path.read_text())

    def find(value: object, key: str) -> object:
        if isinstance(value, dict):
            if key in value:
                return value[key]
            for inner in value.values():
                found = find(inner, key)
                if found is not None:
                    return found
        return None

    def show(value: object) -> str:
        if isinstance(value, list) and all(isinstance(v, float) for v in value):
            return "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
        return json.dumps(value)

    return f"{path.name}: " + ", ".join(f"{k}={show(find(data, k))}" for k in keys)


def digest(path: Path) -> tuple[str, float]:
    """A file's sha256 (10 digits) and modification time."""
    if not path.is_file():
        return "missing", 0.0
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10], path.stat().st_mtime


def learning_rates(path: Path) -> str:
    """The lr of each row of a run's steps.csv."""
    if not path.is_file():
        return f"no {path.name}"
    rows = path.read_text().splitlines()
    column = rows[0].split(",").index("lr")
    return f"{path.name}: lr " + ", ".join(row.split(",")[column] for row in rows[1:])


# --------------------------------------------------------------------------------------
# The frictions
# --------------------------------------------------------------------------------------

CIFAR, TINY, FOLDER, VALID = "cifar-10-batches-py", "tiny", "folder", "folder-valid"
CKPT = "base/final.pt"
STATS = (
    "from resnetlib.core.data_config import CIFAR10_MEAN, CIFAR10_STD; "
    "print('mean', [round(v, 4) for v in CIFAR10_MEAN], 'std', [round(v, 4) for v in CIFAR10_STD])"
)
METADATA = "import onnx; print(sorted(p.key for p in onnx.load('plain.onnx').metadata_props))"

# (key, friction, command as shown); cells() fills one column per tree, keyed the same.
ROWS: list[tuple[str, str, str]] = [
    (
        "setup",
        "setup: the weights",
        f"train resnet20 --data {CIFAR} --iterations 2 --val-size 0 --batch-size 32 --out base",
    ),
    ("1a", "1. --pretrained swallows a word", "predict resnet20 --pretrained a.png b.png"),
    ("1b", "1. --pretrained swallows a word", f"evaluate --pretrained resnet20 --data {CIFAR}"),
    ("1c", "1. --checkpoint alone", f"export --checkpoint {CKPT} --format onnx --out x.onnx"),
    (
        "2a",
        "2. short run, scaled recipe",
        f"train resnet20 --data {CIFAR} --iterations 4 --val-size 100 --out short (start-up line)",
    ),
    ("2b", "2. short run, scaled recipe", "short/recipe.json"),
    ("2c", "2. short run, scaled recipe", "short/steps.csv: the lr at each iteration it logs"),
    ("3a", "3. small data", f"train resnet20 --data {CIFAR} --iterations 2 --out small"),
    ("3b", "3. small data", f"train resnet20 --data {CIFAR} --iterations 2 --val-size 0 --out all"),
    (
        "4a",
        "4. fine-tune recipe",
        f"train resnet20 --checkpoint {CKPT} --classes 0,1,2,3,4 "
        f"--num-classes 5 --freeze 1 --lr 0.01 --data {CIFAR} --out ft (docs' command)",
    ),
    (
        "4b",
        "4. fine-tune recipe",
        "the same with --val-size 50, its length (Ctrl-C after the start-up line)",
    ),
    ("5a", "5. statistics", "python -c 'print(CIFAR10_MEAN, CIFAR10_STD)'"),
    (
        "5b",
        "5. statistics",
        f"train resnet20 --data {FOLDER} --iterations 1 --val-size 0 "
        "--batch-size 32 --out fold: run.json mean/std (pixels: mean ~0.19, std ~0.11)",
    ),
    (
        "5c",
        "5. statistics",
        "8a's tiny-run/run.json mean/std (random JPEG pixels: mean ~0.50)",
    ),
    ("6a", "6. progress line", "2a's output before its start-up line"),
    ("6b", "6. progress line", "2a's first progress bar after iteration 1"),
    (
        "6c",
        "6. progress line",
        f"train resnet20 --data {CIFAR} --iterations 6 --val-size 100 "
        "--batch-size 32 --out intr, Ctrl-C after an iteration; then "
        "train --out intr --resume: its first two lines",
    ),
    ("6d", "6. progress line", "train --out intr --resume once more (a finished run)"),
    ("6e", "6. progress line", "intr/final.pt before and after 6d (sha256, mtime)"),
    (
        "7a",
        "7. exports carry the contract",
        f"export {CKPT} --format onnx --out plain.onnx; python -c 'onnx metadata_props keys'",
    ),
    ("7b", "7. exports carry the contract", f"evaluate plain.onnx --data {CIFAR}"),
    (
        "7c",
        "7. exports carry the contract",
        f"export {CKPT} --format onnx --int8 --normalize "
        f"--calibrate {CIFAR} --calibration-size 32 --out int8.onnx",
    ),
    ("7d", "7. exports carry the contract", f"evaluate int8.onnx --data {CIFAR}"),
    (
        "8a",
        "8. TinyImageNet",
        f"train resnet18 --data {TINY} --iterations 1 --val-size 0 "
        "--batch-size 32 --out tiny-run (start-up line)",
    ),
    ("8b", "8. TinyImageNet", "tiny-run/run.json, spec.json, recipe.json"),
    (
        "8c",
        "8. TinyImageNet",
        f"train resnet20 --data {VALID} --iterations 1 --val-size 0 "
        "--batch-size 32 --out valid-run (train/ and valid/ only)",
    ),
    ("9a", "9. speed", "2a's start-up line: a bf16 hint"),
    ("9b", "9. speed", "short/recipe.json: channels_last as run"),
]


def cells(tree: Tree, log: Callable[[str], None]) -> dict[str, str]:
    """Run every command against ``tree``; one cell per row key."""
    w = tree.work
    out: dict[str, str] = {}

    def step(key: str, result: Result, text: str, width: int = WIDTH) -> None:
        out[key] = cell(text, width)
        log(f"  {tree.label} {key}: {result.seconds:.0f} s, exit {result.code}")

    r = tree.run(*ROWS[0][2].split())
    step("setup", r, status(r))
    ckpt = str(w / CKPT)

    r = tree.run("predict", "resnet20", "--pretrained", "a.png", "b.png")
    step("1a", r, status(r))
    r = tree.run("evaluate", "--pretrained", "resnet20", "--data", CIFAR)
    step("1b", r, status(r))
    r = tree.run("export", "--checkpoint", ckpt, "--format", "onnx", "--out", "x.onnx")
    step("1c", r, status(r) + ("; x.onnx written" if (w / "x.onnx").is_file() else ""))

    short = tree.run(
        "train", "resnet20", "--data", CIFAR, "--iterations", "4", "--val-size", "100",
        "--out", "short",
    )  # fmt: skip
    startup = first(short, STARTUP)
    step("2a", short, grab(startup, LENGTH))
    step("2b", short, recorded(w / "short" / "recipe.json", "iterations", "epochs", "milestones"))
    out["2c"] = cell(learning_rates(w / "short" / "steps.csv"))

    r = tree.run("train", "resnet20", "--data", CIFAR, "--iterations", "2", "--out", "small")
    step("3a", r, grab(first(r, STARTUP), SPLIT))
    r = tree.run(
        "train", "resnet20", "--data", CIFAR, "--iterations", "2", "--val-size", "0",
        "--out", "all",
    )  # fmt: skip
    step("3b", r, grab(first(r, STARTUP), SPLIT))

    finetune = ["train", "resnet20", "--checkpoint", ckpt, "--classes", "0,1,2,3,4"]
    finetune += ["--num-classes", "5", "--freeze", "1", "--lr", "0.01", "--data", CIFAR]
    r = tree.run(*finetune, "--out", "ft")
    length = grab(first(r, STARTUP), SPLIT, LENGTH)
    step("4a", r, f"{status(r)}: {length}" if r.code == 0 else status(r))
    r = tree.run(*finetune, "--val-size", "50", "--out", "ft50", stop_at=STARTUP)
    step("4b", r, grab(first(r, STARTUP), LENGTH))

    r = tree.run("-c", STATS)
    step("5a", r, first(r, r"^mean"))
    r = tree.run(
        "train", "resnet20", "--data", FOLDER, "--iterations", "1", "--val-size", "0",
        "--batch-size", "32", "--out", "fold",
    )  # fmt: skip
    step("5b", r, recorded(w / "fold" / "run.json", "mean", "std") if r.code == 0 else status(r))

    before_startup = short.output.split(startup)[0] if startup in short.output else ""
    out["6a"] = cell(" ".join(lines(before_startup)) or "(nothing)")
    bars = [s for s in lines(short.output) if re.search(r"\b1/4\b", s)]
    out["6b"] = cell(bars[0] if bars else "(no 1/4 bar)")
    r = tree.run(
        "train", "resnet20", "--data", CIFAR, "--iterations", "6", "--val-size", "100",
        "--batch-size", "32", "--out", "intr", stop_at=r"\b[1-5]/6\b",
    )  # fmt: skip
    interrupted = first(r, r"interrupted")
    r = tree.run("train", "--out", "intr", "--resume")
    resumed = [*lines(r.output), status(r), ""][:2]
    step("6c", r, f"Ctrl-C: {interrupted} → resume: {resumed[0]} / {resumed[1]}", 2 * WIDTH)
    final = w / "intr" / "final.pt"
    old_hash, old_time = digest(final)
    r = tree.run("train", "--out", "intr", "--resume")
    bars = r.output.count("100%|")
    said = (lines(r.output) or [status(r)])[0]
    step("6d", r, f"{status(r)}; a 100% bar drawn {bars} times; first line: {said}", 2 * WIDTH)
    new_hash, new_time = digest(final)
    same = "unchanged" if (old_hash, old_time) == (new_hash, new_time) else "REWRITTEN"
    moved = new_time - old_time
    out["6e"] = cell(f"{same}: sha256 {old_hash} → {new_hash}, mtime {moved:+.2f} s")

    r = tree.run("export", ckpt, "--format", "onnx", "--out", "plain.onnx")
    if r.code == 0:
        r = tree.run("-c", METADATA)
        step("7a", r, first(r, r"^\[").replace("'", ""), 2 * WIDTH)
    else:
        step("7a", r, status(r))
    r = tree.run("evaluate", "plain.onnx", "--data", CIFAR)
    step("7b", r, first(r, r"top-1|accuracy") if r.code == 0 else status(r))
    r = tree.run(
        "export", ckpt, "--format", "onnx", "--int8", "--normalize", "--calibrate", CIFAR,
        "--calibration-size", "32", "--out", "int8.onnx",
    )  # fmt: skip
    step("7c", r, status(r) + ("; int8.onnx written" if (w / "int8.onnx").is_file() else ""))
    if (w / "int8.onnx").is_file():
        r = tree.run("evaluate", "int8.onnx", "--data", CIFAR)
        step("7d", r, first(r, r"top-1|accuracy") if r.code == 0 else status(r))
    else:
        out["7d"] = "not run: no int8.onnx (7c failed)"

    r = tree.run(
        "train", "resnet18", "--data", TINY, "--iterations", "1", "--val-size", "0",
        "--batch-size", "32", "--out", "tiny-run",
    )  # fmt: skip
    step("8a", r, grab(first(r, STARTUP), r"[\d,]+ parameters", r"3x\d+x\d+", LENGTH))
    spec = recorded(w / "tiny-run" / "spec.json", "stem")
    name = recorded(w / "tiny-run" / "run.json", "recipe_name")
    recipe = recorded(w / "tiny-run" / "recipe.json", "lr", "schedule", "milestones", "augment")
    out["8b"] = cell(f"{name}; {spec}; {recipe}", 2 * WIDTH)
    out["5c"] = cell(recorded(w / "tiny-run" / "run.json", "mean", "std"))
    r = tree.run(
        "train", "resnet20", "--data", VALID, "--iterations", "1", "--val-size", "0",
        "--batch-size", "32", "--out", "valid-run",
    )  # fmt: skip
    step("8c", r, grab(first(r, STARTUP), SPLIT))

    out["9a"] = cell(grab(startup, r"this CPU runs bf16[^;]*", missing="(no bf16 hint)"))
    out["9b"] = cell(recorded(w / "short" / "recipe.json", "channels_last"))
    return out


def revision(src: Path) -> str:
    """The git commit a source tree is at, and whether its files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "not a git checkout"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return f"{commit}{' + uncommitted changes' if changed else ''}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the before tree's src/")
    parser.add_argument("--after", type=Path, required=True, help="the after tree's src/")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it")
    args = parser.parse_args(argv)

    revisions = {"before": revision(args.before), "after": revision(args.after)}
    root = Path(tempfile.mkdtemp(prefix="first_runs-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        data = root / "data"
        write_cifar10(data / CIFAR)
        write_tinyimagenet(data / TINY)
        write_folder(data / FOLDER, "val")
        write_folder(data / VALID, "valid")
        rng = np.random.default_rng(3)
        for name in ("a.png", "b.png"):
            _image(rng, 32, 256).save(data / name)
        columns = {}
        for label, src in (("before", args.before), ("after", args.after)):
            tree = Tree(label, src.resolve(), root / label)
            for item in data.iterdir():
                (tree.work / item.name).symlink_to(item)
            print(f"{label}: {src}", file=sys.stderr)
            columns[label] = cells(tree, lambda s: print(s, file=sys.stderr))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    table = [
        f"Before: `{args.before}` ({revisions['before']}); after: `{args.after}` "
        f"({revisions['after']}). Each command: `PYTHONPATH=<tree> python -m resnetlib ...` "
        "in a temporary directory with the data written by benchmarks/first_runs.py.",
        "",
        "| friction | command | before | after |",
        "|---|---|---|---|",
    ]
    for key, friction, command in ROWS:
        before, after = columns["before"][key], columns["after"][key]
        table.append(f"| {friction} | `{cell(command, None)}` | {before} | {after} |")
    text = "\n".join(table) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
