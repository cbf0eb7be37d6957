"""How much of resnetlib a user's path walks through, and how big the source is: figures for
a closing note, for a past revision beside the working tree.

For each tree it reports

(a) the resnetlib modules whose functions run (distinct modules, distinct functions, calls;
    module bodies run by imports are not counted) during

    (i)  ``resnetlib.create_model("resnet56", pretrained=True)``, and
    (ii) ``resnetlib train resnet20 --data digits --iterations 2 --out TMP --device cpu
         --no-progress`` (``resnetlib.cli.main``; the flags both revisions take),

    collected with ``sys.setprofile`` (and ``threading.setprofile``) from the code objects'
    file names under the package directory, after ``import resnetlib`` (and
    ``import resnetlib.cli``) has run;
(b) the five longest functions of src/ (``end_lineno - lineno + 1`` of each ``def``, by
    ``ast``; a nested function counts on its own and inside its parent);
(c) the lines of src/**/*.py (as ``wc -l`` counts them);
(d) with ``--collect``: the median of 3 wall times of ``python -m pytest --collect-only -q``
    (slow: a minute or more each).

Pretrained weights without network, as tests/test_pretrained.py does it: the real
resnet56 file (akamaster's) cannot be had offline, and no other file matches its registered
hash, so the script writes akamaster-layout ResNet-56 weights (random, from
tests/akamaster_reference.py, saved as their trainer saves them) into a fresh torch.hub
cache (``TORCH_HOME``) as ``resnet56-<sha256 prefix>.th``, and the measuring process, before
tracing, registers the default resnet56 entry again with that file's URL and hash prefix
(``sha256=None``), as the tests' ``fake_entry`` and ``register`` do. The download function
raises, so a miss would fail; the loaded weights are compared with the file's. So the walk
is the real one (cache lookup, checksum, key conversion, loading) on a stand-in file.

``--before REV`` measures ``REV`` too, from a temporary ``git worktree add --detach`` (removed
afterwards); every measurement runs in a fresh interpreter with ``PYTHONPATH`` set to that
tree's src. Run from the repository root::

    PYTHONPATH=src python benchmarks/walk.py --before 066e8bf [--collect] [--details]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "resnet56"
TRAIN_ARGV = ["train", "resnet20", "--data", "digits", "--iterations", "2"]
TRAIN_ARGV += ["--device", "cpu", "--no-progress"]


# -- the measuring process (run as: walk.py --child create|train ...) ------------------------


def _trace(package: Path, run: Any) -> dict[str, Any]:
    """Call ``run()`` under a profiler; the package's functions it calls, by module."""
    import threading

    calls: Counter[tuple[str, int, str]] = Counter()
    ours: dict[Any, bool] = {}
    prefix = str(package) + os.sep

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        mine = ours.get(code)
        if mine is None:
            mine = ours[code] = code.co_filename.startswith(prefix) and code.co_name != "<module>"
        if mine:
            name = getattr(code, "co_qualname", code.co_name)
            calls[(code.co_filename, code.co_firstlineno, name)] += 1

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    by_module: dict[str, dict[str, int]] = {}
    for (filename, _, name), count in calls.items():
        parts = list(Path(filename).relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        functions = by_module.setdefault(".".join(parts), {})
        functions[name] = functions.get(name, 0) + count
    return by_module


def _child(task: str, expected_src: Path, weights: Path | None, out: Path) -> None:
    import resnetlib

    package = Path(resnetlib.__file__).resolve().parent
    if package.parent != expected_src.resolve():
        raise SystemExit(f"imported {package}, not the tree under {expected_src}")
    if task == "create":
        assert weights is not None
        run = _pretrained_setup(weights)
    else:
        import resnetlib.cli

        def run() -> None:
            try:
                code = resnetlib.cli.main([*TRAIN_ARGV, "--out", str(out.parent / "run")])
            except SystemExit as exit_info:
                code = exit_info.code  # type: ignore[assignment]
            if code != 0:
                raise SystemExit(f"resnetlib {' '.join(TRAIN_ARGV)} exited with {code}")

    out.write_text(json.dumps(_trace(package, run)))


def _pretrained_setup(weights: Path) -> Any:
    """Register the default resnet56 weights again for ``weights`` (in torch.hub's cache), with
    no network; the call to trace, which checks that the file's weights were loaded."""
    import dataclasses

    import torch

    import resnetlib
    from resnetlib.models import weights as w

    def offline(url: str, *args: Any, **kwargs: Any) -> None:
        raise OSError(f"walk.py is offline: {url}")

    torch.hub.download_url_to_file = offline
    default = w.default_weights(MODEL)
    fake = dataclasses.replace(
        default,
        url=f"https://example.invalid/models/{weights.name}",
        hash_prefix=weights.stem.rsplit("-", 1)[1],
        sha256=None,
    )
    tags = {tag: fake if entry is default else entry for tag, entry in w._BY_MODEL[MODEL].items()}
    w._BY_MODEL[MODEL] = tags
    expected = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]

    def run() -> None:
        model = resnetlib.create_model(MODEL, pretrained=True)
        got = model.state_dict()
        first = next(key for key in got if key.endswith("conv1.weight"))
        if not torch.equal(got[first], expected["module.conv1.weight"]):
            raise SystemExit("create_model did not load the stand-in weights")

    return run


# -- the driver ---------------------------------------------------------------------------


