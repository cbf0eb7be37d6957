"""The one gate for files resnetlib reads or writes: regular files only, bounded by the bytes
actually read; JSON without duplicate keys, non-finite numbers or deep nesting; writes atomic,
never through a symbolic link nor, inside a command (:func:`command_files`), over an input.
"""

from __future__ import annotations

import contextvars
import errno
import json
import os
import pickle
import pickletools
import secrets
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
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
    "check_regular",
    "command_files",
    "dump_json",
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
    """Within this context (each ``resnetlib`` command runs in one), a write over a file read
    as input (by any path or link) raises :class:`OutputIsInputError` before writing."""
    token = _INPUTS.set({})
    try:
        yield
    finally:
        _INPUTS.reset(token)


def check_not_input(target: PathLike) -> None:
    """Raise :class:`OutputIsInputError` (naming both files) when ``target`` is an input of the
    running command: to refuse before a long export (:func:`atomic_write` checks again)."""
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
    return error(f"{printable(path)}: {reason}{f' ({what})' if what else ''}{then}")


# -- reading -------------------------------------------------------------------------------


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


_ONLY_REGULAR = "; resnetlib reads only regular files"


def _only_regular(mode: int, path: PathLike, error: ErrorType, what: str, then: str) -> None:
    """Refuse ``path`` unless ``mode`` (its ``st_mode``) is a regular file's: the one rule."""
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise _refused(error, path, kind, what, then)


def _regular(fd: int, path: PathLike, error: ErrorType, what: str, then: str) -> int:
    """``fd`` if it is a regular file; otherwise it is closed and refused."""
    try:
        _only_regular(os.fstat(fd).st_mode, path, error, what, then)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(path: PathLike, *, what: str = "", error: ErrorType = FileRefusedError) -> None:
    """Refuse ``path``, as :func:`open_regular` would, unless it is (a link to) a regular
    file, without opening it: to check a listing before any file is read. ``OSError``: it
    cannot be looked up (``FileNotFoundError``: missing, or a link to nothing)."""
    _only_regular(os.stat(path).st_mode, path, error, what, _ONLY_REGULAR)


def open_regular(
    path: PathLike, *, what: str = "", error: ErrorType = FileRefusedError, own: bool = False
) -> BinaryIO:
    """``path`` opened for binary reading, refused (as ``error``, naming ``what``) unless it is
    a regular file (a symbolic link that leads to none too). ``own=True``: a command's own
    state, not an input, so it may rewrite it. ``OSError``: the file cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # non-inheritable: os.open adds O_CLOEXEC itself (PEP 446)
    except OSError as failed:
        if failed.errno not in (errno.ENOENT, errno.ELOOP) or not os.path.islink(path):
            raise
        target = printable(os.readlink(path))
        reason = f"a symbolic link to {target}, which leads to no file"
        raise _refused(error, path, reason, what, "; put the file there") from None
    _regular(fd, path, error, what, _ONLY_REGULAR)
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        inputs = _INPUTS.get()
        if not own and inputs is not None:  # remembered by device and inode
            info = os.fstat(fd)
            inputs.setdefault((info.st_dev, info.st_ino), str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(
    path: PathLike,
    *,
    limit: int,
    what: str = "",
    error: ErrorType = FileRefusedError,
    own: bool = False,
) -> bytes:
    """The bytes of the regular file ``path``, refused past ``limit`` bytes actually read
    (``OSError``: it cannot be opened or read)."""
    with open_regular(path, what=what, error=error, own=own) as file:
        # st_size is only a hint for the first read; the bound is on the bytes that come.
        hint = max(0, os.fstat(file.fileno()).st_size)
        chunks = [file.read(min(hint, limit) + 1)]
        size = len(chunks[0])
        while chunks[-1] and size <= limit:
            chunks.append(file.read(min(1 << 20, limit + 1 - size)))
            size += len(chunks[-1])
    data = b"".join(chunks) if any(chunks[1:]) else chunks[0]  # read at once: no copy
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
    """A JSON value the parser hooks refuse."""


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


def _too_deep(value: Any) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def _keys_not_text(value: object) -> list[object]:
    """The keys of the mappings in ``value`` that are not a str (JSON would make them one);
    nesting is bounded by the caller's JSON depth check."""
    pending, found = [value], []
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            found += [key for key in item if not isinstance(key, str)]
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return found


def parse_json(text: str | bytes, *, where: str = "", error: ErrorType = FileRefusedError) -> Any:
    """``json.loads`` refusing duplicate keys, ``NaN``/``Infinity`` (or a number that overflows
    to it) and nesting deeper than ``MAX_JSON_DEPTH``. ``where`` starts the message."""
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
    except ValueError:  # int() of more digits than sys.get_int_max_str_digits() (4,300)
        digits = sys.get_int_max_str_digits()
        raise error(
            f"{at}an integer of more than {digits:,} digits, longer than any number resnetlib reads"
        ) from None
    if _too_deep(value):
        raise error(f"{at}JSON nested more than {MAX_JSON_DEPTH} deep")
    return value


