"""Durable, atomic file writes: a reader sees the old file or the new one, never a part."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..common import PathLike

__all__ = ["atomic_path", "atomic_write"]


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


def _create_partial(directory: Path, name: str) -> tuple[int, Path]:
    """A new hidden ``.NAME.RANDOM.partial`` file in ``directory``, opened for writing.

    Unlike ``tempfile.mkstemp`` (mode 0600), its mode is what the umask gives a new file,
    as if ``open(path, "wb")`` had created it. A crash can leave one behind; its name never
    ends like the target's, so it is not mistaken for one.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        partial = directory / f".{name}.{secrets.token_hex(6)}.partial"
        try:
            return os.open(partial, flags, 0o666), partial
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then replace ``path`` with it.

    The data is flushed to disk before the rename and the directory entry after it, as
    databases do, so a crash or power loss at any point leaves either the previous file intact
    or the complete new one. The temporary file is removed if ``write`` raises; a process
    killed before the rename leaves it behind, under a hidden ``.NAME.*.partial`` name.
    A failed write (a full disk, no permission) is an ``OSError`` naming ``path``.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, partial = _create_partial(directory, target.name)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        Path(partial).unlink(missing_ok=True)
        raise _not_written(target, error) from error
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def _not_written(target: Path, error: Exception) -> OSError:
    """The one-line error for a write that failed: the file, the first line of why."""
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    return OSError(
        f"{target}: could not be written ({reason}); the previous file, if any, is "
        "intact. Is the disk full, or the directory not writable?"
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name (``torch.export
    .save``, an ONNX program's ``save``); on a clean exit it replaces ``path``, on an error it
    is removed (with any sidecar files named after it) and ``path`` stays as it was.

    Raises:
        OSError: the file could not be written or moved into place (the message names it).
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, partial = _create_partial(directory, target.name)
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
