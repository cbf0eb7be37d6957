"""Hostile and careless inputs to the data loaders, checkpoints, recipes and summaries
(issue 17): each file is made here, as an attacker or a careless user would make it, and
each memory case runs in a subprocess under an address-space limit (``RLIMIT_AS``) set
relative to what the process maps after its imports, so it holds for a CUDA torch too."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlib.train.data import DataError, load_data
from tests.test_train_data import _py2_int, _py2_str, write_cifar10

# --------------------------------------------------------------------------------------
# A subprocess under an address-space limit
# --------------------------------------------------------------------------------------

_LIMITED = """
import json, resource, sys, time
from pathlib import Path
import numpy, torch, PIL.Image, resnetlib, resnetlib.train.data, resnetlib.analysis

def address_space():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")

limit = address_space() + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
error = None
try:
    exec(sys.argv[2])
except BaseException as raised:  # MemoryError included
    error = raised
print(json.dumps({
    "error": None if error is None else type(error).__name__,
    "message": "" if error is None else str(error)[:2000],
    "seconds": time.perf_counter() - start,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "imports_mb": before / 1024,
}))
"""


def run_limited(code: str, headroom: int = 2**30) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter that may map ``headroom`` bytes beyond its imports.

    Returns the exception's class name (``error``, None when none), its message, the
    seconds taken and the peak resident memory (``peak_mb``; ``imports_mb`` before ``code``).
    """
    env = dict(os.environ, MALLOC_ARENA_MAX="2")  # threads' malloc arenas map 64 MB each
    result = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(headroom), code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


# --------------------------------------------------------------------------------------
# CIFAR pickles: claims checked against the file's bytes, labels checked as integers
# --------------------------------------------------------------------------------------


def _ndarray_call(shape: tuple[int, ...], dtype: bytes) -> bytes:
    """``numpy.ndarray(shape, dtype)`` called by the pickle: memory for what it claims."""
    dims = b"(" + b"".join(_py2_int(d) for d in shape) + b"t"
    return b"cnumpy\nndarray\n" + dims + _py2_str(dtype) + b"\x86R"


def _claiming(images: int) -> bytes:
    """A CIFAR batch of about 100 bytes whose arrays claim ``images`` images."""
    data = _ndarray_call((images, 3072), b"u1")
    labels = _ndarray_call((images,), b"i8")
    return b"\x80\x02}(" + _py2_str(b"data") + data + _py2_str(b"labels") + labels + b"u."


def _reconstructing(images: int) -> bytes:
    """``_reconstruct(ndarray, (images, 3072), "B")``: numpy allocates the claimed shape."""
    call = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n("
        + _py2_int(images)
        + _py2_int(3072)
        + b"t"
        + _py2_str(b"B")
        + b"\x87R"
    )
    return b"\x80\x02}(" + _py2_str(b"data") + call + _py2_str(b"labels") + b"]u."


def _lying_state(images: int) -> bytes:
    """A published-form array whose state claims ``images`` images but holds 16 bytes."""
    dims = b"(" + _py2_int(images) + _py2_int(3072) + b"t"
    dtype = b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_str(b"b")
        + b"\x87R(K\x01"
        + dims
        + dtype
        + b"\x89"
        + _py2_str(bytes(16))
        + b"tb"
    )
    return b"\x80\x02}(" + _py2_str(b"data") + array + _py2_str(b"labels") + b"]u."


def _long_bytes() -> bytes:
    """A BINBYTES8 whose length claims 1 TiB."""
    return b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8e" + struct.pack("<Q", 2**40) + b"x"


