"""atomic_write: the target is the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from resnetlib.files import atomic_path, atomic_write


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    atomic_write(target, lambda file: file.write(b"first"))
    atomic_write(target, lambda file: file.write(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail_halfway(file: BinaryIO) -> None:
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(OSError, match=r"x.bin: could not be written \(disk full\); the previous"):
        atomic_write(target, fail_halfway)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_new_file_gets_the_umasks_mode_like_open(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "x.bin", lambda file: file.write(b"data"))
        with (tmp_path / "y.bin").open("wb") as file:
            file.write(b"data")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o640
    assert (tmp_path / "x.bin").stat().st_mode == (tmp_path / "y.bin").stat().st_mode


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    seen: list[Path] = []

    def write_half(partial: Path) -> None:
        seen.append(partial)
        partial.write_bytes(b"half")
        (tmp_path / (partial.name + ".data")).write_bytes(b"sidecar")  # ONNX external data
        raise RuntimeError("full")

    def export() -> None:
        with atomic_path(target) as partial:
            write_half(partial)

    with pytest.raises(OSError, match=r"model.onnx: could not be written \(full\)"):
        export()
    assert seen[0].parent == tmp_path
    assert seen[0].name.endswith(".onnx")  # writers that check the suffix accept it
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with atomic_path(target) as partial:
        partial.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_dump_json_writes_only_what_parse_json_reads_back() -> None:
    """JSON is written by the reader's rules: what the library writes, it can read again."""
    from resnetlib.files import dump_json, parse_json
    from resnetlib.limits import MAX_JSON_DEPTH

    assert parse_json(dump_json({"a": [1, 2.5, None, "x"]}, what="t")) == {"a": [1, 2.5, None, "x"]}
    assert parse_json(dump_json({"a": ({"b": 1},)}, what="t")) == {"a": [{"b": 1}]}
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    for value, message in (
        (float("nan"), "JSON values only"),
        ({"a": float("-inf")}, "JSON values only"),
        ({1: "a", "1": "b"}, "duplicate key '1'"),
        (deep, "nested more than"),
        ({"a": object()}, "JSON values only"),
        ({1: "x"}, "must have text keys .*got the key 1"),  # it would read back as {"1": "x"}
        ({"a": [{"b": {None: 1}}]}, "got the key None"),
    ):
        with pytest.raises(ValueError, match=message):
            dump_json(value, what="t")
