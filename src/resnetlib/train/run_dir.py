"""The run directory: every file of a training run, written by one owner.

A :class:`RunDirectory` takes an OS lock on the directory before it writes anything, so
that a second process training into it is refused while the first runs; the lock dies with
its process, so a crashed run leaves nothing to clean up. It writes, each file atomically
(temporary file, fsync, rename):

- ``run.json`` at the start: what the run is (model, data and the split actually used,
  seed, recipe, the options that made it), so that resume, evaluate and export need only
  the directory;
- ``spec.json`` and ``recipe.json`` (the recipe as followed, its ``val_size`` the split
  actually held out);
- ``metrics.csv`` (one row an epoch) and ``steps.csv`` (one row a logging interval);
- ``state.pt``: the model and the trainer state as one file, so a resume never mixes
  weights and optimizer state of different iterations; ``last.pt`` beside it for users;
- ``best.pt`` (lowest validation error), ``final.pt`` and ``curves.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..core.model import ResNet
from ..interop.checkpoint import save
from ..interop.files import atomic_write

__all__ = [
    "METRICS",
    "STEPS",
    "RunDirectory",
    "RunDirectoryError",
    "TrainingError",
    "read_metrics",
]

METRICS = (
    "epoch",
    "iteration",
    "lr",
    "train_loss",
    "train_error",
    "val_loss",
    "val_error",
    "test_loss",
    "test_error",
    "images_per_s",
    "elapsed_s",
)
"""The columns of ``metrics.csv``, one row per epoch (errors are fractions; empty: not run)."""

STEPS = ("iteration", "lr", "train_loss", "train_error")
"""The columns of ``steps.csv``: the training loss and error over each logging interval."""

STATE_FORMAT = "resnetlib.trainer-state"
STATE_VERSION = 2
_MAX_JSON_BYTES = 1 << 20  # run.json and recipe.json are a few KB


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a run directory that does not fit)."""


class RunDirectoryError(TrainingError):
    """A run directory that is busy, holds another run, or holds a damaged file; the
    message names the file and what to do."""


def _write_bytes(path: Path, data: bytes) -> None:
    def write(file: BinaryIO) -> None:
        file.write(data)

    atomic_write(path, write)


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, float]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: "" if math.isnan(value) else _fmt(key, value)
                for key, value in row.items()
                if key in columns
            }
        )
    return text.getvalue().encode()