@pytest.mark.parametrize(
    "stream",
    [
        _claiming(200_000),
        _claiming(3_000_000),
        _reconstructing(200_000),
        _lying_state(200_000),
        _long_bytes(),
    ],
    ids=["ndarray-200k", "ndarray-3M", "reconstruct-200k", "lying-state-200k", "bytes-1TiB"],
)
def test_cifar_claims_are_checked_before_allocating(stream: bytes, tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "data_batch_2").write_bytes(stream)
    assert len(stream) < 300
    report = run_limited(f"resnetlib.train.data.load_data({str(root)!r})", headroom=2**29)
    assert report["error"] == "DataError", report
    assert f"{root / 'data_batch_2'}:" in report["message"]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 5.9], r"'labels' must be a list of integers; holds 5\.9"),
        ([0, 1, True], r"'labels' must be a list of integers; holds True"),
        ([0, 1, 2**70], r"'labels' holds label 1180591620717411303424, outside 0\.\.9"),
        ([0, -1, 2], r"'labels' holds label -1, outside 0\.\.9"),
        ([0, 1, 10], r"'labels' holds label 10, outside 0\.\.9 \(10 classes"),
        (np.array([0.0, 1.0, 5.9]), r"'labels' must be integers.*float64"),
        (np.array([0, 1, 12]), r"'labels' holds label 12, outside 0\.\.9"),
        ("012", r"'labels' must be a list of integers; got str"),
    ],
    ids=["float", "bool", "2**70", "negative", "past-classes", "float-array", "array", "str"],
)
def test_cifar_labels_must_be_integers_of_the_class_list(
    labels: Any, message: str, tmp_path: Path
) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    batch = {"data": np.zeros((3, 3072), dtype=np.uint8), "labels": labels}
    (root / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=rf"data_batch_4: {message}"):
        load_data(root)