def dump_json(value: object, *, what: str, **options: Any) -> str:
    """``json.dumps(value, **options)``, refused (``ValueError`` naming ``what``) unless
    :func:`parse_json` reads it back: JSON types, finite numbers, no key written twice
    (``1`` and ``"1"``), no deeper than ``MAX_JSON_DEPTH``."""
    try:
        text = json.dumps(value, allow_nan=False, **options)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"{what} must hold JSON values only ({error})") from None
    parse_json(text, where=f"{what} must be JSON that reads back", error=ValueError)
    if keys := _keys_not_text(value):  # JSON would write 1 as "1": not what reads back
        raise ValueError(f"{what} must have text keys (JSON's); got the key {keys[0]!r:.100}")
    return text


def read_json(
    path: PathLike,
    *,
    what: str = "",
    error: ErrorType = FileRefusedError,
    own: bool = False,
) -> Any:
    """A JSON file of at most ``MAX_JSON_BYTES`` (:func:`read_bytes`, then :func:`parse_json`)."""
    data = read_bytes(path, limit=MAX_JSON_BYTES, what=what, error=error, own=own)
    return parse_json(data, where=printable(path), error=error)


def inside(root: PathLike, name: str, *, where: str, error: ErrorType = FileRefusedError) -> Path:
    """``root / name`` for a relative ``name`` read from a file, refused when it would leave
    ``root`` (an absolute path, a ``..`` part, a NUL byte); ``where`` starts the message."""
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
    """The number of opcodes in the pickle ``data``, refused unless each memo index stays
    below it (an index of 2**32 would make the unpickler allocate a huge memo). A caller's
    walk of the result may visit at most one object per opcode (no shared references)."""
    count, damage = 0, ""
    try:
        for opcode, argument, _ in pickletools.genops(data):
            count += 1
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                index = argument if isinstance(argument, int) else -1
                if not 0 <= index <= count:
                    damage = f"a memo index of {index} after {count} opcodes"
                    break
    except (ValueError, pickle.UnpicklingError) as bad:  # genops: an unknown or short opcode
        damage = str(bad) or type(bad).__name__
    if damage:
        raise error(f"{where}: damaged {what} ({damage})")
    return count


# -- writing -------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows opens no directories; its rename is durable enough
        return
    with suppress(OSError):  # some file systems refuse fsync on a directory
        os.fsync(fd)
    os.close(fd)


def _start(path: PathLike) -> tuple[Path, Path, int, Path]:
    """The target (refused when it is an input), its directory, and a new hidden partial file
    there opened ``O_EXCL`` (never a link someone else made) with the umask's mode."""
    target = Path(path)
    check_not_input(target)
    directory = target.parent
    if target.is_dir() and not target.is_symlink():  # a link is replaced, as below
        raise IsADirectoryError(f"{printable(target)}: is a directory; name a file to write")
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        reason = f"could not be written: its directory {printable(directory)} {what}"
        raise _refused(FileNotFoundError, target, reason, "")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:  # the name cut to 120 characters to fit NAME_MAX
        partial = directory / f".{target.name[:120]}.{secrets.token_hex(6)}.partial"
        try:
            return target, directory, os.open(partial, flags, 0o666), partial
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object] | bytes) -> None:
    """Call ``write(file)`` (or write the bytes ``write``) on a temporary file beside ``path``,
    then replace ``path`` with it, fsynced: a crash leaves the previous file or the complete
    new one. A link at ``path`` is replaced, never written through.

    Raises:
        OSError: the write failed (a full disk, no permission); the message names ``path``.
        OutputIsInputError: ``path`` is an input of the running command.
    """
    target, directory, fd, partial = _start(path)
    try:
        with os.fdopen(fd, "wb") as file:
            if isinstance(write, bytes):
                file.write(write)
            else:
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
    return OSError(
        f"{printable(target)}: could not be written ({first_line(error)}); the previous file, if "
        "any, is intact. Is the disk full, or the directory not writable?"
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name; on a clean exit
    it replaces ``path``, on an error it is removed (with any sidecar files named after it).

    Raises:
        OSError: the file could not be written or moved into place (the message names it).
        OutputIsInputError: ``path`` is an input of the running command (checked first).
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
    """A read-write descriptor of the lock file ``path`` (created if missing), refused when it
    is a symbolic link or not a regular file."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as failed:
        if Path(path).is_symlink():
            raise error(
                f"{printable(path)}: a symbolic link; resnetlib never writes through a link it did "
                "not make: remove it"
            ) from None
        raise failed
    return _regular(fd, path, error, "", "; the lock must be a regular file: remove it")
