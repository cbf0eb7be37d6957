"""The run directory: every file of a training run (``run.json``, ``spec.json``, ``recipe.json``,
``metrics.csv``, ``steps.csv``, ``state.pt``, ``last.pt``, ``best.pt``, ``final.pt``,
``curves.png``), each written atomically under an OS lock that dies with its process.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..common import first_line
from ..core.data_config import config_from_dict
from ..core.model import ResNet
from ..core.spec import ResNetSpec
from ..files import (
    atomic_write,
    dump_json,
    open_lock,
    open_regular,
    read_json,
    read_text,
)
from ..interop.checkpoint import TORCH_READ_ERRORS, save
from ..validate import is_int, is_real
from .recipe import Recipe

__all__ = [
    "METRICS",
    "STEPS",
    "RunDirectory",
    "RunDirectoryError",
    "TrainingError",
    "check_resume",
    "check_run_info",
    "check_same_data",
    "read_metrics",
    "record_differences",
]

STEPS = ("iteration", "lr", "train_loss", "train_error")
"""The columns of ``steps.csv``: the training loss and error over each logging interval."""

METRICS = (
    "epoch",
    *STEPS,
    "val_loss",
    "val_error",
    "test_loss",
    "test_error",
    "images_per_s",
    "elapsed_s",
)
"""The columns of ``metrics.csv``, one row per epoch (errors are fractions; empty: not run)."""

_T = TypeVar("_T")
STATE_FORMAT = "resnetlib.trainer-state"
STATE_VERSION = 2
MAX_SEED = 2**63 - 1
_COUNTS = ("epoch", "iteration")  # written as ints


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a run directory that does not fit)."""


class RunDirectoryError(TrainingError):
    """A busy run directory, another run's, or a damaged file; the message says what to do."""


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, float]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: "" if math.isnan(v) else str(int(v)) if k in _COUNTS else f"{v:.6g}"
                for k, v in row.items()
            }
        )
    return text.getvalue().encode()