def test_cifar_array_of_objects_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    batch = {"data": np.zeros((3, 3072), dtype=np.uint8), "labels": np.array([0, 1, "x"], object)}
    (root / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(DataError, match=r"data_batch_1: .*dtype.*only numbers"):
        load_data(root)


# --------------------------------------------------------------------------------------
# Image folders and TinyImageNet: empty classes, duplicate ids, bombs, unreadable files
# --------------------------------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _png(path: Path, seed: int, size: int = 8) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _pets(root: Path) -> Path:
    _png(root / "train" / "cat" / "a.png", 0)
    _png(root / "train" / "cat" / "b.png", 1)
    _png(root / "train" / "dog" / "a.png", 2)
    _png(root / "val" / "cat" / "x.png", 3)
    _png(root / "val" / "dog" / "y.png", 4)
    return root


def _tiny(root: Path) -> Path:
    wnids = ["n01", "n02", "n03"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish\nn02\tsalamander\nn03\tfrog\n")
    for i, wnid in enumerate(wnids):
        for j in range(2):
            _png(root / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", 10 * i + j)
    lines = []
    for k in range(4):
        _png(root / "val" / "images" / f"val_{k}.JPEG", 100 + k)
        lines.append(f"val_{k}.JPEG\t{wnids[k % 3]}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_an_empty_class_folder_is_an_error(tmp_path: Path, cache_dir: Path) -> None:
    root = _pets(tmp_path / "pets")
    (root / "train" / "ant").mkdir()
    with pytest.raises(DataError, match=r"train/ant: class folder holds no images"):
        load_data(root)
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"train/ant: class folder holds no images"):
        load_data(root)


def test_an_empty_tinyimagenet_class_is_an_error(tmp_path: Path, cache_dir: Path) -> None:
    root = _tiny(tmp_path / "tiny")
    for file in (root / "train" / "n02" / "images").iterdir():
        file.unlink()
    with pytest.raises(DataError, match=r"n02/images: no images for n02"):
        load_data(root)


def test_a_duplicate_wnid_is_an_error(tmp_path: Path, cache_dir: Path) -> None:
    root = _tiny(tmp_path / "tiny")
    (root / "wnids.txt").write_text("n01\nn02\nn03\nn02\n")
    with pytest.raises(DataError, match=r"wnids\.txt: 'n02' is listed twice"):
        load_data(root)


def _bomb_png(path: Path, side: int) -> Path:
    """A valid grayscale PNG of ``side`` x ``side`` zeros: a few hundred KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 and the row's pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(
    ("side", "image_size", "message"),
    [
        (13_000, None, "decompression bomb"),  # Pillow's warning, made an error
        (14_000, 32, "decompression bomb"),  # Pillow's DecompressionBombError
        (5_000, None, r"5000x5000 pixels, more than the 16,777,216"),  # our bound
        (5_000, 64, r"5000x5000 pixels, more than the 16,777,216 .* image_size=64"),
    ],
    ids=["13000-warning", "14000-error", "5000-bound", "5000-bound-sized"],
)
def test_decoded_pixels_are_bounded_before_decoding(
    side: int, image_size: int | None, message: str, tmp_path: Path, cache_dir: Path
) -> None:
    root = _pets(tmp_path / "pets")
    bomb = _bomb_png(root / "train" / "dog" / "bomb.png", side)
    assert bomb.stat().st_size < 600_000
    code = f"resnetlib.train.data.load_data({str(root)!r}, image_size={image_size})"
    report = run_limited(code, headroom=2**29)  # a decode would need 169 MB to 600 MB
    assert report["error"] == "DataError", report
    assert report["message"].startswith(f"{bomb}: "), report
    assert re.search(message, report["message"]), report


def test_unreadable_and_undecodable_files_are_data_errors(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tiny(tmp_path / "tiny")
    (root / "wnids.txt").write_bytes(b"n01\nn\xff02\nn03\n")
    with pytest.raises(DataError, match=r"wnids\.txt: not UTF-8 text \(byte 5\)"):
        load_data(root)
    (root / "wnids.txt").write_text("n01\nn02\nn03\n")
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_bytes(annotations.read_bytes() + b"\xc3(\n")
    with pytest.raises(DataError, match=r"val_annotations\.txt: not UTF-8 text"):
        load_data(root)
    _tiny(tmp_path / "tiny2")
    denied = tmp_path / "tiny2" / "train" / "n02" / "images" / "n02_1.JPEG"
    real_open = os.open  # the one decoder opens each image with files.open_regular

    def open_denied(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == denied:  # as a file of another user, mode 0600, opens for us
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denied)
    with pytest.raises(DataError, match=rf"{denied}: permission denied"):
        load_data(tmp_path / "tiny2")
    real_os_open = os.open

    def open_os_denied(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == "wnids.txt":  # the one reader opens every file with os.open
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_os_denied)
    with pytest.raises(DataError, match=r"tiny2/wnids\.txt: permission denied"):
        load_data(tmp_path / "tiny2")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files of any mode")
def test_a_file_without_read_permission_is_a_data_error(tmp_path: Path, cache_dir: Path) -> None:
    root = _pets(tmp_path / "pets")
    locked = root / "train" / "cat" / "b.png"
    locked.chmod(0)
    with pytest.raises(DataError, match=rf"{locked}: permission denied"):
        load_data(root)


# --------------------------------------------------------------------------------------
# The decoded-image cache never serves data that differs from a fresh decode
# --------------------------------------------------------------------------------------


def _same_as_fresh(root: Path, tmp_path: Path, **options: Any) -> None:
    """Load ``root`` through the (warm) cache and without one: identical splits."""
    cached = load_data(root, **options)
    os.environ["RESNETLIB_CACHE_DIR"] = str(tmp_path / f"fresh-{os.urandom(4).hex()}")
    try:
        fresh = load_data(root, **options)
    finally:
        os.environ["RESNETLIB_CACHE_DIR"] = str(tmp_path / "cache")
    for split in ("train", "test"):
        a, b = getattr(cached, split), getattr(fresh, split)
        assert a.classes == b.classes
        assert torch.equal(a.labels, b.labels), split
        assert torch.equal(a.images, b.images), split


def _replace_keeping_stat(file: Path, seed: int) -> None:
    """New pixels, same size and modification time: only the content differs."""
    stat = file.stat()
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(file, format="PNG" if file.suffix == ".png" else "BMP")
    if file.stat().st_size == stat.st_size:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _swap_annotations(root: Path) -> None:
    path = root / "val" / "val_annotations.txt"
    stat = path.stat()
    text = path.read_text()
    path.write_text(text.replace("n01", "n0X").replace("n02", "n01").replace("n0X", "n02"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _add_class(root: Path) -> None:
    _png(root / "train" / "ant" / "a.png", 50)  # sorts first: every label shifts


def _rename_wnid_words(root: Path) -> None:
    (root / "words.txt").write_text("n01\tcarp\nn02\tnewt\nn03\ttoad\n")


def _rename_file(root: Path) -> None:
    files = sorted((root / "train" / "cat").iterdir())
    files[0].rename(files[0].with_name("z.png"))  # same bytes, now after b.png


@pytest.mark.parametrize(
    ("layout", "change", "options"),
    [
        ("folder", _add_class, {}),
        ("folder", lambda root: _replace_keeping_stat(root / "train" / "cat" / "a.png", 9), {}),
        ("folder", _rename_file, {}),
        ("folder", None, {"image_size": 4}),
        ("tiny", _swap_annotations, {}),
        ("tiny", _rename_wnid_words, {}),
        ("tiny", lambda root: (root / "wnids.txt").write_text("n03\nn02\nn01\n"), {}),
        ("tiny", None, {"image_size": 6}),
    ],
    ids=[
        "add-class",
        "replace-file",
        "rename-file",
        "image-size",
        "edit-annotations",
        "edit-words",
        "reorder-wnids",
        "tiny-image-size",
    ],
)
def test_the_cache_follows_every_input(
    layout: str, change: Any, options: dict[str, Any], tmp_path: Path, cache_dir: Path
) -> None:
    root = _pets(tmp_path / "pets") if layout == "folder" else _tiny(tmp_path / "tiny")
    load_data(root)  # warm the cache
    if change is not None:
        change(root)
    _same_as_fresh(root, tmp_path, **options)
    _same_as_fresh(root, tmp_path, **options)  # and once more, from the rewritten cache


def test_a_failed_cache_write_leaves_the_old_cache(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _pets(tmp_path / "pets")
    load_data(root)
    (cache_file,) = cache_dir.glob("*.pt")
    before = cache_file.read_bytes()
    real_save = torch.save

    def full_disk(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    _png(root / "train" / "dog" / "c.png", 7)
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match="could not cache decoded images.*No space left"):
        splits = load_data(root)
    monkeypatch.setattr(torch, "save", real_save)
    assert splits.train.labels.tolist() == [0, 0, 1, 1]
    assert cache_file.read_bytes() == before
    assert sorted(p.name for p in cache_dir.iterdir()) == [cache_file.name]


# --------------------------------------------------------------------------------------
# Checkpoints: tied weights, wrapper prefixes, safetensors headers, versions, refusals
# --------------------------------------------------------------------------------------


def test_tied_weights_load_and_crafted_claims_are_still_refused(tmp_path: Path) -> None:
    import resnetlib as rl
    from tests.test_safety import write_checkpoint

    model = rl.resnet20()
    block = model.layer1[0]
    block.bn2.weight = block.bn1.weight  # two keys, one tensor
    with torch.no_grad():
        block.bn1.weight.uniform_()
    rl.save(model, tmp_path / "tied.pt")
    loaded = rl.load(tmp_path / "tied.pt")
    assert torch.equal(loaded.layer1[0].bn2.weight, block.bn1.weight)
    assert torch.equal(loaded.layer1[0].bn1.weight, block.bn1.weight)

    spec = model.spec.to_json()
    base = torch.arange(16.0)
    overlapping = {"a": base, "b": base.as_strided((16,), (0,))}  # 128 bytes claimed, 64 held
    with pytest.raises(rl.CheckpointError, match=r"entry 'b' claims 64 bytes.*64 bytes stored"):
        rl.interop.read_checkpoint(write_checkpoint(tmp_path / "overlap.pt", spec, overlapping))
    many = {f"k{i}": base for i in range(9)}  # one tensor, nine names
    with pytest.raises(rl.CheckpointError, match=r"entry 'k8' is the tensor of 8 other keys"):
        rl.interop.read_checkpoint(write_checkpoint(tmp_path / "many.pt", spec, many))


def test_unwrap_state_dict_strips_a_hundred_thousand_wrappers(tmp_path: Path) -> None:
    import resnetlib as rl
    from resnetlib.interop.convert import unwrap_state_dict

    depth = 100_000
    state = {"module." * depth + key: torch.zeros(1) for key in ("fc.weight", "fc.bias")}
    assert list(unwrap_state_dict(state)) == ["fc.weight", "fc.bias"]
    mixed = {("module._orig_mod." * 3) + "module.x" + k: torch.zeros(1) for k in ("a", "b")}
    assert list(unwrap_state_dict(mixed)) == ["xa", "xb"]
    assert list(unwrap_state_dict({"module.a": torch.zeros(1), "b": torch.zeros(1)})) == [
        "module.a",
        "b",
    ]
    torch.save(state, tmp_path / "wrapped.pt")  # the 1.4 MB file
    with pytest.raises(rl.CheckpointError, match=r"a plain state dict \(2 tensors\)"):
        rl.load(tmp_path / "wrapped.pt")


def test_a_safetensors_header_longer_than_the_file_says_so(tmp_path: Path) -> None:
    import resnetlib as rl

    path = tmp_path / "cut.safetensors"
    path.write_bytes(struct.pack("<Q", 1_000_000) + b'{"fc.weight": {"dtype": "F32", ')
    with pytest.raises(rl.CheckpointError, match=r"header claims 1000000 bytes, more than"):
        rl.load(path)


def test_a_format_version_of_five_thousand_digits_is_a_checkpoint_error(tmp_path: Path) -> None:
    import resnetlib as rl
    from resnetlib.interop.checkpoint import FORMAT

    model = rl.resnet20()
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    wide = 2**600  # the widest int torch's weights-only reader takes (LONG1: 255 bytes)
    torch.save({"format": FORMAT, "format_version": wide}, tmp_path / "wide.pt")
    with pytest.raises(rl.CheckpointError, match=r"format_version is 601 bits long"):
        rl.load(tmp_path / "wide.pt")
    digits = "9" * 5_000
    pytest.importorskip("safetensors")
    import safetensors.torch

    header = {"format": FORMAT, "format_version": digits, "spec": "{}", "metadata": "{}"}
    safetensors.torch.save_file(state, tmp_path / "big.safetensors", metadata=header)
    with pytest.raises(rl.CheckpointError, match=r"format_version is 5000 characters long"):
        rl.load(tmp_path / "big.safetensors")


class _Runs:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("ran",))


def test_a_weights_only_refusal_is_our_message_not_torchs_advice(tmp_path: Path) -> None:
    import resnetlib as rl

    torch.save({"state_dict": {"fc.weight": _Runs()}}, tmp_path / "code.pt")
    with pytest.raises(rl.CheckpointError) as caught:
        rl.load(tmp_path / "code.pt")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'code.pt'}: refused: the file holds Python objects")
    assert re.search(r"\(it asks for (builtins\.)?print\)$", message)
    for advice in ("weights_only=False", "weights_only` set to `False", "safe_globals", "\x1b"):
        assert advice not in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------
# Recipes: padding, nesting and lengths are bounded
# --------------------------------------------------------------------------------------


def test_augment_pad_is_bounded() -> None:
    from resnetlib.train.pipeline import MAX_PAD, Augment
    from resnetlib.train.recipe import Recipe

    assert Augment(pad=MAX_PAD).pad == MAX_PAD
    with pytest.raises(ValueError, match=r"Augment\.pad must be an int <= 64 .*got 2000"):
        Augment(pad=2000)
    with pytest.raises(ValueError, match=r"Augment\.pad must be an int <= 64"):
        Recipe.from_json(json.dumps({"augment": {"pad": 2000, "flip": True}}))


def test_a_recipe_nested_a_hundred_thousand_deep_is_a_value_error() -> None:
    from resnetlib.train.recipe import Recipe

    for text in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000):
        with pytest.raises(ValueError, match="Recipe JSON: JSON nested more than 32 deep"):
            Recipe.from_json(text)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("iterations", 10**30, r"iterations must be an int <= 1,000,000,000"),
        ("iterations", "1e400", r"Recipe JSON: 1e400 is out of a float's range"),
        ("epochs", 10**30, r"epochs must be an int <= 1,000,000"),
        ("batch_size", 10**30, r"batch_size must be an int <= 1,048,576"),
        ("milestones", [10**30], r"milestones\[0\] must be an int <= 1,000,000,000"),
        ("warmup_max_iterations", 10**30, r"warmup_max_iterations must be an int <= 1,0"),
    ],
)
def test_recipe_lengths_are_bounded(field: str, value: Any, message: str) -> None:
    from resnetlib.train.recipe import Recipe

    text = json.dumps({field: value}).replace('"1e400"', "1e400")
    if field == "epochs":
        text = json.dumps({"epochs": value, "milestones": []})
    with pytest.raises(ValueError, match=message):
        Recipe.from_json(text)


def test_resolved_lengths_are_bounded() -> None:
    from resnetlib.train.recipe import PAPER_CIFAR, Recipe

    with pytest.raises(ValueError, match=r"iterations must be an int <= 1,000,000,000"):
        PAPER_CIFAR.resolved(390, iterations=10**30)
    with pytest.raises(ValueError, match=r"epochs must be an int <= 1,000,000"):
        PAPER_CIFAR.resolved(390, epochs=10**400)
    with pytest.raises(ValueError, match=r"would take 3,900,000,000 iterations"):
        Recipe(epochs=1_000_000, iterations=None, milestones=()).resolved(3_900)


# --------------------------------------------------------------------------------------
# Summaries and counts: on the meta device, inputs bounded by MAX_IMAGE_SIDE
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"), [("resnet50", None), ("resnet56", (3, 40, 24)), ("plain18", (1, 3, 64, 64))]
)
def test_summary_on_meta_matches_a_real_forward(name: str, size: Any) -> None:
    import resnetlib as rl
    from resnetlib.analysis import _example_input, _measure, _summary_rows
    from resnetlib.common import evaluating

    model = rl.create_model(name)
    table = rl.analysis.summary(model, size, title=name)
    x = _example_input(model, size, "test")
    with evaluating(model):  # the pre-meta way: the model itself computes
        assert table.rows == _summary_rows(model, x)
        assert rl.count_flops(model, size) == _measure(model, x)[1]
    assert model.training  # the model's own mode is untouched
    features = rl.core.features(model, out_indices=(1, 2))
    with evaluating(features):
        assert rl.analysis.summary(features, size).rows == _summary_rows(features, x)


@pytest.mark.parametrize(
    "code",
    [
        "resnetlib.analysis.summary(resnetlib.resnet50(), (3, 4000, 4000))",
        "resnetlib.count_flops(resnetlib.resnet50(), (3, 4000, 4000))",
        "with torch.device('meta'):\n"
        "    model = resnetlib.create_model('resnet56', widths=(8192, 8192, 8192))\n"
        "resnetlib.analysis.summary(model); resnetlib.count_flops(model)",
    ],
    ids=["summary-4000", "count-flops-4000", "widths-8192-on-meta"],
)
def test_large_summaries_fit_in_little_memory(code: str) -> None:
    report = run_limited(code, headroom=2**30)  # a real forward at 4000x4000 needs 3.8 GB
    assert report["error"] is None, report


def test_inputs_larger_than_max_image_side_are_refused() -> None:
    import resnetlib as rl
    from resnetlib.core.spec import MAX_IMAGE_SIDE

    model = rl.resnet20()
    assert rl.analysis.summary(model, (3, MAX_IMAGE_SIDE, 8)).rows[-1].output_shape == (10,)
    for size in [(3, MAX_IMAGE_SIDE + 1, 8), (3, 8, 10**30), (10**6, 32, 32)]:
        with pytest.raises(
            ValueError, match=rf"sides up to {MAX_IMAGE_SIDE:,} \(resnetlib.limits\)"
        ):
            rl.analysis.summary(model, size)
        with pytest.raises(
            ValueError, match=rf"sides up to {MAX_IMAGE_SIDE:,} \(resnetlib.limits\)"
        ):
            rl.count_flops(model, size)
    with pytest.raises(ValueError, match=r"image_size must be <= 8192"):
        load_data("digits", image_size=10**6)
