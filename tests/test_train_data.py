"""Data loaders on files written here in each real format (resnetlib.train.data)."""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlib.core.data_config import CIFAR10_CLASSES
from resnetlib.train.data import DataError, ImageDataset, load_data

# --------------------------------------------------------------------------------------
# Writers: CIFAR python batches as published (Python 2, protocol 2) and as pickle writes today
# --------------------------------------------------------------------------------------


def _py2_str(value: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING / BINSTRING)."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def _py2_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _py2_array(array: np.ndarray) -> bytes:
    """An ndarray as Python 2's numpy pickled it: ``numpy.core.multiarray._reconstruct``."""
    assert array.dtype == np.uint8
    shape = b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
        b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_str(b"b")
        + b"\x87R(K\x01"
        + shape
        + dtype
        + b"\x89"
        + _py2_str(array.tobytes())
        + b"tb"
    )


def _py2_value(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        return _py2_array(value)
    if isinstance(value, (bytes, str)):
        return _py2_str(value.encode() if isinstance(value, str) else value)
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    raise TypeError(type(value))


def py2_pickle(batch: dict[str, Any]) -> bytes:
    """A dict pickled as Python 2's cPickle (protocol 2) wrote the published CIFAR files."""
    items = b"".join(_py2_value(k.encode()) + _py2_value(v) for k, v in batch.items())
    return b"\x80\x02}(" + items + b"u."


def _write(path: Path, batch: dict[str, Any], form: str | int) -> None:
    if form == "py2":
        path.write_bytes(py2_pickle(batch))
    else:  # today's pickle, str keys
        path.write_bytes(pickle.dumps(batch, protocol=int(form)))


def _images(n: int, seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * size * size), dtype=np.uint8)


def write_cifar10(root: Path, form: str | int = "py2", n: int = 3) -> dict[str, Any]:
    root.mkdir(parents=True)
    names = list(CIFAR10_CLASSES)  # as published: the names CIFAR-10 weights carry
    _write(root / "batches.meta", {"label_names": names, "num_cases_per_batch": n}, form)
    written: dict[str, Any] = {"names": names, "train": [], "labels": []}
    for i in range(1, 6):
        data = _images(n, i)
        labels = [(i + j) % 10 for j in range(n)]
        _write(root / f"data_batch_{i}", {"batch_label": "x", "data": data, "labels": labels}, form)
        written["train"].append(data)
        written["labels"] += labels
    written["test"] = _images(2, 9)
    _write(root / "test_batch", {"data": written["test"], "labels": [4, 7]}, form)
    return written


def write_cifar100(root: Path, form: str | int = "py2") -> None:
    root.mkdir(parents=True)
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    _write(root / "meta", {"fine_label_names": fine, "coarse_label_names": coarse}, form)
    for split, n in (("train", 4), ("test", 2)):
        batch = {
            "data": _images(n, n),
            "fine_labels": [99 - j for j in range(n)],
            "coarse_labels": [19 - j for j in range(n)],
        }
        _write(root / split, batch, form)


def test_py2_writer_emits_the_published_form() -> None:
    stream = py2_pickle({"data": _images(2, 0), "labels": [1, 2]})
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(stream)]
    assert ops[0] == ("PROTO", 2)
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert ("SHORT_BINSTRING", "data") in ops  # genops shows py2 str as latin-1 text
    # the stock unpickler with encoding="bytes" reads it as Python 3 reads the real files
    loaded = pickle.loads(stream, encoding="bytes")
    assert set(loaded) == {b"data", b"labels"}
    np.testing.assert_array_equal(loaded[b"data"], _images(2, 0))