def read_metrics(
    path: str | os.PathLike[str], *, columns: Sequence[str] = (), own: bool = False
) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` or ``steps.csv`` (empty cells as NaN). ``columns``: those
    the header must have; ``own=True``: a file of the run the caller goes on to write.

    Raises:
        RunDirectoryError: not a regular UTF-8 file within the text limit, a missing column,
            or a cell that is not a finite number. ``OSError``: the file cannot be read.
    """
    text = read_text(path, what="a run's metrics", error=RunDirectoryError, own=own)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [name for name in columns if name not in header]
    if missing:
        raise RunDirectoryError(f"{path}: no column {', '.join(missing)}; not a run's metrics")
    rows = []
    for line, row in enumerate(reader, start=2):
        try:
            values = {k: float(v) if v != "" else math.nan for k, v in row.items()}
        except (TypeError, ValueError):
            raise RunDirectoryError(
                f"{path}, line {line}: expected numbers; got {str(dict(row))[:200]}"
            ) from None
        bad = [k for k, v in values.items() if row[k] != "" and not math.isfinite(v)]
        if bad:
            raise RunDirectoryError(
                f"{path}, line {line}: {bad[0]} is {row[bad[0]][:40]!r}, not a finite number"
            )
        rows.append(values)
    return rows


# The files a run writes in its directory (besides its .lock): a new run starts only where none
# is; those after spec.json and recipe.json are its progress, which resuming without state.pt
# would overwrite.
_RUN_FILES = (
    "run.json",
    "spec.json",
    "recipe.json",
    "state.pt",
    "last.pt",
    "best.pt",
    "final.pt",
    "metrics.csv",
    "steps.csv",
    "curves.png",
)


class RunDirectory:
    """The files of one run in ``path``. Every write needs the lock (use it as a context
    manager, or :meth:`acquire` and :meth:`release`); reading does not."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.info_path = self.path / "run.json"
        self._lock: int | None = None

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- ownership -------------------------------------------------------------------------

    def acquire(self) -> None:
        """Lock the directory (made if missing), or raise RunDirectoryError naming its holder."""
        if self._lock is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = open_lock(self.path / ".lock", error=RunDirectoryError)  # never via a link
        except OSError as error:
            raise RunDirectoryError(
                f"{self.path}: cannot create the run directory: {error}"
            ) from None
        try:  # an exclusive, non-blocking lock
            if sys.platform == "win32":  # pragma: no cover
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirectoryError(
                f"{self.path} is in use by {holder}: one training writes a run directory at "
                "a time; wait for it, or choose another --out"
            ) from None
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

    def holds_run(self) -> bool:
        """Whether anything named ``run.json`` is here (:meth:`read_info` reads or refuses it)."""
        return os.path.lexists(self.info_path)

    def check_new(self) -> None:
        """Raise :class:`RunDirectoryError` unless a new run may start here: no file a run
        writes (``run.json``, ``final.pt``, ``metrics.csv``, ...) is here to be overwritten."""
        found = next((name for name in _RUN_FILES if os.path.lexists(self.path / name)), None)
        if found == "run.json":
            raise RunDirectoryError(
                f"{self.path} already holds a run (run.json): continue it with --resume "
                "(resume=True), or choose another --out"
            )
        if found is not None:
            raise RunDirectoryError(
                f"{self.path / found}: a new run would overwrite it (a run writes {found}); "
                "choose another --out, or delete it"
            )

    def resume_state(self) -> dict[str, Any] | None:
        """The saved state (:meth:`read_state`), or ``None`` for a run stopped before its first
        save; no run here, or progress without ``state.pt``, is a :class:`RunDirectoryError`."""
        if os.path.lexists(self.path / "state.pt"):
            return self.read_state()
        if not self.holds_run():
            raise RunDirectoryError(f"{self.path}: nothing to resume (no run.json or state.pt)")
        files = [name for name in _RUN_FILES[3:] if os.path.lexists(self.path / name)]
        if files:
            weights = " (last.pt keeps its latest weights)" if "last.pt" in files else ""
            raise RunDirectoryError(
                f"{self.path / 'state.pt'}: missing, but the run made progress "
                f"({', '.join(files)} exist); resuming would start it over and overwrite them. "
                f"Restore state.pt to continue, or start a new run in another --out{weights}"
            )
        return None

    def write_info(self, info: Mapping[str, Any]) -> None:
        """Write ``run.json`` (JSON types only)."""
        self.write_json("run.json", dump_json(dict(info), what="run.json", indent=2))

    def read_info(self, *, own: bool = True) -> dict[str, Any]:
        """``run.json``, checked by ``check_run_info()``; ``own=False``: read as an input."""
        info = read_json_object(self.info_path, what="run information", own=own)
        return check_run_info(info, self.info_path)

    def write_json(self, name: str, text: str) -> None:
        """Write ``spec.json``, ``recipe.json`` and the like."""
        self._check_owner()
        atomic_write(self.path / name, text.rstrip("\n").encode() + b"\n")

    # -- progress --------------------------------------------------------------------------

    def write_metrics(
        self, history: Sequence[Mapping[str, float]], steps: Sequence[Mapping[str, float]]
    ) -> None:
        """Rewrite ``metrics.csv`` and ``steps.csv``."""
        self._check_owner()
        atomic_write(self.path / "metrics.csv", _csv_text(METRICS, history))
        atomic_write(self.path / "steps.csv", _csv_text(STEPS, steps))

    def save_state(
        self, model: ResNet, state: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        """Write ``state.pt`` (weights and trainer state as one file), then ``last.pt``."""
        self._check_owner()
        payload = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **state,
        }
        atomic_write(self.path / "state.pt", lambda file: torch.save(payload, file))
        self.save_model("last.pt", model, metadata)

    def read_state(self) -> dict[str, Any]:
        """``state.pt`` (loaded ``weights_only``; its fields are checked by ``check_resume()``);
        a missing or damaged one is a :class:`RunDirectoryError`."""
        path = self.path / "state.pt"
        if not os.path.lexists(path):
            raise RunDirectoryError(f"{self.path}: nothing to resume (no state.pt)")
        try:
            with open_regular(
                path, what="trainer state", error=RunDirectoryError, own=True
            ) as file:
                state = torch.load(file, map_location="cpu", weights_only=True)
        except RunDirectoryError:
            raise
        except (*TORCH_READ_ERRORS, OSError) as error:
            first = first_line(error)
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
        """Write checkpoint ``name`` (``best.pt``, ``final.pt``); NaN or infinite metadata as
        null."""
        self._check_owner()
        scalars = dict(metadata)
        for key, value in metadata.items():
            if isinstance(value, float) and (not math.isfinite(value) or key in _COUNTS):
                scalars[key] = int(value) if math.isfinite(value) else None
        save(model, self.path / name, metadata=scalars)
        return self.path / name

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


def recorded_imports(info: Mapping[str, Any]) -> list[str]:
    """The ``--import`` modules a run was started with (its checked ``run.json``); a run never
    imports them itself: a user who trusts them names them again."""
    command = info.get("command") or {}
    return list((command.get("model") or {}).get("imports") or [])


def read_json_object(path: Path, *, what: str, own: bool = True) -> dict[str, Any]:
    """A JSON object from ``path`` (:func:`resnetlib.files.read_json`); any problem is a
    :class:`RunDirectoryError` naming the file. ``own``: a file of the run being written."""
    try:
        value = read_json(path, what=what, error=RunDirectoryError, own=own)
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: missing ({what})") from None
    except OSError as error:
        raise RunDirectoryError(f"{path}: cannot be read: {error.strerror or error}") from None
    if not isinstance(value, dict):
        raise RunDirectoryError(
            f"{path}: expected a JSON object ({what}); got {type(value).__name__}"
        )
    return value


def read_record(path: Path, make: Callable[[dict[str, Any]], _T], *, what: str) -> _T:
    """``make(read_json_object(path))`` (``Recipe.from_dict``, ``ResNetSpec.from_dict``); its
    ``ValueError`` or ``TypeError`` is a :class:`RunDirectoryError` naming the file."""
    try:
        return make(read_json_object(path, what=what))
    except (ValueError, TypeError) as error:
        raise RunDirectoryError(f"{path}: {error}") from None


_MISSING = object()


def record_differences(
    recorded: Mapping[str, Any], asked: Mapping[str, Any], keys: Iterable[str], within: str = ""
) -> list[str]:
    """``"KEY: the run's A, now B"`` for each of ``keys`` whose values differ (empty: agree);
    where both are mappings, their own keys that differ (``"data.seed: ..."``)."""
    differ = []
    for key in keys:
        mine, theirs = recorded.get(key), asked.get(key)
        if mine == theirs:
            continue
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            both = dict.fromkeys([*mine, *theirs])
            if inner := record_differences(mine, theirs, both, f"{within}{key}."):
                differ += inner
                continue  # else they differ in a key one lacks and the other holds as None
        differ.append(f"{within}{key}: the run's {_short(mine)}, now {_short(theirs)}")
    return differ


def _short(value: object) -> str:
    """``repr(value)`` cut to its last 60 characters (where paths differ); a tensor by its
    type, a long list or dict by its type and length."""
    text = repr(value)
    if isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}"
    if isinstance(value, (list, dict, tuple)) and len(text) > 60:
        return f"a {type(value).__name__} of {len(value)}"
    return text if len(text) <= 60 else "..." + text[-57:]


LOADER_KEYS = ("seed", "num_images", "batch_size", "world_size")
"""What a loader's saved state must share with the loader that resumes it."""


def _asked_otherwise(path: Path, what: str, differ: list[str]) -> RunDirectoryError:
    """A saved state that is whole, of a run started with other options than asked now."""
    return RunDirectoryError(
        f"{path}: the run was started with {what} ({'; '.join(differ)}); resume with "
        "the options it was started with, or start a new run elsewhere"
    )


_FED = ("input_size", "mean", "std", "label_names")  # how the model is fed: its data config


def check_same_data(info: Mapping[str, Any], asked: Mapping[str, Any], path: Path) -> None:
    """Raise :class:`RunDirectoryError` unless the data (``data``: its record, ``classes``)
    and the model's ``pretrained_cfg`` as fed (input size, statistics, class names) of
    ``asked`` are those ``run.json`` (``info``, at ``path``) recorded when the run started."""
    recorded_cfg, cfg = info.get("pretrained_cfg") or {}, asked["pretrained_cfg"]
    differ = record_differences(info, asked, ("data", "classes")) + [
        f"pretrained_cfg {difference}" for difference in record_differences(recorded_cfg, cfg, _FED)
    ]
    if differ:
        raise _asked_otherwise(path, "other data or preprocessing", differ)


def check_resume(
    state: Mapping[str, Any], expected: Mapping[str, Any], path: Path, per_epoch: int
) -> None:
    """Raise :class:`RunDirectoryError` (naming ``path``, the field and what to do) unless the
    saved trainer ``state`` fits the run resuming it: the run, plan, network and loader of
    ``expected`` (the state it would save now), each field's type, and consistent progress."""
    plan = Recipe.from_json(expected["plan"])
    total = plan.iterations
    assert total is not None
    todo = "restore this run's state.pt, or start a new run in another --out"

    def fail(problem: str) -> RunDirectoryError:
        return RunDirectoryError(f"{path}: {problem}; {todo}")

    def require(field: str, ok: bool, wanted: str, got: object = _MISSING) -> None:
        if not ok:
            shown = "" if got is _MISSING else f"; got {_short(got)}"
            raise fail(f"field {field!r} must be {wanted}{shown}")

    def kind(field: str) -> str:
        return type(state.get(field)).__name__

    def tensor_like(value: object, like: torch.Tensor) -> bool:
        return (
            isinstance(value, torch.Tensor)
            and value.shape == like.shape
            and value.dtype == like.dtype
        )

    if state.get("run") != expected["run"]:
        raise fail(
            f"the state of another run (its id {_short(state.get('run'))}, run.json's "
            f"{_short(expected['run'])})"
        )
    saved_plan: Any = state.get("plan")
    require("plan", isinstance(saved_plan, str), "a recipe (JSON text)", kind("plan"))
    if saved_plan != expected["plan"]:
        try:
            saved = Recipe.from_json(saved_plan).to_dict()
        except (ValueError, TypeError, KeyError, RecursionError):
            raise fail("field 'plan' must be a recipe (JSON text)") from None
        mine = plan.to_dict()
        raise _asked_otherwise(
            path, "another recipe or length", record_differences(saved, mine, mine)
        )
    model, weights = state.get("model"), expected["model"]
    if not (
        isinstance(model, dict)
        and set(model) == set(weights)
        and all(tensor_like(model[k], weights[k]) for k in weights)
    ):
        raise fail("the state of another network than this run's (spec.json)")
    # The network and its feeding as saved (a state of an earlier version has neither): the
    # same weight shapes do not make the same network, nor run.json's record the data fed.
    saved_spec = state.get("spec", expected["spec"])
    if saved_spec != expected["spec"]:
        network: Any = None  # read as a spec: fields a later version adds take their defaults
        with contextlib.suppress(ValueError, TypeError, KeyError, RecursionError):
            network = ResNetSpec.from_json(saved_spec).to_dict()
        require("spec", isinstance(network, dict), "a network spec (JSON text)")
        mine = ResNetSpec.from_json(expected["spec"]).to_dict()
        if network != mine:
            raise _asked_otherwise(path, "another network", record_differences(network, mine, mine))
    fed = state.get("fed", expected["fed"])
    require("fed", isinstance(fed, dict), "an object", kind("fed"))
    check_same_data(fed, expected["fed"], path)
    for field, high in (("iteration", total), ("epoch", -(-total // per_epoch))):
        value = state.get(field)
        require(field, is_int(value) and 0 <= value <= high, f"an int from 0 to {high}", value)
    iteration, epoch = state["iteration"], state["epoch"]
    loader: Any = state.get("loader")
    require("loader", isinstance(loader, dict), "an object", kind("loader"))
    differ = record_differences(loader, expected["loader"], LOADER_KEYS)
    if differ:
        raise _asked_otherwise(
            path, "other data or another seed", [f"the loader's {d}" for d in differ]
        )
    at_epoch, position = loader.get("epoch"), loader.get("position")
    if not (
        is_int(at_epoch)
        and is_int(position)
        and 0 <= position <= per_epoch
        and at_epoch * per_epoch + position == iteration
        and epoch in (at_epoch, at_epoch + 1)
    ):
        raise fail(
            f"iteration {iteration} and epoch {epoch} disagree with the loader's "
            f"epoch {_short(at_epoch)}, batch {_short(position)} ({per_epoch} an epoch)"
        )
    for field in ("elapsed", "epoch_seconds", "best_val"):  # best_val starts infinite
        value = state.get(field)
        ok = is_real(value) and value >= 0 and (field == "best_val" or math.isfinite(value))
        require(field, ok, "a number >= 0", value)
    warmed_up = state.get("warmed_up")
    require("warmed_up", isinstance(warmed_up, bool), "true or false", warmed_up)
    for field, limit in (("history", epoch), ("steps", iteration)):
        rows: Any = state.get(field)
        require(field, isinstance(rows, list), "a list of rows", kind(field))
        if len(rows) > limit:
            raise fail(
                f"field {field!r} holds {len(rows)} rows, more than the {limit} its progress allows"
            )
        numbers = all(
            isinstance(row, dict) and all(isinstance(k, str) and is_real(v) for k, v in row.items())
            for row in rows
        )
        require(field, numbers, "a list of rows of numbers")
    require(
        "history", len(state["history"]) == epoch, f"one row for each of the {epoch} epochs done"
    )
    for field in ("sums", "logged"):
        like = expected[field]
        wanted = f"a {like.dtype} tensor of shape {list(like.shape)}"
        require(field, tensor_like(state.get(field), like), wanted)
    for field in ("optimizer", "scaler", "rng"):
        require(field, isinstance(state.get(field), dict), "an object", kind(field))
    if expected["ema"] is not None:
        wanted = "an object (the recipe keeps an EMA)"
        require("ema", isinstance(state.get("ema"), dict), wanted, kind("ema"))
    generator = state["rng"].get("torch")
    ok = isinstance(generator, torch.Tensor) and generator.dtype == torch.uint8
    require("rng", ok, "the random generators' states (uint8 tensors)")


def check_run_info(
    info: Mapping[str, Any], path: str | os.PathLike[str] = "run.json"
) -> dict[str, Any]:
    """``run.json``'s entries, checked against a run record's schema (other entries are kept,
    not interpreted); a :class:`RunDirectoryError` names ``path``, the entry, what it must be."""
    where = str(path)

    def fail(entry: str, wanted: str, value: object) -> RunDirectoryError:
        if value is _MISSING:
            return RunDirectoryError(f"{where}: entry {entry!r} is missing; not a run's record")
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return RunDirectoryError(f"{where}: entry {entry!r} must be {wanted}; got {shown}")

    def integer(entry: str, value: object, low: int, optional: bool = True) -> None:
        if optional and (value is None or value is _MISSING):
            return
        if not (is_int(value) and low <= value <= MAX_SEED):
            raise fail(entry, f"an int from {low} to {MAX_SEED}", value)

    def obj(entry: str, value: object) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise fail(entry, "an object", value)
        return value

    if not isinstance(info, Mapping):
        raise RunDirectoryError(f"{where}: expected a JSON object; got {type(info).__name__}")
    integer("seed", info.get("seed", _MISSING), 0, optional=False)
    integer("iterations", info.get("iterations", _MISSING), 1, optional=False)
    data = obj("data", info.get("data", _MISSING))
    source = data.get("data", _MISSING)
    if not isinstance(source, str) or not source:
        raise fail("data.data", "a data set (a path or 'digits')", source)
    if data.get("labels", "fine") not in ("fine", "coarse"):
        raise fail("data.labels", "'fine' or 'coarse'", data.get("labels"))
    for key, low in (("image_size", 1), ("val_size", 0), ("seed", 0)):
        integer(f"data.{key}", data.get(key), low)
    classes = data.get("classes")
    if classes is not None and not (
        isinstance(classes, list)
        and classes
        and all(isinstance(c, str) or (is_int(c) and c >= 0) for c in classes)
    ):
        raise fail("data.classes", "null or a list of class names or indices", classes)
    length = obj("length", info.get("length", _MISSING))
    for key in ("iterations", "epochs"):
        integer(f"length.{key}", length.get(key), 1)
    if "pretrained_cfg" not in info:
        raise fail("pretrained_cfg", "", _MISSING)
    try:
        config_from_dict(info["pretrained_cfg"])
    except (ValueError, TypeError) as error:
        raise RunDirectoryError(f"{where}: entry 'pretrained_cfg': {error}") from None
    texts: dict[str, object] = {}
    if "command" in info:
        command = obj("command", info["command"])
        obj("command.given", command.get("given", {}))
        model = obj("command.model", command.get("model", {}))
        if model.get("name") is not None:  # null: --checkpoint FILE alone named the model
            texts["command.model.name"] = model["name"]
        imports = model.get("imports", [])
        if not (
            isinstance(imports, list)
            and all(isinstance(m, str) and 0 < len(m) <= 200 for m in imports)
            and all(part.isidentifier() for m in imports for part in m.split("."))
        ):
            raise fail("command.model.imports", "a list of module names", imports)
        integer("command.freeze", command.get("freeze"), 0)
    texts.update(run_id=info.get("run_id", _MISSING), recipe_name=info.get("recipe_name", _MISSING))
    for entry, value in texts.items():
        if value is not _MISSING and not (isinstance(value, str) and len(value) <= 4096):
            raise fail(entry, "text", value)
    return dict(info)
