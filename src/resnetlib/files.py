"""The one gate for files: every file resnetlib reads or writes passes through here.

Reading (:func:`open_regular`, :func:`read_bytes`, :func:`read_text`, :func:`read_json`):

- only a regular file is read: a FIFO, a character device or a directory is refused before
  a byte is read (a FIFO is opened without blocking, so it cannot hang the reader);
- a whole-file read stops one byte past its limit, so the bound is what was read, not what
  ``st_size`` claims (``/proc`` files claim 0);
- JSON refuses duplicate keys, ``NaN``/``Infinity`` and numbers that overflow, and nesting
  deeper than :data:`~resnetlib.limits.MAX_JSON_DEPTH`; a pickle's memo is checked before
  it is unpickled (:func:`pickle_opcodes`);
- a path named inside a file stays inside its root (:func:`inside`).

Writing (:func:`atomic_write`, :func:`atomic_path`, :func:`open_lock`): a temporary file
beside the target, fsynced and renamed over it, so a reader sees the old file or the new one;
a symbolic link is never written through (a rename replaces the link itself, and the lock
file is opened with ``O_NOFOLLOW``); and inside a command (:func:`command_files`), no write
replaces a file that the command read as input, by path, hard link or symbolic link.

Files are data, never code: nothing here imports or calls what a file names.
"""

from __future__ import annotations

import contextvars
import json
import os
import pickle
import pickletools
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any, BinaryIO

from .common import PathLike, first_line, printable
from .limits import MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_TEXT_BYTES

__all__ = [
    "FileRefusedError",
    "OutputIsInputError",
    "atomic_path",
    "atomic_write",
    "check_not_input",
    "command_files",
    "inside",
    "open_lock",
    "open_regular",
    "parse_json",
    "pickle_opcodes",
    "read_bytes",
    "read_json",
    "read_text",
]


class FileRefusedError(ValueError):
    """A file resnetlib will not read or write as it is (not a regular file, too large,
    malformed JSON, a path leaving its root); the message names the file and why."""


class OutputIsInputError(FileRefusedError):
    """A command was asked to write over one of its own inputs."""


ErrorType = type[Exception]


# -- what a command has read ---------------------------------------------------------------

_INPUTS: contextvars.ContextVar[dict[tuple[int, int], str] | None] = contextvars.ContextVar(
    "resnetlib_inputs", default=None
)


@contextmanager
def command_files() -> Iterator[None]:
    """Within this context, every file read as input is remembered, and a write that would
    replace one (same path, a hard link or a symbolic link to it) raises
    :class:`OutputIsInputError` before anything is written. Each ``resnetlib`` command runs
    inside one."""
    token = _INPUTS.set({})
    try:
        yield
    finally:
        _INPUTS.reset(token)


def _remember_input(fd: int, path: PathLike) -> None:
    inputs = _INPUTS.get()
    if inputs is not None:
        info = os.fstat(fd)
        inputs.setdefault((info.st_dev, info.st_ino), str(path))


def check_not_input(target: PathLike) -> None:
    """Refuse ``target`` as an output when it is an input of the running command (same path,
    a hard link or a symbolic link to it): for a command that should refuse before a long
    export, rather than when it writes (:func:`atomic_write` checks again).

    Raises:
        OutputIsInputError: naming both files.
    """
    inputs = _INPUTS.get()
    if not inputs:
        return
    try:
        info = os.stat(target)
    except OSError:  # no file there yet (or a dangling link): nothing to replace
        return
    source = inputs.get((info.st_dev, info.st_ino))
    if source is not None:
        same = "is" if os.path.abspath(source) == os.path.abspath(target) else "is the same file as"
        raise OutputIsInputError(
            f"{printable(target)}: {same} {printable(source)}, an input of this command; "
            "writing it would destroy the input: choose another output path"
        )


def _refused(error: ErrorType, path: PathLike, reason: str, what: str, then: str = "") -> Exception:
    """``error`` saying ``PATH: REASON (WHAT)THEN``, the one shape of a refusal's message."""
    return error(f"{printable(path)}: {reason}{f' ({what})' if what else ''}{then}")