def _stand_in_weights(folder: Path) -> Path:
    """akamaster-layout ResNet-56 weights named as the publisher names files."""
    import hashlib

    import torch

    sys.path.insert(0, str(ROOT))
    from tests.akamaster_reference import AkamasterResNet, released_checkpoint

    torch.manual_seed(0)
    draft = folder / f"{MODEL}.th"
    torch.save(released_checkpoint(AkamasterResNet(9)), draft)
    prefix = hashlib.sha256(draft.read_bytes()).hexdigest()[:8]
    return draft.rename(folder / f"{MODEL}-{prefix}.th")


def _measure(task: str, src: Path, weights: Path) -> dict[str, dict[str, int]]:
    with tempfile.TemporaryDirectory(prefix="walk-") as tmp:
        home = Path(tmp) / "torch"
        cached = home / "hub" / "checkpoints" / weights.name
        cached.parent.mkdir(parents=True)
        shutil.copyfile(weights, cached)
        out = Path(tmp) / "walk.json"
        env = {**os.environ, "PYTHONPATH": str(src), "TORCH_HOME": str(home)}
        env.pop("RESNETLIB_DEBUG", None)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", task]
        command += ["--src", str(src), "--weights", str(cached), "--result", str(out)]
        done = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"measuring {task} in {src} failed:\n{done.stderr}")
        result: dict[str, dict[str, int]] = json.loads(out.read_text())
        return result


def _longest_functions(src: Path, top: int = 5) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for path in sorted(src.rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        for node, qualname in _functions(tree.body, ""):
            assert node.end_lineno is not None
            found.append((node.end_lineno - node.lineno + 1, f"{module}.{qualname}"))
    found.sort(key=lambda item: (-item[0], item[1]))
    return found[:top]


FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[FunctionNode, str]]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node, prefix + node.name
            yield from _functions(node.body, f"{prefix}{node.name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    inner = child.body if isinstance(child, ast.ExceptHandler) else [child]
                    yield from _functions(inner, prefix)


def _source_lines(src: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in src.rglob("*.py"))


def _collect_seconds(root: Path, rounds: int = 3) -> float:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
            cwd=root,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def _worktree(revision: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="walk-before-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), revision],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False
            )


def _report(root: Path, weights: Path, collect: bool) -> dict[str, Any]:
    src = root / "src"
    figures: dict[str, Any] = {"walks": {}}
    for task in ("create", "train"):
        figures["walks"][task] = _measure(task, src, weights)
    figures["longest"] = _longest_functions(src)
    figures["lines"] = _source_lines(src)
    figures["collect"] = _collect_seconds(root) if collect else None
    return figures


def _walk_cells(walk: dict[str, dict[str, int]]) -> tuple[str, str, str]:
    functions = sum(len(names) for names in walk.values())
    calls = sum(sum(names.values()) for names in walk.values())
    return str(len(walk)), str(functions), f"{calls:,}"


def _table(columns: dict[str, dict[str, Any]], details: bool) -> str:
    labels = list(columns)
    rows: list[tuple[str, list[str]]] = []
    titles = {
        "create": f'create_model("{MODEL}", pretrained=True)',
        "train": f"resnetlib {' '.join(TRAIN_ARGV[:2])} (2 iterations, digits)",
    }
    for task, title in titles.items():
        walks = [_walk_cells(columns[label]["walks"][task]) for label in labels]
        for index, what in enumerate(("modules", "functions", "calls")):
            rows.append((f"{title}: {what}", [c[index] for c in walks]))
    rows.append(("lines of src/**/*.py", [f"{columns[label]['lines']:,}" for label in labels]))
    for rank in range(5):
        cells = []
        for label in labels:
            longest = columns[label]["longest"]
            cells.append(f"{longest[rank][0]} `{longest[rank][1]}`" if rank < len(longest) else "")
        rows.append((f"longest function #{rank + 1} (lines)", cells))
    if any(columns[label]["collect"] is not None for label in labels):
        rows.append(
            (
                "pytest --collect-only (s, median of 3)",
                [f"{columns[label]['collect']:.1f}" for label in labels],
            )
        )
    lines = [f"| | {' | '.join(labels)} |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {name} | {' | '.join(cells)} |" for name, cells in rows]
    if details:
        for task, title in titles.items():
            lines += ["", f"Modules walked by {title} (functions, calls):", ""]
            modules = sorted({m for label in labels for m in columns[label]["walks"][task]})
            lines += [f"| module | {' | '.join(labels)} |", "|---" * (len(labels) + 1) + "|"]
            for module in modules:
                cells = []
                for label in labels:
                    names = columns[label]["walks"][task].get(module)
                    cells.append(f"{len(names)}, {sum(names.values()):,}" if names else "-")
                lines.append(f"| `{module}` | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--before", metavar="REV", help="also measure this revision")
    parser.add_argument("--collect", action="store_true", help="also time pytest collection")
    parser.add_argument("--details", action="store_true", help="list the modules walked")
    parser.add_argument("--child", choices=("create", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.src, args.weights, args.result)
        return 0
    columns: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="walk-weights-") as tmp:
        weights = _stand_in_weights(Path(tmp))
        if args.before:
            with _worktree(args.before) as tree:
                columns[args.before] = _report(tree, weights, args.collect)
        columns["working tree"] = _report(ROOT, weights, args.collect)
    print(_table(columns, args.details))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