@pytest.mark.parametrize("form", ["py2", 2, 4, 5])
def test_cifar10(tmp_path: Path, form: str | int) -> None:
    written = write_cifar10(tmp_path / "cifar-10-batches-py", form)
    splits = load_data(tmp_path / "cifar-10-batches-py")
    assert splits.val is None
    assert splits.train.name == "cifar10"
    assert splits.train.classes == tuple(written["names"])
    assert splits.train.images.shape == (15, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8
    expected = np.concatenate(written["train"]).reshape(-1, 3, 32, 32)
    assert torch.equal(splits.train.images, torch.from_numpy(expected))
    assert splits.train.labels.tolist() == written["labels"]
    assert splits.test.labels.tolist() == [4, 7]
    assert torch.equal(splits.test.images, torch.from_numpy(written["test"].reshape(-1, 3, 32, 32)))


@pytest.mark.parametrize("form", ["py2", 4])
def test_cifar100_fine_and_coarse(tmp_path: Path, form: str | int) -> None:
    write_cifar100(tmp_path / "c100", form)
    fine = load_data(tmp_path / "c100")
    coarse = load_data(tmp_path / "c100", labels="coarse")
    assert fine.train.labels.tolist() == [99, 98, 97, 96]
    assert coarse.train.labels.tolist() == [19, 18, 17, 16]
    assert len(fine.train.classes) == 100
    assert coarse.test.classes[19] == "coarse19"
    assert torch.equal(fine.test.images, coarse.test.images)
    assert fine.test.images.shape == (2, 3, 32, 32)


def test_the_source_is_recorded_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path was recorded as typed, and a record read in another directory named
    other data (or none); "digits" stays as it is."""
    write_cifar10(tmp_path / "cifar-10-batches-py")
    monkeypatch.chdir(tmp_path)
    for typed in ("cifar-10-batches-py", "./cifar-10-batches-py", Path("cifar-10-batches-py")):
        source = load_data(typed, val_size=2).source
        assert source is not None
        assert source["data"] == str((tmp_path / "cifar-10-batches-py").resolve())
        assert source["val_size"] == 2
    assert (load_data("digits").source or {})["data"] == "digits"


def test_val_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "c10", n=4)
    full = load_data(tmp_path / "c10").train
    a = load_data(tmp_path / "c10", val_size=5, seed=1)
    b = load_data(tmp_path / "c10", val_size=5, seed=1)
    c = load_data(tmp_path / "c10", val_size=5, seed=2)
    assert a.val is not None
    assert b.val is not None
    assert c.val is not None
    assert len(a.train) == 15
    assert len(a.val) == 5
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    rows = {bytes(x.flatten().tolist()) for x in torch.cat([a.train.images, a.val.images])}
    assert rows == {bytes(x.flatten().tolist()) for x in full.images}
    with pytest.raises(ValueError, match="val_size"):
        load_data(tmp_path / "c10", val_size=20)
    # hold_out records its seed, so the recorded source loads the same split again
    held = load_data(tmp_path / "c10").hold_out(5, seed=7)
    assert held.source is not None
    assert (held.source["val_size"], held.source["seed"]) == (5, 7)
    record = dict(held.source)
    again = load_data(record.pop("data"), **record)
    assert again.val is not None
    assert torch.equal(again.val.images, held.val.images)


# --------------------------------------------------------------------------------------
# Files that must be refused
# --------------------------------------------------------------------------------------


class _Opens:
    """Unpickling this creates a file (through builtins.open)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _evil_global(marker: Path) -> bytes:
    command = f"touch {marker}".encode()
    return b"\x80\x02cos\nsystem\n" + _py2_str(command) + b"\x85R."


@pytest.mark.parametrize("kind", ["global", "reduce", "nested"])
def test_evil_pickle_is_refused_and_runs_nothing(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    marker = tmp_path / "marker"
    if kind == "global":
        stream = _evil_global(marker)
        expected = "os.system"
    elif kind == "reduce":
        stream = pickle.dumps(_Opens(marker), protocol=2)
        expected = rf"{open.__module__}\.open"  # io.open
    else:  # inside an otherwise valid batch
        stream = pickle.dumps({"data": _images(3, 0), "labels": [_Opens(marker)]}, protocol=4)
        expected = rf"{open.__module__}\.open"  # io.open
    (root / "data_batch_3").write_bytes(stream)
    with pytest.raises(DataError, match=rf"data_batch_3.*{expected}"):
        load_data(root)
    assert not marker.exists()


def test_an_empty_bytes_value_of_protocol_2_loads(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    written = write_cifar10(root)
    batch = {"batch_label": b"", "data": written["train"][0], "labels": written["labels"][:3]}
    (root / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))  # b"": bytes()
    assert load_data(root).train.labels.tolist() == written["labels"]


@pytest.mark.parametrize("argument", [_py2_int(2**31 - 1), b"(J\x00\x00\x00\x01\x85t"])
def test_bytes_with_arguments_is_refused(tmp_path: Path, argument: bytes) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    stream = b"\x80\x02c__builtin__\nbytes\n" + argument + b"\x85R."  # never allocated
    (root / "data_batch_2").write_bytes(stream)
    with pytest.raises(DataError, match=r"data_batch_2: .*__builtin__\.bytes with arguments"):
        load_data(root)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([b"\xff"] + [b"b"] * 9, r"'label_names' name 0 is not UTF-8 \(byte 0\)"),
        ([b"x" * 1001] * 10, r"'label_names' as a model's label_names .* at most 1000 characters"),
        ([b"a"] * 10, r"'label_names' names class 'a' twice; name each class once"),
        (b"abc", r"'label_names' must be a list of at most 10,000,000 names"),
    ],
)
def test_class_names_a_model_would_refuse_are_refused_at_load(
    tmp_path: Path, names: Any, message: str
) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "batches.meta").write_bytes(py2_pickle({"label_names": names}))
    with pytest.raises(DataError, match=r"batches\.meta: " + message):
        load_data(root)