# -- reading -------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _regular(fd: int, path: PathLike, error: ErrorType, what: str, then: str) -> int:
    """``fd`` where it is a regular file; otherwise it is closed and the refusal raised."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    raise _refused(error, path, _kind(mode), what, then)


def open_regular(
    path: PathLike, *, what: str = "", error: ErrorType = FileRefusedError, own: bool = False
) -> BinaryIO:
    """``path`` opened for binary reading, refused unless it is a regular file (after
    following symbolic links): the one way resnetlib opens a file to read.

    ``what`` names the file's role in the message; ``error`` is the exception raised for a
    refusal (each reader's own error type). ``own=True`` marks a command's own state (a run
    directory's ``state.pt``, a cache): not an input, so the command may rewrite it.

    Raises:
        OSError: the file cannot be opened (``FileNotFoundError``, ``PermissionError``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    _regular(fd, path, error, what, "; resnetlib reads only regular files")
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if not own:
            _remember_input(fd, path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_CHUNK = 1 << 20


def read_bytes(
    path: PathLike,
    *,
    limit: int,
    what: str = "",
    error: ErrorType = FileRefusedError,
    own: bool = False,
) -> bytes:
    """The bytes of the regular file ``path``, refused past ``limit`` bytes actually read.

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open_regular(path, what=what, error=error, own=own) as file:
        # st_size is only a hint for the first read (read(n) allocates n bytes up front);
        # the bound is on the bytes that actually come.
        hint = max(0, os.fstat(file.fileno()).st_size)
        chunks = [file.read(min(hint, limit) + 1)]
        size = len(chunks[0])
        while chunks[-1] and size <= limit:
            chunks.append(file.read(min(_CHUNK, limit + 1 - size)))
            size += len(chunks[-1])
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()  # the empty read at the end of the file
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(data) > limit:
        raise _refused(error, path, f"larger than {limit:,} bytes", what, "; not such a file")
    return data


def read_text(
    path: PathLike,
    *,
    limit: int = MAX_TEXT_BYTES,
    what: str = "",
    error: ErrorType = FileRefusedError,
    own: bool = False,
) -> str:
    """A UTF-8 text file (:func:`read_bytes`), refused when it is not UTF-8."""
    data = read_bytes(path, limit=limit, what=what, error=error, own=own)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise _refused(error, path, f"not UTF-8 text (byte {bad.start})", what) from None


class _RefusedError(Exception):
    """A JSON value the parser hooks refuse: duplicate key, non-finite number."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RefusedError(f"duplicate key {key[:100]!r} (a JSON object names each key once)")
        result[key] = value
    return result


def _constant(name: str) -> float:
    raise _RefusedError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _RefusedError(f"{text[:40]} is out of a float's range")
    return value


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (iterative: no recursion limit)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, (dict, list)):
            continue
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(text: str | bytes, *, where: str = "", error: ErrorType = FileRefusedError) -> Any:
    """``json.loads`` with the gate's rules: no duplicate keys, no ``NaN``/``Infinity`` (nor
    a number that overflows to it), at most :data:`~resnetlib.limits.MAX_JSON_DEPTH` deep.
    ``where`` starts the message (a path, or "--recipe"; empty: no prefix)."""
    at = f"{where}: " if where else ""
    try:
        value = json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_finite
        )
    except _RefusedError as refused:
        raise error(f"{at}{refused}") from None
    except json.JSONDecodeError as bad:
        raise error(f"{at}not valid JSON (line {bad.lineno}: {bad.msg})") from None
    except UnicodeDecodeError as bad:
        raise error(f"{at}not UTF-8 text (byte {bad.start})") from None
    except RecursionError:
        raise error(f"{at}JSON nested more than {MAX_JSON_DEPTH} deep") from None
    except ValueError as bad:  # an integer of more than 4,300 digits
        raise error(f"{at}{bad}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise error(f"{at}JSON nested more than {MAX_JSON_DEPTH} deep")
    return value


def read_json(
    path: PathLike,
    *,
    what: str = "",
    error: ErrorType = FileRefusedError,
    limit: int = MAX_JSON_BYTES,
    own: bool = False,
) -> Any:
    """A JSON file (:func:`read_bytes`, then :func:`parse_json`)."""
    data = read_bytes(path, limit=limit, what=what, error=error, own=own)
    return parse_json(data, where=printable(path), error=error)


def inside(root: PathLike, name: str, *, where: str, error: ErrorType = FileRefusedError) -> Path:
    """``root / name`` for a relative ``name`` read from a file, refused when it would
    leave ``root`` (an absolute path, a ``..`` part, a NUL byte). ``where`` names the line
    that gave it, for the message."""
    pure = PurePath(name)
    if not name or "\0" in name or pure.is_absolute() or pure.anchor or ".." in pure.parts:
        raise error(
            f"{where}: {name[:200]!r} is not a path inside {printable(root)} (absolute paths and "
            "'..' are refused)"
        )
    return Path(root) / pure


def pickle_opcodes(
    data: bytes, *, where: str, what: str = "pickle", error: ErrorType = FileRefusedError
) -> int:
    """The number of opcodes in the pickle ``data``, checked before it is unpickled: each
    memo index stays below the number of opcodes (an index of 2**32 would make the
    unpickler allocate its memo for it).

    The count bounds the work after unpickling: a pickle without shared references has at
    most one object per opcode, so a walk of the result that visits more (lists that
    reference each other, doubling at each level) is refused by its caller.
    """
    count = 0
    try:
        for opcode, argument, _ in pickletools.genops(data):
            count += 1
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                index = argument if isinstance(argument, int) else -1
                if not 0 <= index <= count:
                    raise error(
                        f"{where}: damaged {what} (a memo index of {index} after {count} opcodes)"
                    )
    except (ValueError, pickle.UnpicklingError) as bad:  # genops: an unknown or short opcode
        raise error(f"{where}: damaged {what} ({bad})") from None
    return count


# -- writing -------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows opens no directories; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


_MAX_STEM = 120  # of the target's name inside a temporary name, so it fits NAME_MAX (255)


def _create_partial(directory: Path, name: str) -> tuple[int, Path]:
    """A new hidden ``.NAME.RANDOM.partial`` file in ``directory``, opened for writing.

    Unlike ``tempfile.mkstemp`` (mode 0600), its mode is what the umask gives a new file,
    as if ``open(path, "wb")`` had created it. ``O_EXCL`` creates it or fails, so it is never
    a link someone else made. A crash can leave one behind; its name never ends like the
    target's, so it is not mistaken for one. A long ``name`` is shortened in it, so any
    name the file system allows can be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        partial = directory / f".{name[:_MAX_STEM]}.{secrets.token_hex(6)}.partial"
        try:
            return os.open(partial, flags, 0o666), partial
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def _start(path: PathLike) -> tuple[Path, Path, int, Path]:
    """The target (refused when it is an input), its directory, and a new partial file there."""
    target = Path(path)
    check_not_input(target)
    directory = target.parent if str(target.parent) else Path(".")
    return target, directory, *_create_partial(directory, target.name)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then replace ``path`` with it.

    The data is flushed to disk before the rename and the directory entry after it, as
    databases do, so a crash or power loss at any point leaves either the previous file intact
    or the complete new one. The temporary file is removed if ``write`` raises; a process
    killed before the rename leaves it behind, under a hidden ``.NAME.*.partial`` name.
    A symbolic link at ``path`` is replaced, never written through.

    Raises:
        OSError: the write failed (a full disk, no permission); the message names ``path``.
        OutputIsInputError: ``path`` is an input of the running command.
    """
    target, directory, fd, partial = _start(path)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)):  # torch.save: a full disk, RuntimeError
            raise _not_written(target, error) from error
        raise
    _fsync_directory(directory)


def _not_written(target: Path, error: Exception) -> OSError:
    """The one-line error for a write that failed: the file, the first line of why."""
    return OSError(
        f"{printable(target)}: could not be written ({first_line(error)}); the previous file, if "
        "any, is intact. Is the disk full, or the directory not writable?"
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name (``torch.export
    .save``, an ONNX program's ``save``); on a clean exit it replaces ``path``, on an error it
    is removed (with any sidecar files named after it) and ``path`` stays as it was.

    Raises:
        OSError: the file could not be written or moved into place (the message names it).
        OutputIsInputError: ``path`` is an input of the running command (checked first,
            before the writer runs).
    """
    target, directory, fd, partial = _start(path)
    os.close(fd)
    temporary = partial.with_name(partial.name + target.suffix)  # writers may check suffixes
    partial.unlink()
    try:
        yield temporary
        os.replace(temporary, target)
    except (OSError, RuntimeError) as error:
        raise _not_written(target, error) from error
    finally:
        for leftover in directory.glob(temporary.name + "*"):
            leftover.unlink(missing_ok=True)
    _fsync_directory(directory)


def open_lock(path: PathLike, *, error: ErrorType = FileRefusedError) -> int:
    """A descriptor of the lock file ``path`` (created if missing), read-write: refused when
    ``path`` is a symbolic link or not a regular file, so locking never truncates another
    file through a link."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as failed:
        if Path(path).is_symlink():
            raise error(
                f"{printable(path)}: a symbolic link; resnetlib never writes through a link it did "
                "not make: remove it"
            ) from None
        raise failed
    return _regular(fd, path, error, "", "; the lock must be a regular file: remove it")