def _fmt(key: str, value: float) -> str:
    return str(int(value)) if key in ("epoch", "iteration") else f"{value:.6g}"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` or ``steps.csv`` (empty cells as NaN).

    Raises:
        RunDirectoryError: a cell that is not a number (the message names file and line).
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as file:
        for line, row in enumerate(csv.DictReader(file), start=2):
            try:
                rows.append({k: float(v) if v != "" else math.nan for k, v in row.items()})
            except (TypeError, ValueError):
                raise RunDirectoryError(
                    f"{path}, line {line}: expected numbers; got {dict(row)}"
                ) from None
    return rows


class RunDirectory:
    """The files of one run in ``path`` (see the module docstring).

    Use it as a context manager, or call :meth:`acquire` and :meth:`release`: every write
    needs the lock. Reading (:meth:`read_info`, :meth:`read_state`) does not.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock: int | None = None

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- ownership -------------------------------------------------------------------------

    def acquire(self) -> None:
        """Lock the directory for this process (created if missing), or raise
        :class:`RunDirectoryError` naming the process that holds it."""
        if self._lock is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunDirectoryError(
                f"{self.path}: cannot create the run directory: {error}"
            ) from None
        if not _try_lock(fd):
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirectoryError(
                f"{self.path} is in use by {holder}: one training writes a run directory at "
                "a time; wait for it, or choose another --out"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._lock = fd

    def release(self) -> None:
        """Give the lock up (a process that dies releases it too)."""
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None

    def __enter__(self) -> RunDirectory:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _check_owner(self) -> None:
        if self._lock is None:
            raise RuntimeError(f"{self!r} is written without its lock; call acquire() first")

    # -- what the run is -------------------------------------------------------------------

    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    def holds_run(self) -> bool:
        """Whether a run was started here (its ``run.json`` exists)."""
        return self.info_path.is_file()

    def has_checkpoint(self) -> bool:
        """Whether the run saved a state to resume from."""
        return (self.path / "state.pt").is_file()

    def write_info(self, info: Mapping[str, Any]) -> None:
        """Write ``run.json`` (JSON types only)."""
        self._check_owner()
        _write_bytes(self.info_path, (json.dumps(dict(info), indent=2) + "\n").encode())

    def read_info(self) -> dict[str, Any]:
        """``run.json`` as a dict; a missing, oversized or damaged file is a
        :class:`RunDirectoryError` naming it."""
        return read_json_object(self.info_path, what="run information")

    def write_json(self, name: str, text: str) -> None:
        """Write ``spec.json``, ``recipe.json`` and the like."""
        self._check_owner()
        _write_bytes(self.path / name, text.rstrip("\n").encode() + b"\n")

    # -- progress --------------------------------------------------------------------------

    def write_metrics(
        self, history: Sequence[Mapping[str, float]], steps: Sequence[Mapping[str, float]]
    ) -> None:
        """Rewrite ``metrics.csv`` and ``steps.csv``."""
        self._check_owner()
        _write_bytes(self.path / "metrics.csv", _csv_text(METRICS, history))
        _write_bytes(self.path / "steps.csv", _csv_text(STEPS, steps))

    def save_state(
        self, model: ResNet, state: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        """Write ``state.pt`` (the model's weights inside the trainer state: one atomic
        unit), then ``last.pt`` (the same weights as a checkpoint)."""
        self._check_owner()
        payload = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **state,
        }
        atomic_write(self.path / "state.pt", lambda file: torch.save(payload, file))
        save(model, self.path / "last.pt", metadata=_json_scalars(metadata))

    def read_state(self) -> dict[str, Any]:
        """``state.pt``, checked; a missing or damaged one is a :class:`RunDirectoryError`."""
        path = self.path / "state.pt"
        if not path.is_file():
            raise RunDirectoryError(f"{self.path}: nothing to resume (no state.pt)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
            reason = str(error).strip().splitlines()
            first = reason[0] if reason else type(error).__name__
            if "Weights only load failed" in first:
                first = "it holds objects other than tensors and plain data"
            raise RunDirectoryError(
                f"{path}: damaged trainer state ({first}); start a new run in another --out, "
                "or restore the file"
            ) from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise RunDirectoryError(f"{path}: not a resnetlib trainer-state file")
        if state.get("version") != STATE_VERSION:
            raise RunDirectoryError(
                f"{path}: trainer-state version {state.get('version')!r} is not the "
                f"{STATE_VERSION} this resnetlib resumes; finish the run with the resnetlib "
                "that started it, or start a new one"
            )
        return state

    def save_model(self, name: str, model: ResNet, metadata: Mapping[str, Any]) -> Path:
        """Write checkpoint ``name`` (``best.pt``, ``final.pt``)."""
        self._check_owner()
        path = self.path / name
        save(model, path, metadata=_json_scalars(metadata))
        return path

    def plot(
        self,
        label: str,
        history: Sequence[Mapping[str, float]],
        steps: Sequence[Mapping[str, float]],
    ) -> Path:
        """Draw ``curves.png``: errors, losses and the learning rate."""
        self._check_owner()
        from .plot import plot_run

        return plot_run(label, history, steps, self.path / "curves.png")


def read_json_object(path: Path, *, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing, oversized, undecodable, deeply nested or
    non-object file is a :class:`RunDirectoryError` naming the file (and line)."""
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise RunDirectoryError(f"{path}: larger than {_MAX_JSON_BYTES} bytes; not {what}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{path}: cannot be read: {error}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunDirectoryError(
            f"{path}, line {error.lineno}: not valid JSON ({error.msg})"
        ) from None
    except RecursionError:
        raise RunDirectoryError(f"{path}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise RunDirectoryError(
            f"{path}: expected a JSON object ({what}); got {type(value).__name__}"
        )
    return value


def _json_scalars(row: Mapping[str, Any]) -> dict[str, float | int | str | None]:
    out: dict[str, float | int | str | None] = {}
    for key, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            out[key] = None
        elif key in ("epoch", "iteration") and isinstance(value, float):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on ``fd``: ``fcntl.flock`` on POSIX,
    ``msvcrt.locking`` on Windows."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