def test_truncated_batch(tmp_path: Path) -> None:
    root = tmp_path / "c10"
    write_cifar10(root)
    path = root / "data_batch_2"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"data_batch_2.*damaged"):
        load_data(root)


def test_fewer_images_than_labels(tmp_path: Path) -> None:
    root = tmp_path / "c10"
    write_cifar10(root)
    _write(root / "test_batch", {"data": _images(2, 0), "labels": [1, 2, 3]}, "py2")
    with pytest.raises(DataError, match="test_batch: 2 images"):
        load_data(root)


def test_wrong_shape(tmp_path: Path) -> None:
    root = tmp_path / "c10"
    write_cifar10(root)
    data = np.zeros((3, 3000), dtype=np.uint8)
    _write(root / "data_batch_1", {"data": data, "labels": [0, 1, 2]}, "py2")
    with pytest.raises(DataError, match=r"data_batch_1: 'data' has shape \(3, 3000\)"):
        load_data(root)


def test_missing_batch_and_key(tmp_path: Path) -> None:
    root = tmp_path / "c10"
    write_cifar10(root)
    (root / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5: missing"):
        load_data(root)
    _write(root / "data_batch_5", {"data": _images(3, 0)}, 4)
    with pytest.raises(DataError, match=r"data_batch_5.*no 'labels'"):
        load_data(root)


def test_missing_path_and_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: no such file"):
        load_data(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"junk: in no known data layout.*cifar-10-batches-py"):
        load_data(tmp_path / "junk")
    write_cifar10(tmp_path / "c10")
    with pytest.raises(DataError, match="coarse labels exist only for CIFAR-100"):
        load_data(tmp_path / "c10", labels="coarse")


# --------------------------------------------------------------------------------------
# Image folders and TinyImageNet-200
# --------------------------------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _png(path: Path, seed: int, size: int = 8) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def test_image_folder_decodes_exactly_and_caches(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pets"
    cat0 = _png(root / "train" / "cat" / "a.png", 0)
    _png(root / "train" / "cat" / "b.png", 1)
    dog = _png(root / "train" / "dog" / "a.png", 2)
    _png(root / "test" / "dog" / "x.png", 3)
    splits = load_data(root)
    assert splits.train.classes == ("cat", "dog")
    assert splits.train.name == "pets"
    assert splits.train.labels.tolist() == [0, 0, 1]
    assert splits.test.labels.tolist() == [1]
    assert torch.equal(splits.train.images[0], torch.from_numpy(cat0).permute(2, 0, 1))
    assert torch.equal(splits.train.images[2], torch.from_numpy(dog).permute(2, 0, 1))
    assert len(list(cache_dir.glob("*.pt"))) == 1

    import resnetlib.train.data as data_module

    def no_decoding(*args: Any) -> torch.Tensor:
        raise AssertionError("decoded again although the files did not change")

    with monkeypatch.context() as patch:
        patch.setattr(data_module, "_decode", no_decoding)
        again = load_data(root)
    assert torch.equal(again.train.images, splits.train.images)

    _png(root / "train" / "dog" / "c.png", 4)  # a new file invalidates the cache
    changed = load_data(root)
    assert changed.train.labels.tolist() == [0, 0, 1, 1]
    # a changed file (same name, new content and mtime) too
    replaced = _png(root / "train" / "cat" / "a.png", 5)
    stat = (root / "train" / "cat" / "a.png").stat()
    os.utime(root / "train" / "cat" / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert torch.equal(load_data(root).train.images[0], torch.from_numpy(replaced).permute(2, 0, 1))


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes: Linux's")
def test_names_that_are_not_utf8_load(tmp_path: Path, cache_dir: Path) -> None:
    """A file or class folder whose name is not UTF-8 stopped the load with a raw
    UnicodeEncodeError naming no file (the cache's fingerprint encoded the name)."""
    rng = np.random.default_rng(0)
    odd = os.fsdecode(b"lat\xe9")  # the surrogate Python gives a byte that is not UTF-8
    for split in ("train", "test"):
        for label in ("a", odd):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(2):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{odd}{index}.png")
    data = load_data(tmp_path)
    assert data.classes == ("a", odd)
    assert data.sizes() == {"train": 4, "val": 0, "test": 4}
    assert torch.equal(load_data(tmp_path).train.images, data.train.images)  # from the cache


def test_every_format_the_decoder_reads_is_listed(tmp_path: Path, cache_dir: Path) -> None:
    """.ppm and .tga files (formats the decoder and predict read) were skipped silently."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, suffix in (("a", ".ppm"), ("b", ".TGA"), ("c", ".pgm")):
            (tmp_path / split / label).mkdir(parents=True)
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / label / f"x{suffix}", format=None)
    data = load_data(tmp_path)
    assert data.classes == ("a", "b", "c")
    assert data.sizes() == {"train": 3, "val": 0, "test": 3}


def test_image_folder_sizes(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "mixed"
    _png(root / "train" / "a" / "1.png", 0, size=8)
    _png(root / "train" / "a" / "2.png", 1, size=6)
    _png(root / "val" / "a" / "1.png", 2, size=8)
    # The refusal names the option both ways: the command line has no image_size.
    with pytest.raises(DataError, match=r"differ in size.*image_size to resize \(--image-size\)"):
        load_data(root)
    assert load_data(root, image_size=4).train.images.shape == (2, 3, 4, 4)
    _png(root / "train" / "a" / "2.png", 1, size=8)  # train 8x8, val 6x6
    _png(root / "val" / "a" / "1.png", 2, size=6)
    with pytest.raises(DataError, match=r"test images .*image_size to resize \(--image-size\)"):
        load_data(root)


def test_image_folder_damaged_file(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "broken"
    _png(root / "train" / "a" / "1.png", 0)
    _png(root / "val" / "a" / "1.png", 0)
    (root / "train" / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"2\.png: not a readable image"):
        load_data(root)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and devices are POSIX")
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dangling", r"missing \(or a link to nothing\)"),
        ("device", r"a character device \(an image\); resnetlib reads only regular files"),
        ("fifo", r"a FIFO \(an image\)"),
        ("directory", r"a directory \(an image\)"),
    ],
)
def test_an_image_entry_that_is_no_regular_file_is_refused_when_listed(
    tmp_path: Path, cache_dir: Path, kind: str, message: str
) -> None:
    root = tmp_path / "pets"
    for i in range(8):
        _png(root / "train" / ("cat" if i % 2 else "dog") / f"{i}.png", i)
    _png(root / "val" / "cat" / "x.png", 9)
    entry = root / "train" / "cat" / "d.png"
    if kind == "dangling":
        entry.symlink_to(tmp_path / "gone.png")
    elif kind == "device":
        entry.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.mkdir()
    listed: list[object] = []
    with pytest.raises(DataError, match=rf"cat{re.escape(os.sep)}d\.png: {message}"):
        load_data(root, before_decoding=lambda *args: listed.append(args))
    assert listed == []  # refused before any image is decoded


def test_hidden_entries_of_an_image_folder_are_skipped(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "pets"
    _png(root / "train" / "cat" / "a.png", 0)
    _png(root / "train" / "dog" / "a.png", 1)
    _png(root / "train" / ".git" / "x.png", 2)  # not a class
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "cat" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    _png(root / "val" / "dog" / "b.png", 3)
    _png(root / "val" / ".ipynb_checkpoints" / "b.png", 4)  # not a class of train's
    splits = load_data(root)
    assert splits.classes == ("cat", "dog")
    assert splits.sizes() == {"train": 2, "val": 0, "test": 1}


def test_classes_by_name_before_index(tmp_path: Path, cache_dir: Path) -> None:
    """Class folders named by numbers: --classes 3,2 took "3" and "2" as indices (folders "8"
    and "5"). A class's name wins; an item that names no class is an index."""
    root = tmp_path / "numbers"
    for seed, name in enumerate(("2", "3", "5", "8")):
        _png(root / "train" / name / "a.png", seed)
        _png(root / "test" / name / "a.png", seed + 4)
    for classes in (["3", "2"], ["1", "0"], [1, 0], ["3", 0]):
        assert load_data(root, classes=classes).classes == ("3", "2"), classes
    with pytest.raises(DataError, match=r"no class '9' and class index 9 is not in 0\.\.3"):
        load_data(root, classes=["9"])


def test_tinyimagenet(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn0000\tother\n")
    for k, wnid in enumerate(wnids):
        for j in range(2):
            path = root / "train" / wnid / "images" / f"{wnid}_{j}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            gray = k == 1 and j == 1  # TinyImageNet has some grayscale images
            Image.new("L" if gray else "RGB", (16, 16), 100 + 50 * k).save(path, "JPEG")
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for j, wnid in enumerate([wnids[1], wnids[0], wnids[1]]):
        Image.new("RGB", (16, 16), 30 * j).save(root / "val" / "images" / f"val_{j}.JPEG")
        lines.append(f"val_{j}.JPEG\t{wnid}\t0\t0\t15\t15")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    splits = load_data(root)
    assert splits.train.name == "tinyimagenet"
    assert splits.train.classes == ("goldfish, Carassius auratus", "n01629819")
    assert splits.train.images.shape == (4, 3, 16, 16)
    assert splits.train.labels.tolist() == [0, 0, 1, 1]
    assert splits.test.labels.tolist() == [1, 0, 1]
    # grayscale became RGB; JPEG of a flat colour decodes to (nearly) that colour
    assert (splits.train.images[3].float() - 150).abs().max() <= 2
    assert load_data(root, image_size=8).test.images.shape == (3, 3, 8, 8)
    # A class is chosen by its wnid too (its words.txt name holds commas: no --classes item).
    chosen = load_data(root, classes=["n01629819", "n01443537"])
    assert chosen.classes == ("n01629819", "goldfish, Carassius auratus")
    assert chosen.test.labels.tolist() == [0, 1, 0]
    assert load_data(root, classes=["goldfish, Carassius auratus", 1]).classes == splits.classes

    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:1: expected"):
        load_data(root)


# --------------------------------------------------------------------------------------
# Built-in digits
# --------------------------------------------------------------------------------------


def test_digits() -> None:
    splits = load_data()
    assert (len(splits.train), len(splits.test)) == (1500, 297)
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.classes == tuple("0123456789")
    counts = torch.bincount(splits.test.labels, minlength=10)
    assert int(counts.min()) >= 28  # stratified: 29.7 per class
    assert int(counts.max()) <= 31
    native = load_data("digits", image_size=8)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    expected = torch.from_numpy(np.round(bunch.images * 255 / 16).astype(np.uint8))
    train_and_test = torch.cat([native.train.images[:, 0], native.test.images[:, 0]])
    assert sorted(map(bytes, train_and_test.flatten(1).tolist())) == sorted(
        map(bytes, expected.flatten(1).tolist())
    )
    assert torch.equal(native.train.images[:, 0], native.train.images[:, 2])
    again = load_data("digits", val_size=100, seed=3)
    assert again.val is not None
    assert len(again.val) == 100
    assert len(again.train) == 1400
    assert torch.equal(load_data("digits").test.images, splits.test.images)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    _png(tmp_path / "f" / "train" / "a" / "1.png", 0)
    _png(tmp_path / "f" / "test" / "a" / "1.png", 0)
    with pytest.raises(ImportError, match=r"Pillow.*resnetlib\[train\]"):
        load_data(tmp_path / "f")


def test_dataset_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ("a",), "x")
    with pytest.raises(ValueError, match="labels must lie"):
        ImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ("a",), "x")


def test_importing_the_loaders_stays_light() -> None:
    import subprocess

    code = (
        "import sys, resnetlib.train.data, resnetlib.train.pipeline; "
        "print(sorted(m for m in ('PIL', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]"
