"""Issue 24's hostile and careless-user cases against the CLI and library, for a revision
before the fix beside the working tree: what each one does, with its time and peak memory.

Each case builds its files in a fresh temporary directory the way an attacker or a careless
user would (a run.json naming a module that writes a marker file when imported, a ``.lock``
symlink to a victim file, a 741-byte self-referencing batches.meta, a FIFO as recipe.json,
a 3,000,000x1 PNG, a checkpoint whose data config says std 1e-300, ...) and runs the
command in a fresh interpreter: ``python -P -m resnetlib ...`` (``-P``: the working
directory is not put on ``sys.path``, as with the installed ``resnetlib`` script) with
``PYTHONPATH`` set to the ``--src`` tree, ``RESNETLIB_CACHE_DIR`` and ``TORCH_HOME`` inside
the case's directory, no GPU, under a wall-clock limit (``--timeout``: "hangs") and an
address-space limit (``RLIMIT_AS``, ``--memory-gib``: a MemoryError or an allocation
failure is "memory"). Time is wall time; peak MB is the child's ``ru_maxrss`` (``wait4``).

Outcomes, checked in this order: "code ran" (the marker file exists), "file destroyed" (a
victim file's bytes changed), "hangs", "memory", "traceback", "exit 130 with resume line",
"silently wrong: ..." (exit 0 but wrong: NaN printed, restarted from 0, 8- and 16-bit
predictions differ, a control character printed raw, the paper's column for another data
set, ...), "one-line error (exit 2)" (or "one-line error, another cause" when the message
does not name what the case broke), "correct result", else the exit status. Each case
names the outcomes it should end in (marked ✓ in the table); the details below the table
give the last line each command wrote.
The fixtures (a 4-iteration resnet20 run on the built-in digits, a 2-iteration table6 run
on a tiny CIFAR-10 folder) are made once per tree by that tree and copied into each case.

Run from the repository root (about 4 minutes per tree on 2 CPU cores; a case that hangs
waits out ``--timeout``)::

    python benchmarks/hostile_cases.py --before /tmp/base/src --after src
    python benchmarks/hostile_cases.py --src src --only predict
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []  # 3.10 has no -P: cwd on sys.path
GOOD_ERROR = "one-line error (exit 2)"
CORRECT = "correct result"
RESUMED = "exit 130 with resume line"
MEMORY_SIGNS = (
    "MemoryError",
    "can't allocate memory",
    "Unable to allocate",
    "Cannot allocate memory",
    "std::bad_alloc",
    "out of memory",
)
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR10_NAMES += ["dog", "frog", "horse", "ship", "truck"]
TABLE6_ARGS = ["--models", "resnet20", "--seeds", "1", "--iterations", "2", "--val-size", "0"]
TABLE6_ARGS += ["--batch-size", "8", "--device", "cpu", "--no-progress"]
RESUME = "train --out run --resume --no-progress"
TRAIN_1 = "train resnet20 --iterations 1 --val-size 0 --device cpu --no-progress"  # + --data, --out


# -- running one command --------------------------------------------------------------------


@dataclass
class Proc:
    """What a child process did."""

    argv: list[str]
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    peak_mb: float = 0.0
    timed_out: bool = False
    line_times: list[float] = field(default_factory=list)  # when each stdout line came

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        lines = lines or [line for line in self.stdout.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _pump(stream: Any, chunks: list[str], start: float, times: list[float]) -> None:
    for line in iter(stream.readline, ""):
        times.append(time.perf_counter() - start)
        chunks.append(line)
    stream.close()


def run_child(
    argv: list[str],
    *,
    src: Path,
    cwd: Path,
    timeout: float,
    memory: int,
    interrupt_on: str | None = None,
    interrupt_after: float = 0.0,
) -> Proc:
    """Run ``argv`` in a new session under ``timeout`` seconds and ``memory`` bytes of address
    space; with ``interrupt_on``, send SIGINT to its group (as a terminal's Ctrl-C does)
    ``interrupt_after`` seconds after that text first appears in its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNETLIB_")}
    env.update(
        PYTHONPATH=str(src),
        PYTHONDONTWRITEBYTECODE="1",  # the trees measured stay as they are
        RESNETLIB_CACHE_DIR=str(cwd / ".cache"),
        TORCH_HOME=str(cwd / ".torch"),
        CUDA_VISIBLE_DEVICES="",
        MALLOC_ARENA_MAX="2",  # threads' malloc arenas map 64 MB each
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    proc = Proc(argv)
    start = time.perf_counter()
    child = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="backslashreplace",
        preexec_fn=limit,
        start_new_session=True,
    )
    out: list[str] = []
    err: list[str] = []
    pumps = [
        threading.Thread(
            target=_pump, args=(child.stdout, out, start, proc.line_times), daemon=True
        ),
        threading.Thread(target=_pump, args=(child.stderr, err, start, []), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    seen_at: float | None = None
    interrupted = False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter()
        if interrupt_on and not interrupted:
            if seen_at is None and interrupt_on in "".join(out + err):
                seen_at = now
            if seen_at is not None and now - seen_at >= interrupt_after:
                os.killpg(child.pid, signal.SIGINT)
                interrupted = True
        if now - start > timeout:
            proc.timed_out = True
            os.killpg(child.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.02)
    proc.seconds = time.perf_counter() - start
    child.returncode = proc.rc = os.waitstatus_to_exitcode(status)
    for pump in pumps:
        pump.join(5)
    proc.stdout, proc.stderr = "".join(out), "".join(err)
    proc.peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return proc


# -- a case's context: its directory, the tree measured, the fixtures -----------------------


class SetupError(RuntimeError):
    """A fixture or a case's preparation failed: the case cannot be judged."""


@dataclass
class Tree:
    """One revision's src directory and its fixtures (made on first use, by that tree)."""

    src: Path
    work: Path
    timeout: float
    memory: int
    made: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, SetupError] = field(default_factory=dict)

    def python(self, args: list[str], cwd: Path, **options: Any) -> Proc:
        options.setdefault("timeout", self.timeout)
        argv = [sys.executable, *SAFE_PATH, *args]
        return run_child(argv, src=self.src, cwd=cwd, memory=self.memory, **options)

    def fixture(self, name: str, make: Callable[[Tree, Path], None]) -> Path:
        """``make``'s folder, made once (a failure is remembered, not retried)."""
        if name not in self.made:
            place = self.work / "fixtures" / name
            place.mkdir(parents=True)
            try:
                make(self, place)
            except SetupError as error:
                self.failed[name] = error
            self.made[name] = place
        if name in self.failed:
            raise self.failed[name]
        return self.made[name]


def _make_digits_run(tree: Tree, place: Path) -> None:
    args = ["train", "resnet20", "--data", "digits", "--iterations", "4"]
    args += ["--out", "run", "--device", "cpu", "--no-progress"]
    proc = tree.python(["-m", "resnetlib", *args], place, timeout=max(tree.timeout, 300))
    if proc.rc != 0:
        raise SetupError(f"training the digits fixture failed: {proc.last_line()}")


def _make_table6_run(tree: Tree, place: Path) -> None:
    write_cifar10(place / "cifar-10-batches-py")
    args = ["reproduce", "table6", "--data", "cifar-10-batches-py", "--out", "t6", *TABLE6_ARGS]
    proc = tree.python(["-m", "resnetlib", *args], place, timeout=max(tree.timeout, 300))
    if proc.rc != 0:
        raise SetupError(f"the table6 fixture failed: {proc.last_line()}")


@dataclass
class Ctx:
    """What a case works with: its own directory ``tmp`` and the tree measured."""

    tree: Tree
    tmp: Path

    def cli(self, command: str, *args: str, cwd: Path | None = None, **options: Any) -> Proc:
        """``resnetlib COMMAND ARGS`` (``command`` split as a shell would) in ``cwd`` (default:
        the case's directory)."""
        argv = ["-m", "resnetlib", *shlex.split(command), *args]
        return self.tree.python(argv, cwd or self.tmp, **options)

    def code(self, source: str, **options: Any) -> Proc:
        """``python -c SOURCE`` in the case's directory."""
        return self.tree.python(["-c", textwrap.dedent(source)], self.tmp, **options)

    def digits_run(self, name: str = "run") -> Path:
        """A copy of the finished 4-iteration digits run: run.json, state.pt, final.pt..."""
        made = self.tree.fixture("digits", _make_digits_run) / "run"
        return Path(shutil.copytree(made, self.tmp / name, symlinks=True))

    def table6_run(self) -> Path:
        """A copy of the finished table6 output folder (``t6``) and its CIFAR-10 data."""
        made = self.tree.fixture("table6", _make_table6_run)
        shutil.copytree(made, self.tmp, symlinks=True, dirs_exist_ok=True)
        return self.tmp / "t6"


# -- making files as an attacker or a careless user would -----------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def snapshot(*paths: Path) -> dict[Path, str]:
    return {path: sha(path) for path in paths}


def changed(before: dict[Path, str]) -> list[str]:
    return [path.name for path, digest in before.items() if sha(path) != digest]


def edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def photo(path: Path, seed: int = 0, size: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    return png(path, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _pickle(path: Path, batch: dict[str, Any]) -> None:
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(root: Path, per_batch: int = 20) -> Path:
    """cifar-10-batches-py in the published layout (pickles of dicts of arrays)."""
    rng = np.random.default_rng(10)
    root.mkdir(parents=True)
    _pickle(root / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 20})
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(root / name, {"batch_label": name, "data": data, "labels": labels})
    return root


def write_cifar100(root: Path) -> Path:
    """cifar-100-python: meta, train, test with fine and coarse labels."""
    rng = np.random.default_rng(100)
    root.mkdir(parents=True)
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    _pickle(root / "meta", {"fine_label_names": fine, "coarse_label_names": coarse})
    for split, n in (("train", 100), ("test", 20)):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
        }
        _pickle(root / split, batch)
    return root


def write_tinyimagenet(root: Path, annotations: list[str]) -> Path:
    """wnids.txt, train/<wnid>/images/*.png, val/images/*.png, val/val_annotations.txt."""
    wnids = ["n01", "n02", "n03"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for i, wnid in enumerate(wnids):
        for j in range(4):
            photo(root / "train" / wnid / "images" / f"{wnid}_{j}.png", 10 * i + j, 8)
    lines = []
    for k in range(3):
        photo(root / "val" / "images" / f"val_{k}.png", 100 + k, 8)
        lines.append(f"val_{k}.png\t{wnids[k]}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines + annotations) + "\n")
    return root


def _digest(payload: dict[str, Any]) -> str:
    """The checkpoint's ``sha256`` entry as resnetlib computes it (spec, metadata, data
    config, then each tensor's key, dtype, shape and bytes): an editor can recompute it."""
    digest = hashlib.sha256()
    for text in (payload["spec"], payload["metadata"], payload["data_config"]):
        digest.update(text.encode() + b"\0")
    for key, tensor in payload["state_dict"].items():
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def craft_checkpoint(source: Path, target: Path, **config: Any) -> Path:
    """``source`` (a resnetlib checkpoint) with its data config's entries replaced and its
    checksum recomputed: what an edited or downloaded checkpoint can say."""
    import torch

    payload = torch.load(source, map_location="cpu", weights_only=True)
    data_config = json.loads(payload["data_config"])
    data_config.update(config)
    payload["data_config"] = json.dumps(data_config, sort_keys=True)
    payload["sha256"] = _digest(payload)
    torch.save(payload, target)
    return target


def edit_state(path: Path, **entries: Any) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    state.update(entries)
    torch.save(state, path)


def self_referencing_meta(levels: int = 80) -> bytes:
    """A batches.meta whose label_names is a list of two references to a list of two
    references to ... (``levels`` deep): 741 bytes, 2**80 leaves to whoever walks it."""
    body = b"".join(
        b"0(h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"lq" + bytes([k])
        for k in range(1, levels + 1)
    )
    # PROTO 2, EMPTY_DICT, key, EMPTY_LIST BINPUT 0, per level: POP MARK BINGET BINGET
    # LIST BINPUT; SETITEM, STOP
    return b"\x80\x02}U\x0blabel_names]q\x00" + body + b"s."


def control_chars(text: str) -> list[str]:
    """Control characters other than the line ends of ``text``."""
    return sorted({hex(ord(c)) for c in text if (ord(c) < 32 and c != "\n") or ord(c) == 127})


def run_pt2(ctx: Ctx, file: str, shapes: list[tuple[int, ...]]) -> Proc:
    """Load a .pt2 program and run it at each shape: a line ``NxCxHxW ok|nan|fails`` each."""
    return ctx.code(
        f"""
        import torch
        program = torch.export.load({file!r}).module()
        for shape in {shapes!r}:
            try:
                out = program(torch.rand(*shape))
                print(*shape, "nan" if torch.isnan(out).any() else "ok", sep="x")
            except Exception:
                print(*shape, "fails", sep="x")
        """
    )


# -- judging --------------------------------------------------------------------------------


def judge(
    proc: Proc,
    *,
    marker: Path | None = None,
    victims: dict[Path, str] | None = None,
    wrong: Callable[[], str | None] | None = None,
    bound_mb: float | None = None,
) -> str:
    """The outcome of a case whose main command was ``proc`` (see the module docstring)."""
    if marker is not None and marker.exists():
        return "code ran"
    if victims and changed(victims):
        return f"file destroyed ({', '.join(changed(victims))})"
    if proc.timed_out:
        return "hangs"
    if proc.rc == -signal.SIGKILL or any(sign in proc.text for sign in MEMORY_SIGNS):
        return "memory"
    if bound_mb is not None and proc.peak_mb > bound_mb:
        return f"memory ({proc.peak_mb:,.0f} MB, bound {bound_mb:,.0f})"
    if "Traceback (most recent call last)" in proc.stderr:
        return "traceback"
    if proc.rc == 130:
        return RESUMED if "resume" in proc.stderr.lower() else "exit 130, no resume line"
    if proc.rc == 0 and wrong is not None:
        problem = wrong()
        if problem:
            return f"silently wrong: {problem}"
    if proc.rc == 2:
        return GOOD_ERROR if "error: " in proc.last_line() else "exit 2"
    if proc.rc == 0:
        return CORRECT
    return f"exit {proc.rc}"


# -- the registry: each case function registers itself with what it should end in ----------


@dataclass
class Verdict:
    outcome: str
    proc: Proc | None  # the case's main command
    note: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    expected: tuple[str, ...]  # the good outcomes
    run: Callable[[Ctx], Verdict]
    about: str  # a one-line error must match this (regex) to count: not a refusal for another cause


CASES: list[Case] = []
CODE = "code runs, files are destroyed"
COST = "unbounded cost"
WRONG = "silently wrong"
TRACE = "tracebacks"
EITHER = (CORRECT, GOOD_ERROR)


def case(
    name: str, group: str, *expected: str, about: str = ""
) -> Callable[[Callable[[Ctx], Verdict]], Any]:
    """Register the decorated function as a case (expected: a one-line error unless given;
    ``about``: a pattern its message must match, else it is "one-line error, another cause")."""

    def register(run: Callable[[Ctx], Verdict]) -> Callable[[Ctx], Verdict]:
        CASES.append(Case(name, group, expected or (GOOD_ERROR,), run, about))
        return run

    return register


# -- the cases: code runs, files are destroyed ----------------------------------------------


@case("control: crafted checkpoint predicts", "control", CORRECT)
def case_control_crafted_checkpoint_predicts(ctx: Ctx) -> Verdict:
    proc = _predict_with_config(ctx)  # recomputed checksum, data config unchanged
    return Verdict(judge(proc), proc, "checks the checkpoint editing the other cases use")


@case("resume imports run.json's module", CODE, about=r"evil_plugin|import")
def case_resume_imports_run_json(ctx: Ctx) -> Verdict:
    received = ctx.tmp / "received"
    received.mkdir()
    run = ctx.digits_run("received/run")
    marker = ctx.tmp / "MARKER"
    (received / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    edit_json(run / "run.json", lambda d: d["command"]["model"].update(imports=["evil_plugin"]))
    proc = ctx.cli(RESUME, cwd=received)
    return Verdict(judge(proc, marker=marker), proc)


@case(".lock symlinked to a victim", CODE, about=r"\.lock")
def case_lock_symlink(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    victim = ctx.tmp / "notes.txt"
    victim.write_text("a week of notes\n")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    victims = snapshot(victim)
    proc = ctx.cli(RESUME)
    return Verdict(judge(proc, victims=victims), proc)


def _export_onto_input(ctx: Ctx, kind: str) -> Verdict:
    run = ctx.digits_run()
    victims = snapshot(run / "final.pt")
    proc = ctx.cli("export", "run/final.pt", "--format", kind, "--out", "run/final.pt")
    return Verdict(judge(proc, victims=victims), proc)


@case("export model.pt --out model.pt (pt2)", CODE, about=r"final\.pt")
def case_export_onto_input_pt2(ctx: Ctx) -> Verdict:
    return _export_onto_input(ctx, "pt2")


@case("export model.pt --out model.pt (onnx)", CODE, about=r"final\.pt")
def case_export_onto_input_onnx(ctx: Ctx) -> Verdict:
    return _export_onto_input(ctx, "onnx")


@case("state.pt deleted, --resume", CODE, about=r"state\.pt")
def case_resume_state_deleted(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    (run / "state.pt").unlink()
    records = snapshot(run / "last.pt", run / "final.pt", run / "metrics.csv")
    proc = ctx.cli(RESUME)

    def wrong() -> str | None:
        rewritten = changed(records)
        return f"restarted from 0, rewrote {', '.join(rewritten)}" if rewritten else None

    return Verdict(judge(proc, wrong=wrong), proc)


def _resume_edited_iteration(ctx: Ctx, iteration: int) -> Verdict:
    run = ctx.digits_run()
    edit_state(run / "state.pt", iteration=iteration)
    records = snapshot(run / "last.pt", run / "final.pt", run / "metrics.csv")
    proc = ctx.cli(RESUME)

    def wrong() -> str | None:
        rewritten = changed(records)
        if rewritten:
            rows = (run / "metrics.csv").read_text().splitlines()[1:]
            said = ", ".join(row.split(",")[1] for row in rows)
            return f"trained on from {iteration}; metrics.csv rows at iterations {said}"
        return f"accepted iteration {iteration} of a 4-iteration run"

    return Verdict(judge(proc, wrong=wrong), proc)


@case("state.pt iteration 4 -> 2, --resume", CODE, about=r"state\.pt|iteration")
def case_resume_state_iteration_4_to_2(ctx: Ctx) -> Verdict:
    return _resume_edited_iteration(ctx, 2)


@case("state.pt iteration 4 -> 1000, --resume", CODE, about=r"state\.pt|iteration")
def case_resume_state_iteration_4_to_1000(ctx: Ctx) -> Verdict:
    return _resume_edited_iteration(ctx, 1000)


# -- the cases: unbounded cost --------------------------------------------------------------


@case("batches.meta: 80 levels of shared lists", COST, about=r"batches\.meta")
def case_cifar_meta_self_referencing(ctx: Ctx) -> Verdict:
    root = write_cifar10(ctx.tmp / "cifar-10-batches-py")
    (root / "batches.meta").write_bytes(self_referencing_meta())
    proc = ctx.cli(TRAIN_1, "--data", str(root), "--out", "run")
    return Verdict(judge(proc), proc, f"batches.meta {len(self_referencing_meta())} bytes")


@case("recipe.json is a FIFO, --resume", COST, about=r"recipe\.json")
def case_recipe_json_is_a_fifo(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    (run / "recipe.json").unlink()
    os.mkfifo(run / "recipe.json")
    proc = ctx.cli(RESUME)
    return Verdict(judge(proc), proc)


@case("spec.json -> /dev/zero, --resume", COST, about=r"spec\.json")
def case_spec_json_links_to_dev_zero(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    (run / "spec.json").unlink()
    (run / "spec.json").symlink_to("/dev/zero")
    proc = ctx.cli(RESUME)
    return Verdict(judge(proc), proc)


@case("predict a 3,000,000x1 PNG", COST, *EITHER, about=r"wide\.png")
def case_predict_png_3000000x1(ctx: Ctx) -> Verdict:
    ctx.digits_run()
    tall = png(ctx.tmp / "wide.png", np.zeros((1, 3_000_000), dtype=np.uint8))
    proc = ctx.cli("predict", "run/final.pt", "wide.png")
    return Verdict(judge(proc), proc, f"PNG {tall.stat().st_size:,} bytes")


@case("predict 1,000 photos", COST, CORRECT)
def case_predict_1000_photos(ctx: Ctx) -> Verdict:
    # A photo model's case scaled down: the digits ResNet-20 (any input size) with a data
    # config of 64x64 inputs, and 1,000 photos of 64x64.
    run = ctx.digits_run()
    craft_checkpoint(run / "final.pt", ctx.tmp / "model.pt", input_size=[3, 64, 64])
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 224, 64 * 64 * 3).reshape(64, 64, 3)
    for i in range(1000):
        pixels = ramp * (i % 7 + 1) / 7 + rng.integers(0, 32, (64, 64, 3))
        png(ctx.tmp / "photos" / f"{i:04d}.png", pixels.astype(np.uint8))
    proc = ctx.cli("predict", "model.pt", *[f"photos/{i:04d}.png" for i in range(1000)])
    times = proc.line_times
    note = f"{len(times)} lines, from {times[0]:.1f} s to {times[-1]:.1f} s" if times else ""

    def wrong() -> str | None:
        return f"{len(times)} result lines for 1,000 photos" if len(times) != 1000 else None

    outcome = judge(proc, wrong=wrong)
    if outcome == CORRECT and times[-1] - times[0] < 0.1 * times[-1]:
        outcome = f"memory: one batch of 1,000 ({proc.peak_mb:,.0f} MB), no line until the end"
    return Verdict(outcome, proc, note)


def _predict_with_config(ctx: Ctx, **config: Any) -> Proc:
    run = ctx.digits_run()
    craft_checkpoint(run / "final.pt", ctx.tmp / "model.pt", **config)
    photo(ctx.tmp / "cat.png")
    return ctx.cli("predict", "model.pt", "cat.png")


@case("predict: input_size [3, 1e6, 1e6]", COST, about=r"input_size")
def case_predict_input_size_1e6(ctx: Ctx) -> Verdict:
    proc = _predict_with_config(ctx, input_size=[3, 10**6, 10**6])
    return Verdict(judge(proc), proc)


@case("export: input_size [3, 1e6, 1e6]", COST, about=r"input_size")
def case_export_input_size_1e6(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    craft_checkpoint(run / "final.pt", ctx.tmp / "model.pt", input_size=[3, 10**6, 10**6])
    proc = ctx.cli("export", "model.pt", "--format", "pt2", "--out", "model.pt2")
    return Verdict(judge(proc), proc)


@case("predict: crop_pct 1e-9", COST, about=r"crop_pct")
def case_predict_crop_pct_1e_9(ctx: Ctx) -> Verdict:
    proc = _predict_with_config(ctx, crop_pct=1e-9)
    return Verdict(judge(proc), proc)


@case("evaluate: 31 hard links to a 4096^2 PNG", COST, about=r"class")
def case_evaluate_31_hard_links_to_a_large_png(ctx: Ctx) -> Verdict:
    ctx.digits_run()
    big = png(ctx.tmp / "big.png", np.full((4096, 4096, 3), 128, dtype=np.uint8))
    for i in range(31):
        split, label = (
            ("train", "ant") if i < 15 else ("train", "bee") if i < 27 else ("val", "ant")
        )
        place = ctx.tmp / "bugs" / split / label / f"{i}.png"
        place.parent.mkdir(parents=True, exist_ok=True)
        os.link(big, place)
    photo(ctx.tmp / "bugs" / "val" / "bee" / "b.png")
    proc = ctx.cli("evaluate", "run/final.pt", "--data", "bugs", "--device", "cpu")
    cache = sum(f.stat().st_size for f in (ctx.tmp / ".cache").rglob("*") if f.is_file())
    note = f"PNG {big.stat().st_size:,} bytes; cache written {cache / 2**20:,.0f} MB"
    # the 2-class folder cannot fit a 10-class model: the answer needs no pixel
    return Verdict(judge(proc, bound_mb=1024), proc, note)


# -- the cases: silently wrong --------------------------------------------------------------


@case("predict 16-bit vs 8-bit PNG", WRONG, CORRECT)
def case_predict_16_bit_vs_8_bit_png(ctx: Ctx) -> Verdict:
    ctx.digits_run()
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    png(ctx.tmp / "grey8.png", grey)
    png(ctx.tmp / "grey16.png", grey.astype(np.uint16) * 257)  # mode I;16, same picture
    proc = ctx.cli("predict", "run/final.pt", "grey8.png", "grey16.png")

    def wrong() -> str | None:
        results = [line.split(":", 1)[-1].strip() for line in proc.stdout.splitlines()]
        if len(results) == 2 and results[0] != results[1]:
            return f"8-bit {results[0][:24]}... vs 16-bit {results[1][:24]}..."
        return None

    return Verdict(judge(proc, wrong=wrong), proc)


def _nan_printed(proc: Proc) -> Callable[[], str | None]:
    return lambda: "NaN printed" if "nan" in proc.stdout.lower() else None


@case("predict: std 1e-300", WRONG, about=r"\bstd\b")
def case_predict_std_1e_300(ctx: Ctx) -> Verdict:
    proc = _predict_with_config(ctx, std=[1e-300] * 3)
    return Verdict(judge(proc, wrong=_nan_printed(proc)), proc)


@case("predict: mean 1e300", WRONG, about=r"\bmean\b")
def case_predict_mean_1e300(ctx: Ctx) -> Verdict:
    proc = _predict_with_config(ctx, mean=[1e300] * 3)
    return Verdict(judge(proc, wrong=_nan_printed(proc)), proc)


def _export_normalize(ctx: Ctx, **config: Any) -> Verdict:
    run = ctx.digits_run()
    craft_checkpoint(run / "final.pt", ctx.tmp / "model.pt", **config)
    proc = ctx.cli("export", "model.pt", "--format", "pt2", "--normalize", "--out", "m.pt2")
    graph = run_pt2(ctx, "m.pt2", [(1, 3, 16, 16)]) if proc.rc == 0 else None

    def wrong() -> str | None:
        if graph is None or "ok" not in graph.stdout:
            return "the graph outputs NaN" if graph and "nan" in graph.stdout else "graph fails"
        return None

    return Verdict(judge(proc, wrong=wrong), proc)


@case("export --normalize: std 1e-300", WRONG, about=r"\bstd\b")
def case_export_normalize_std_1e_300(ctx: Ctx) -> Verdict:
    return _export_normalize(ctx, std=[1e-300] * 3)


@case("export --normalize: mean 1e300", WRONG, about=r"\bmean\b")
def case_export_normalize_mean_1e300(ctx: Ctx) -> Verdict:
    return _export_normalize(ctx, mean=[1e300] * 3)


@case("predict: label names with escapes", WRONG, CORRECT)
def case_predict_label_names_with_escapes(ctx: Ctx) -> Verdict:
    names = [f"class{i}" for i in range(10)]
    names[0] = "\x1b[2J\x1b[H"  # clears the terminal
    names[1] = "\x1b]0;pwned\x07"  # retitles it
    names[2] = "x 0.0%\ncat.png: forged 99.9%"  # forges a result line
    names[3] = "\rcat.png: forged"
    proc = _predict_with_config(ctx, label_names=names)

    def wrong() -> str | None:
        raw = " ".join(control_chars(proc.stdout))
        forged = any(line.startswith("cat.png: forged") for line in proc.stdout.splitlines())
        if raw or forged:
            return f"printed raw: {raw or 'a newline'}{', a forged line' if forged else ''}"
        return None

    return Verdict(judge(proc, wrong=wrong), proc)


@case("predict: image path with a newline", WRONG, CORRECT)
def case_predict_path_with_newline(ctx: Ctx) -> Verdict:
    ctx.digits_run()
    photo(ctx.tmp / "holiday\nbeach: 9 100.0%.png")
    proc = ctx.cli("predict", "run/final.pt", "holiday\nbeach: 9 100.0%.png", "--top", "1")

    def wrong() -> str | None:
        lines = proc.stdout.splitlines()
        return f"one image, {len(lines)} lines: {lines!r}"[:70] if len(lines) != 1 else None

    return Verdict(judge(proc, wrong=wrong), proc)


@case("reproduce table6 --data CIFAR-100", WRONG, *EITHER, about=r"CIFAR-10\b")
def case_table6_on_cifar100(ctx: Ctx) -> Verdict:
    write_cifar100(ctx.tmp / "cifar-100-python")
    args = ["reproduce", "table6", "--data", "cifar-100-python", "--out", "t6", *TABLE6_ARGS]
    proc = ctx.cli(*args)

    def wrong() -> str | None:
        table = (ctx.tmp / "t6" / "table6.md").read_text()
        problems = ["the paper's column (8.75%)"] if "8.75%" in table else []
        if "269,722" in table:
            problems.append("269,722 parameters (10 classes; trained 275,572)")
        return ", ".join(problems) or None

    return Verdict(judge(proc, wrong=wrong), proc)


def _tinyimagenet_escape(ctx: Ctx, line: str) -> Verdict:
    root = write_tinyimagenet(ctx.tmp / "data" / "tiny", [f"{line}\tn01\t0\t0\t8\t8"])
    outside = root / "val" / "images" / line
    photo(outside, 7, 8)
    proc = ctx.cli(TRAIN_1, "--data", str(root), "--out", "run", "--batch-size", "4")
    where = os.path.relpath(outside.resolve(), ctx.tmp)

    def wrong() -> str | None:
        return f"read {where} as a test image"

    return Verdict(judge(proc, wrong=wrong), proc, f"{line} is {where}")


@case("val_annotations.txt: ../../x.png", WRONG, about=r"x\.png")
def case_tinyimagenet_annotation_dotdot(ctx: Ctx) -> Verdict:
    return _tinyimagenet_escape(ctx, "../../x.png")


@case("val_annotations.txt: ../../../x.png", WRONG, about=r"x\.png")
def case_tinyimagenet_annotation_outside_root(ctx: Ctx) -> Verdict:
    return _tinyimagenet_escape(ctx, "../../../x.png")


@case("recipe JSON with a duplicate key", WRONG, about=r"duplicate|\blr\b")
def case_recipe_duplicate_key(ctx: Ctx) -> Verdict:
    (ctx.tmp / "recipe.json").write_text('{"val_size": 0, "lr": 0.1, "batch_size": 64, "lr": 5}')
    proc = ctx.cli(TRAIN_1, "--data", "digits", "--recipe", "recipe.json", "--out", "run")

    def wrong() -> str | None:
        lr = json.loads((ctx.tmp / "run" / "recipe.json").read_text()).get("lr")
        return f'two "lr" keys, took lr={lr}'

    return Verdict(judge(proc, wrong=wrong), proc)


@case("export pt2 --dynamic-size --input 3,1,1", WRONG, *EITHER, about=r"size|input")
def case_export_pt2_dynamic_size_input_3x1x1(ctx: Ctx) -> Verdict:
    ctx.digits_run()
    proc = ctx.cli("export run/final.pt --format pt2 --dynamic-size --input 3,1,1 --out m.pt2")
    # The sizes the note promises: "each at least N", or any size where it names no bound.
    promise = re.search(r"each at least (\d+)", proc.stdout)
    least = int(promise[1]) if promise else 1
    shapes = [(1, 3, least, least), (1, 3, least, least + 2), (2, 3, 16, 16), (1, 3, 24, 20)]
    graph = run_pt2(ctx, "m.pt2", shapes) if proc.rc == 0 else None
    runs = graph.stdout.split() if graph else []

    def wrong() -> str | None:
        fails = [run.removesuffix("xfails") for run in runs if run.endswith("fails")]
        if fails or len(runs) != len(shapes):
            return f"the program fails at {', '.join(fails) or 'load'}"
        return None

    return Verdict(judge(proc, wrong=wrong), proc, " ".join(runs))


# -- the cases: tracebacks ------------------------------------------------------------------


@case("Ctrl-C during reproduce degradation", TRACE, RESUMED)
def case_ctrl_c_during_reproduce_degradation(ctx: Ctx) -> Verdict:
    command = "reproduce degradation --out deg --epochs 1 --device cpu --no-progress"
    proc = ctx.cli(command, interrupt_on="[1/4]", interrupt_after=3.0)
    return Verdict(judge(proc), proc)


@case("Ctrl-C during reproduce table6", TRACE, RESUMED)
def case_ctrl_c_during_reproduce_table6(ctx: Ctx) -> Verdict:
    write_cifar10(ctx.tmp / "cifar-10-batches-py")
    args = ["reproduce", "table6", "--data", "cifar-10-batches-py", "--out", "t6", *TABLE6_ARGS]
    args[args.index("--iterations") + 1] = "200"
    proc = ctx.cli(*args, interrupt_on="[1/1]", interrupt_after=4.0)
    return Verdict(judge(proc), proc)


def _resume_with_run_json(ctx: Ctx, old: str, new: str) -> Verdict:
    run = ctx.digits_run()
    text = (run / "run.json").read_text()
    if old not in text:
        raise SetupError(f"run.json has no {old!r}")
    (run / "run.json").write_text(text.replace(old, new, 1))
    proc = ctx.cli(RESUME)
    return Verdict(judge(proc), proc)


@case('run.json "seed": Infinity, --resume', TRACE, about=r"run\.json")
def case_run_json_seed_infinity(ctx: Ctx) -> Verdict:
    return _resume_with_run_json(ctx, '"seed": 0', '"seed": Infinity')


@case('run.json "command" a list, --resume', TRACE, about=r"run\.json")
def case_run_json_command_not_an_object(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    edit_json(run / "run.json", lambda d: d.update(command=["train", "resnet20"]))
    proc = ctx.cli(RESUME)
    return Verdict(judge(proc), proc)


@case("state.pt field of the wrong type", TRACE, about=r"state\.pt")
def case_state_field_of_the_wrong_type(ctx: Ctx) -> Verdict:
    run = ctx.digits_run()
    edit_state(run / "state.pt", loader=[])  # a dict in every state.pt written
    proc = ctx.cli(RESUME)
    return Verdict(judge(proc), proc, "loader: [] for a dict")


def _table6_with_metric(ctx: Ctx, column: str) -> Verdict:
    t6 = ctx.table6_run()
    metrics = t6 / "resnet20-seed0" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[-1].split(",")
    row[header.index(column)] = "1e999"
    metrics.write_text("\n".join([*lines[:-1], ",".join(row)]) + "\n")
    proc = ctx.cli(
        "reproduce", "table6", "--data", "cifar-10-batches-py", "--out", "t6", *TABLE6_ARGS
    )

    def wrong() -> str | None:
        table = (t6 / "table6.md").read_text()
        return "inf% in table6.md" if "inf" in table.lower() else None

    return Verdict(judge(proc, wrong=wrong), proc)


@case("table6: metrics.csv iteration 1e999", TRACE, about=r"metrics\.csv")
def case_table6_metrics_iteration_1e999(ctx: Ctx) -> Verdict:
    return _table6_with_metric(ctx, "iteration")


@case("table6: metrics.csv test_error 1e999", TRACE, about=r"metrics\.csv")
def case_table6_metrics_test_error_1e999(ctx: Ctx) -> Verdict:
    return _table6_with_metric(ctx, "test_error")


LONG = "r" * 240


@case("train --out: 240-character name", TRACE, CORRECT)
def case_train_out_240_characters(ctx: Ctx) -> Verdict:
    proc = ctx.cli(TRAIN_1, "--data", "digits", "--out", LONG)
    return Verdict(judge(proc), proc)


@case("export --out: 240-character name", TRACE, CORRECT)
def case_export_out_240_characters(ctx: Ctx) -> Verdict:
    ctx.digits_run()
    proc = ctx.cli("export", "run/final.pt", "--format", "onnx", "--out", LONG[:235] + ".onnx")
    return Verdict(judge(proc), proc)


@case("resnetlib.save: 240-character name", TRACE, CORRECT)
def case_save_240_characters(ctx: Ctx) -> Verdict:
    proc = ctx.code(
        f"""
        import resnetlib
        resnetlib.save(resnetlib.create_model("resnet20"), {LONG[:237] + ".pt"!r})
        print("saved")
        """
    )
    return Verdict(judge(proc), proc)


# -- running and reporting ------------------------------------------------------------------


def run_case(item: Case, tree: Tree, index: int) -> Verdict:
    tmp = tree.work / "cases" / f"{index:02d}"
    tmp.mkdir(parents=True)
    try:
        verdict = item.run(Ctx(tree, tmp))
        line = verdict.proc.last_line() if verdict.proc else ""
        if verdict.outcome == GOOD_ERROR and not re.search(item.about, line, re.IGNORECASE):
            verdict.outcome = "one-line error, another cause"
        return verdict
    except SetupError as error:
        return Verdict("setup failed", None, str(error))
    except Exception as error:  # one case crashing must not stop the others
        where = traceback.extract_tb(error.__traceback__)[-1]
        note = f"{type(error).__name__}: {error} (line {where.lineno})"
        return Verdict("case crashed", None, note)


def escape(text: str, width: int = 160) -> str:
    """One Markdown-safe line: control characters escaped, pipes escaped, cut at ``width``."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    text = text.replace("|", "\\|")
    return text if len(text) <= width else text[: width - 3] + "..."


def cells(item: Case, verdict: Verdict) -> list[str]:
    mark = " ✓" if verdict.outcome.startswith(item.expected) else ""
    proc = verdict.proc
    if proc is None:
        return [verdict.outcome + mark, "", "", ""]
    rc = "killed" if proc.timed_out else str(proc.rc)
    return [verdict.outcome + mark, rc, f"{proc.seconds:.1f}", f"{proc.peak_mb:,.0f}"]


def report(cases: list[Case], names: list[str], results: dict[str, list[Verdict]]) -> None:
    """The Markdown table (one group of outcome columns per tree), the counts, the details."""
    head = ["case", "expected"]
    for name in names:
        suffix = f" ({name})" if len(names) > 1 else ""
        head += [f"outcome{suffix}", "exit", "seconds", "peak MB"]
    numeric = {"exit", "seconds", "peak MB"}
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" if h in numeric else "---" for h in head) + "|")
    for item in cases:
        row = [escape(item.name), " or ".join(item.expected)]
        for verdict in results[item.name]:
            row += cells(item, verdict)
        print("| " + " | ".join(row) + " |")
    print()
    for column, name in enumerate(names):
        good = sum(results[c.name][column].outcome.startswith(c.expected) for c in cases)
        print(f"{name}: {good} of {len(cases)} as expected.  ")
    print("\n## Details (the last line each command wrote; notes)\n")
    for item in cases:
        print(f"- **{escape(item.name)}** ({item.group})")
        for name, verdict in zip(names, results[item.name], strict=True):
            last = escape(verdict.proc.last_line()) if verdict.proc else ""
            note = f" [{escape(verdict.note)}]" if verdict.note else ""
            print(f"  - {name}: {verdict.outcome}: `{last}`{note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path, default=[], help="a src tree")
    parser.add_argument("--before", type=Path, help="the tree before the fix (side by side)")
    parser.add_argument("--after", type=Path, help="the tree after the fix (side by side)")
    parser.add_argument("--only", action="append", default=[], help="cases whose name has this")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per command (60)")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="address space (4 GiB)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    sources = [p for p in (args.before, args.after) if p is not None] + args.src
    if not sources:
        parser.error("give --src DIR (repeatable) or --before DIR --after DIR")
    for src in sources:
        if not (src / "resnetlib" / "__init__.py").is_file():
            parser.error(f"{src}: no resnetlib package there")
    needles = [n.lower() for n in args.only]
    cases = [c for c in CASES if not needles or any(n in c.name.lower() for n in needles)]
    if not cases:
        parser.error(f"no case matches {args.only}")

    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    memory = int(args.memory_gib * 2**30)
    trees = [
        Tree(src.resolve(), base / f"tree{i}", args.timeout, memory)
        for i, src in enumerate(sources)
    ]
    results: dict[str, list[Verdict]] = {}
    started = time.perf_counter()
    try:
        for index, item in enumerate(cases):
            results[item.name] = []
            for tree in trees:
                verdict = run_case(item, tree, index)
                results[item.name].append(verdict)
                where = f"[{index + 1}/{len(cases)}] {item.name} @ {tree.src}"
                print(f"{where}: {verdict.outcome}", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)

    seconds = time.perf_counter() - started
    print(f"Issue 24's hostile cases: {len(cases)} cases in {seconds:.0f} s (python ", end="")
    print(f"{sys.version.split()[0]}, {os.cpu_count()} CPUs); each command limited to ", end="")
    print(f"{args.timeout:g} s and {args.memory_gib:g} GiB of address space. ✓: an ", end="")
    print("expected outcome. Exit, seconds and peak MB are the case's main command's.\n")
    report(cases, [str(src) for src in sources], results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
