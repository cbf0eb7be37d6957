"""Image classification data sets read from their published formats: scikit-learn's 8x8
``"digits"`` (a fixed 1,500 / 297 split), CIFAR-10/100 python batches (through an unpickler that
admits only numpy arrays), TinyImageNet-200 (its ``val`` is the test split) and image folders
(``train/<class>/*`` beside the first of ``val``, ``valid``, ``test``; hidden entries such as
``.git`` or ``._a.png`` are skipped, and an entry with an image suffix must be a regular
file). Decoded image files are
cached under ``$RESNETLIB_CACHE_DIR`` (default ``$XDG_CACHE_HOME/resnetlib`` or
``~/.cache/resnetlib``); an unwritable cache is skipped with a warning.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import hashlib
import io
import itertools
import math
import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor  # Pillow decodes without the GIL
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..common import PathLike, optional_import, printable
from ..core.data_config import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    check_data_config,
)
from ..files import (
    atomic_write,
    check_regular,
    inside,
    open_regular,
    pickle_opcodes,
    read_bytes,
    read_text,
)
from ..images import IMAGE_SUFFIXES, bombs_refused, decode_image, pixel_limit
from ..limits import MAX_CLASSES, MAX_IMAGE_SIDE, MAX_PICKLE_BYTES
from ..limits import MAX_DOWNSCALE as MAX_DOWNSCALE  # re-exported from their old home
from ..limits import MAX_IMAGE_PIXELS as MAX_IMAGE_PIXELS
from ..validate import check_int, is_int

__all__ = [
    "DataError",
    "DataSplits",
    "ImageDataset",
    "data_layout",
    "data_source",
    "data_statistics",
    "load_data",
]

DATA_LAYOUTS = (
    '"digits" (built in)',
    "cifar-10-batches-py (data_batch_1..5, test_batch, batches.meta)",
    "cifar-100-python (train, test, meta)",
    "TinyImageNet-200 (wnids.txt, train/<wnid>/images, val/val_annotations.txt)",
    "image folder (train/<class>/*, val/<class>/*, valid/<class>/* or test/<class>/*)",
)

_TEST_FOLDERS = ("val", "valid", "test")  # an image folder's held-out split, first found

DIGITS_TEST_SIZE = 297  # of 1,797: 1,500 train / 297 test
_CACHE_VERSION = 3  # bump when decoding or the cache's contents change


class DataError(ValueError):
    """A data path is missing, in no known layout, or holds a damaged or unsafe file."""


@dataclass(frozen=True)
class ImageDataset:
    """Images and labels of one split, on the CPU; ``statistics`` is the data set's published
    per-channel ``(mean, std)`` in [0, 1] (CIFAR's), else None (``data_statistics`` computes)."""

    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    classes: tuple[str, ...]  # class names; index = label
    name: str
    statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 N x C x H x W tensor, got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be an int64 tensor of shape ({self.images.shape[0]},), got "
                f"{self.labels.dtype} of shape {tuple(self.labels.shape)}"
            )
        if len(self) and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)
        ):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) (one per class name)")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        c, h, w = (int(n) for n in self.images.shape[1:])
        return (
            f"ImageDataset(name={self.name!r}, {len(self)} images of {c}x{h}x{w}, "
            f"{len(self.classes)} classes)"
        )

    def subset(self, indices: torch.Tensor) -> ImageDataset:
        """The images at ``indices`` (an int64 index tensor), in that order."""
        return replace(self, images=self.images[indices], labels=self.labels[indices])

    def select_classes(self, keep: Sequence[int]) -> ImageDataset:
        """Only the images of classes ``keep`` (indices), relabelled 0, 1, ... in that order."""
        mapping = torch.full((len(self.classes),), -1, dtype=torch.int64)
        mapping[torch.tensor(list(keep), dtype=torch.int64)] = torch.arange(len(keep))
        new = mapping[self.labels]
        chosen = (new >= 0).nonzero().flatten()
        classes = tuple(self.classes[i] for i in keep)
        return replace(self, images=self.images[chosen], labels=new[chosen], classes=classes)


@dataclass(frozen=True)
class DataSplits:
    """A data set's splits (``val`` held out from the training images when asked for) and how
    :func:`load_data` made them (``source``: its arguments, to load the same splits again)."""

    train: ImageDataset
    test: ImageDataset
    val: ImageDataset | None = None
    source: Mapping[str, Any] | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images."""
        c, h, w = self.train.images.shape[1:]
        return c, h, w

    def sizes(self) -> dict[str, int]:
        """Images per split (``val`` 0 when none is held out)."""
        return {"train": len(self.train), "val": len(self.val or ()), "test": len(self.test)}

    def hold_out(self, val_size: int, seed: int = 0) -> DataSplits:
        """These splits with ``val_size`` training images held out as ``val``, as
        :func:`load_data` holds them out given ``val_size`` and ``seed`` (``source`` records
        both); ``self`` must hold none yet."""
        check_int("val_size", val_size, 0)
        check_int("seed", seed, 0, 2**63 - 1)
        if self.val is not None:
            raise ValueError("hold_out: these splits already hold a validation split")
        record = {"val_size": val_size, "seed": seed}
        source = None if self.source is None else {**self.source, **record}
        if val_size == 0:
            return replace(self, source=source)
        train = self.train
        if val_size >= len(train):
            root = Path(str((self.source or {}).get("data", train.name)))
            raise DataError(
                f"{root}: cannot hold out {val_size} images for validation from a training split "
                f"of {len(train)}; pass a smaller val_size (--val-size; 0: no validation split)"
            )
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        val, rest = order[:val_size].sort().values, order[val_size:].sort().values
        return replace(self, train=train.subset(rest), val=train.subset(val), source=source)

    def describe(self) -> str:
        """One line: the data set and its split sizes."""
        sizes, (c, h, w) = self.sizes(), self.image_shape
        val = f" / {sizes['val']:,} val" if sizes["val"] else ""
        return (
            f"{self.train.name}: {sizes['train']:,} train{val} / {sizes['test']:,} test images "
            f"of {c}x{h}x{w}, {len(self.classes)} classes"
        )


_STATISTICS_CHUNK = 1 << 22  # values summed at a time: 32 MiB as int64, whatever the set


def data_statistics(dataset: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` in [0, 1] of ``dataset``'s images: the published values
    (``ImageDataset.statistics``), else computed exactly over every pixel (the population std,
    as the published ones are); an empty ``dataset`` is a ValueError."""
    if dataset.statistics is not None:
        return dataset.statistics
    images = dataset.images
    count, channels = int(images.shape[0]), int(images.shape[1])
    pixels = count * int(images.shape[2]) * int(images.shape[3])
    if pixels == 0:
        raise ValueError(f"cannot compute the statistics of {dataset.name}: it has no pixels")
    sums, squares = torch.zeros(2, channels, dtype=torch.int64)
    step = max(1, _STATISTICS_CHUNK // max(1, images[0].numel()))
    for start in range(0, count, step):
        chunk = images[start : start + step].to(torch.int64).transpose(0, 1).reshape(channels, -1)
        sums += chunk.sum(1)
        squares += (chunk * chunk).sum(1)
    mean = sums.double() / pixels
    variance = (squares.double() / pixels - mean * mean).clamp_min(0.0)
    return tuple((mean / 255).tolist()), tuple((variance.sqrt() / 255).tolist())


def load_data(
    source: PathLike = "digits",
    *,
    val_size: int = 0,
    seed: int = 0,
    labels: Literal["fine", "coarse"] = "fine",
    image_size: int | None = None,
    classes: Sequence[str | int] | None = None,
    before_decoding: Callable[[tuple[str, ...], int, str], None] | None = None,
) -> DataSplits:
    """Load ``source`` ("digits" or a path in a known layout) as train/test(/val) splits.

    ``val_size`` training images drawn by ``seed`` are held out as ``val``, the rest kept in
    order (5000 on CIFAR-10: the paper's 45k/5k split). ``labels="coarse"``: CIFAR-100's 20
    superclasses. ``image_size`` resizes (square); default 16 for digits (3 channels, upscaled
    from 8x8), else the native size. ``classes`` keeps those classes, relabelled
    ``0..len(classes)-1`` in that order: a class's name (TinyImageNet's: or its wnid) means
    that class, else an int or a decimal string is its index. ``before_decoding(class_names,
    channels, name)`` is called before any image is decoded or cached; what it raises stops
    the load.
    """
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    check_int("val_size", val_size, 0)
    if image_size is not None and (not is_int(image_size) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    if image_size is not None and image_size > MAX_IMAGE_SIDE:
        raise ValueError(
            f"image_size must be <= {MAX_IMAGE_SIDE} (resnetlib.core.spec.MAX_IMAGE_SIDE), "
            f"got {image_size}"
        )
    kind, root = data_layout(source), Path(source)
    if labels == "coarse" and kind != "cifar100":
        raise DataError(f"{root}: coarse labels exist only for CIFAR-100, this is {kind}")
    listing = None
    if kind == "digits":
        train, test = _load_digits(image_size or 16)
    elif kind in ("cifar10", "cifar100"):
        train, test = _load_cifar(root, kind, labels)
    else:  # image files: listed and their classes checked before any is decoded
        listing = (_list_tinyimagenet if kind == "tinyimagenet" else _list_folder)(root)
    found, name = (train.classes, train.name) if listing is None else listing[:2]
    other = () if listing is None else listing[4]
    keep = None if classes is None else _class_indices(classes, found, root, other)
    if before_decoding is not None:
        before_decoding(found if keep is None else tuple(found[i] for i in keep), 3, name)
    if listing is not None:
        train, test = _decode_cached(root, image_size, listing)
    elif image_size is not None and kind != "digits":
        train, test = _resize(train, image_size), _resize(test, image_size)
    if keep is not None:
        train, test = train.select_classes(keep), test.select_classes(keep)
    record = {
        "data": data_source(source),
        "labels": labels,
        "image_size": image_size,
        "val_size": 0,  # hold_out records val_size
        "seed": seed,
        "classes": None if keep is None else list(train.classes),
    }
    return DataSplits(train, test, source=record).hold_out(val_size, seed)


def _class_indices(
    wanted: Sequence[str | int], classes: Sequence[str], root: Path, other: Sequence[str] = ()
) -> list[int]:
    """The indices of ``wanted`` in ``classes``: an item that is a class's name means that
    class (a name wins), else one of ``other`` (each class's other name: TinyImageNet's
    wnid); else an int, or a decimal string (``--classes 3,2``), is an index."""
    if isinstance(wanted, str) or not wanted:
        raise DataError(f"{root}: classes must be a non-empty list of class names or indices")
    indices: list[int] = []
    for item in wanted:
        if isinstance(item, str) and item in classes:
            index = classes.index(item)
        elif isinstance(item, str) and item in other:
            index = other.index(item)
        elif is_int(item) or (isinstance(item, str) and item.isascii() and item.isdecimal()):
            index = int(item)
            if not 0 <= index < len(classes):
                named = f"no class {item!r} and " if isinstance(item, str) else ""
                last = len(classes) - 1
                raise DataError(f"{root}: {named}class index {index} is not in 0..{last}")
        else:
            close = ", ".join(repr(c) for c in classes[:12])
            raise DataError(f"{root}: no class {item!r}; classes: {close}")
        if index in indices:
            raise DataError(f"{root}: class {classes[index]!r} is chosen twice")
        indices.append(index)
    return indices


# -- layout detection ------------------------------------------------------------------


def data_source(source: PathLike) -> str:
    """``source`` as :func:`load_data` records it (``DataSplits.source["data"]``): ``"digits"``,
    else the resolved absolute path, the same from any directory (no file is read)."""
    if isinstance(source, str) and source == "digits":
        return "digits"
    return str(Path(source).resolve())


def data_layout(source: PathLike) -> str:
    """The layout :func:`load_data` reads ``source`` as (no image is read): ``"digits"``,
    ``"cifar10"``, ``"cifar100"``, ``"tinyimagenet"`` or ``"folder"``, else a ``DataError``."""
    if isinstance(source, str) and source == "digits":
        return "digits"
    root = Path(source)
    if not root.exists():
        raise DataError(
            f'{root}: no such file or directory; expected "digits" or a directory in a known '
            f"layout: {'; '.join(DATA_LAYOUTS[1:])}"
        )
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; known layouts: {'; '.join(DATA_LAYOUTS)}")
    if (root / "data_batch_1").is_file() and (root / "test_batch").is_file():
        return "cifar10"
    if all((root / name).is_file() for name in ("train", "test", "meta")):
        return "cifar100"
    if (root / "wnids.txt").is_file() and (root / "train").is_dir():
        return "tinyimagenet"
    if (root / "train").is_dir() and any((root / name).is_dir() for name in _TEST_FOLDERS):
        return "folder"
    raise DataError(f"{root}: in no known data layout; known layouts: {'; '.join(DATA_LAYOUTS)}")


def _resize(dataset: ImageDataset, size: int) -> ImageDataset:
    if dataset.images.shape[-2:] == (size, size):
        return dataset
    images = F.interpolate(
        dataset.images.float(), size=(size, size), mode="bilinear", antialias=True
    )
    return replace(dataset, images=images.round_().clamp_(0, 255).to(torch.uint8))


def _load_digits(size: int) -> tuple[ImageDataset, ImageDataset]:
    needs = "scikit-learn is needed to load this data"
    datasets = optional_import("sklearn.datasets", needs, "train")
    selection = optional_import("sklearn.model_selection", needs, "train")
    bunch = datasets.load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)  # 1797 x 8 x 8, 0..16
    images = (images * (255.0 / 16.0)).round_().unsqueeze(1)
    images = F.interpolate(images, size=(size, size), mode="bilinear")  # 8: left as it is
    images = images.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    targets = torch.as_tensor(bunch.target, dtype=torch.int64)
    train, test = selection.train_test_split(
        list(range(len(targets))), test_size=DIGITS_TEST_SIZE, random_state=0, stratify=bunch.target
    )
    full = ImageDataset(images, targets, tuple("0123456789"), "digits")
    return full.subset(torch.tensor(sorted(train))), full.subset(torch.tensor(sorted(test)))


# -- CIFAR python batches, through a restricted unpickler ------------------------------


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes call it (latin-1 only)."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes(*arguments: object) -> bytes:
    """``__builtin__.bytes()`` as protocol-2 pickles write ``b""``; with arguments, refused."""
    if arguments:
        raise pickle.UnpicklingError(
            "the pickle calls __builtin__.bytes with arguments (only bytes(), b'', is allowed)"
        )
    return b""


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> Any:
    """``numpy.core.numeric._frombuffer`` (protocol 5), if shape and dtype claim ``raw`` exactly."""
    if not isinstance(dtype, np.dtype) or (
        dtype.kind not in "biuf"  # bool, signed, unsigned, float: what a CIFAR batch holds
        or dtype.hasobject
        or dtype.names is not None
        or dtype.subdtype is not None
    ):
        raise pickle.UnpicklingError(f"an array of dtype {dtype!r} (only numbers are allowed)")
    if not isinstance(shape, tuple) or not all(is_int(d) and d >= 0 for d in shape):
        raise pickle.UnpicklingError(f"an array shape must be a tuple of ints >= 0; got {shape!r}")
    if not isinstance(raw, (bytes, bytearray, pickle.PickleBuffer)):
        raise pickle.UnpicklingError(f"array data must be bytes; got {type(raw).__name__}")
    claimed = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    held = (view := memoryview(raw)).nbytes
    if claimed != held:
        raise pickle.UnpicklingError(
            f"an array claims shape {shape} of {dtype} ({claimed} bytes) but holds {held} bytes"
        )
    return np.frombuffer(view, dtype=dtype).reshape(shape, order=order)


class _PendingArray:
    """An ndarray a pickle asked for, made in ``__setstate__`` from the bytes it holds."""

    array: Any = None

    def __init__(self, *claimed: object) -> None:
        if claimed:  # numpy.ndarray(shape, dtype) called by the pickle: memory from a claim
            raise pickle.UnpicklingError(
                f"the pickle calls numpy.ndarray{claimed!r}, which allocates what the file "
                "claims rather than what it holds"
            )

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an ndarray's state must be a 4- or 5-tuple")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _frombuffer(raw, dtype, shape, "F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, code: Any) -> _PendingArray:
    """``numpy.core.multiarray._reconstruct`` as numpy's pickles call it: an empty array."""
    if subtype is not _PendingArray or shape != (0,):
        raise pickle.UnpicklingError(
            f"_reconstruct({'numpy.ndarray' if subtype is _PendingArray else subtype!r}, {shape!r})"
            " is not how numpy pickles an array (it allocates what the file claims)"
        )
    return _PendingArray()


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _PendingArray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


def _unwrap_arrays(value: Any, budget: list[int]) -> Any:
    """Each visit spends one of ``budget[0]`` (the pickle's opcodes): shared references that
    would unfold 2**80 objects are refused."""
    budget[0] -= 1
    if budget[0] < 0:
        raise pickle.UnpicklingError(
            "its objects reference each other more times than the pickle has opcodes "
            "(shared references that would unfold without bound)"
        )
    if isinstance(value, _PendingArray):
        if value.array is None:
            raise pickle.UnpicklingError("an ndarray without its data")
        return value.array
    if isinstance(value, dict):
        return {k: _unwrap_arrays(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_arrays(v, budget) for v in value]
    return value


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def __init__(self, raw: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(raw), encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refused to load: the pickle asks for {module}.{name}, "
                "which a CIFAR batch never needs (only numpy arrays are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._path}: refused to load: the pickle uses persistent ids")


def _read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle (at most ``MAX_PICKLE_BYTES``, opcodes checked) as a dict with str keys."""
    try:
        raw = read_bytes(path, limit=MAX_PICKLE_BYTES, what="a CIFAR python batch", error=DataError)
        budget = [pickle_opcodes(raw, where=str(path), what="CIFAR python batch", error=DataError)]
        data = _unwrap_arrays(_ArrayUnpickler(raw, path).load(), budget)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: missing (expected a CIFAR python batch)") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    except RecursionError:
        raise DataError(f"{path}: damaged CIFAR python batch (nested too deeply)") from None
    except Exception as error:  # damaged pickles raise anything from EOFError to TypeError
        raise DataError(
            f"{path}: damaged CIFAR python batch ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a dict in a CIFAR python batch, got {type(data).__name__}"
        )
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _field(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise DataError(f"{path}: CIFAR python batch has no {key!r} entry (has {sorted(batch)})")
    return batch[key]


def _cifar_labels(labels: Any, key: str, classes: int, path: Path) -> Any:
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise DataError(
                f"{path}: {key!r} must be integers (a 1-D integer array or list); got an "
                f"array of {labels.dtype} with shape {labels.shape}"
            )
    elif isinstance(labels, list):
        bad = next((v for v in labels if not is_int(v)), None)
        if bad is not None:
            raise DataError(f"{path}: {key!r} must be a list of integers; holds {bad!r}")
    else:
        raise DataError(f"{path}: {key!r} must be a list of integers; got {type(labels).__name__}")
    if len(labels):
        low, high = min(labels), max(labels)
        if low < 0 or high >= classes:
            raise DataError(
                f"{path}: {key!r} holds label {low if low < 0 else high}, outside "
                f"0..{classes - 1} ({classes} classes in the meta file)"
            )
    return np.asarray(labels, dtype=np.int64)


def _cifar_split(
    paths: Sequence[Path], key: str, classes: tuple[str, ...], name: str
) -> ImageDataset:
    images, targets = [], []
    for path in paths:
        batch = _read_pickle(path)
        data, labels = _field(batch, "data", path), _field(batch, key, path)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise DataError(f"{path}: 'data' must be a uint8 numpy array (N x 3072)")
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f"{path}: 'data' has shape {data.shape}, expected (N, 3072): N 3x32x32 images"
            )
        labels = _cifar_labels(labels, key, len(classes), path)
        if labels.shape != (data.shape[0],):
            raise DataError(f"{path}: {data.shape[0]} images but {key!r} has shape {labels.shape}")
        images.append(torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy()))
        targets.append(torch.from_numpy(labels.copy()))
    published = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}
    return ImageDataset(torch.cat(images), torch.cat(targets), classes, name, published[name])


def _label_names(names: Any, where: str) -> tuple[str, ...]:
    """A meta file's class names (``where``: the file and key) as str: UTF-8, each named once,
    and what a model's ``label_names`` allow (:func:`check_data_config`)."""
    if not isinstance(names, list) or len(names) > MAX_CLASSES:
        raise DataError(f"{where} must be a list of at most {MAX_CLASSES:,} names")
    classes: list[str] = []
    for number, name in enumerate(names):
        try:
            classes.append(name.decode("utf-8") if isinstance(name, bytes) else str(name))
        except UnicodeDecodeError as bad:
            raise DataError(f"{where} name {number} is not UTF-8 (byte {bad.start})") from None
    try:
        check_data_config({"label_names": classes}, where=f"{where} as a model's")
    except ValueError as refused:
        raise DataError(str(refused)) from None
    seen: set[str] = set()
    for name in classes:
        if name in seen:
            raise DataError(f"{where} names class {name[:100]!r} twice; name each class once")
        seen.add(name)
    return tuple(classes)


def _load_cifar(root: Path, kind: str, labels: str) -> tuple[ImageDataset, ImageDataset]:
    if kind == "cifar10":
        meta, prefix = root / "batches.meta", ""
        train, test = [root / f"data_batch_{i}" for i in range(1, 6)], [root / "test_batch"]
    else:
        meta, prefix = root / "meta", f"{labels}_"
        train, test = [root / "train"], [root / "test"]
    key, names_key = f"{prefix}labels", f"{prefix}label_names"
    classes = _label_names(_field(_read_pickle(meta), names_key, meta), f"{meta}: {names_key!r}")
    return _cifar_split(train, key, classes, kind), _cifar_split(test, key, classes, kind)


# -- image folders and TinyImageNet-200: listed, then decoded once and cached ----------

_Labelled = tuple[list[Path], list[int]]  # image files, their labels
_Splits = dict[str, _Labelled]  # by split
# classes, name, splits, texts, and the classes' other names (TinyImageNet's wnids), by index
_Listing = tuple[tuple[str, ...], str, _Splits, dict[Path, str], tuple[str, ...]]


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except PermissionError:
        raise DataError(f"{path}: permission denied; make it readable") from None
    except FileNotFoundError:
        raise DataError(f"{path}: missing (or a link to nothing)") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def _read_text(path: Path) -> str:
    with _reading(path):
        return read_text(path, what="expected the data set's text file", error=DataError)


def _listdir(directory: Path) -> list[Path]:
    """The entries of ``directory``, sorted, but hidden ones (``.git``, ``._a.png``): skipped."""
    with _reading(directory):
        return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _labelled_images(folders: Sequence[tuple[Path, int]], empty: str | None) -> _Labelled:
    """Each entry with an image suffix, refused unless a regular file (a FIFO, a device, a
    dangling link); an empty folder is a DataError of message ``empty`` (``{folder}``,
    ``{wnid}``) if given."""
    files, targets = [], []
    for folder, label in folders:
        found = [p for p in _listdir(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
        for file in found:
            with _reading(file):
                check_regular(file, what="an image", error=DataError)
        if not found and empty is not None:
            raise DataError(empty.format(folder=folder, wnid=folder.parent.name))
        files += found
        targets += [label] * len(found)
    return files, targets


def _list_folder(root: Path) -> _Listing:
    test_dir = next((root / n for n in _TEST_FOLDERS if (root / n).is_dir()), root / "test")
    classes = tuple(p.name for p in _listdir(root / "train") if p.is_dir())
    if not classes:
        raise DataError(f"{root / 'train'}: no class folders (expected train/<class>/<images>)")
    index = {name: i for i, name in enumerate(classes)}
    empty = f"{{folder}}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))});"
    splits: _Splits = {}
    for split, directory in (("train", root / "train"), ("test", test_dir)):
        folders = [(p, index.get(p.name, -1)) for p in _listdir(directory) if p.is_dir()]
        for folder, label in folders:
            if label < 0:
                raise DataError(f"{folder}: class {folder.name!r} is not among train's classes")
        splits[split] = _labelled_images(
            folders, empty + " add images or remove the folder" if split == "train" else None
        )
        if not splits[split][0]:
            raise DataError(f"{directory}: no images (expected {directory}/<class>/<images>)")
    return classes, root.name, splits, {}, ()


def _list_tinyimagenet(root: Path) -> _Listing:
    wnids_path = root / "wnids.txt"
    texts = {wnids_path: _read_text(wnids_path)}  # fingerprinted as read
    wnids = texts[wnids_path].split()
    if not wnids:
        raise DataError(f"{wnids_path}: empty (expected one WordNet id per line)")
    index: dict[str, int] = {}
    for wnid in wnids:
        if wnid in index:
            raise DataError(f"{wnids_path}: {wnid!r} is listed twice; list each WordNet id once")
        index[wnid] = len(index)
    words: dict[str, str] = {}
    if (words_path := root / "words.txt").is_file():
        texts[words_path] = _read_text(words_path)
        for line in texts[words_path].splitlines():
            wnid, _, text = line.partition("\t")
            if wnid in index:
                words[wnid] = text.strip()
    folders = [(root / "train" / wnid / "images", index[wnid]) for wnid in wnids]
    for folder, _ in folders:
        if not folder.is_dir():
            raise DataError(f"{folder}: missing (TinyImageNet-200 expects train/<wnid>/images)")
    train = _labelled_images(
        folders, "{folder}: no images for {wnid}; add them or drop {wnid} from wnids.txt"
    )
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(
            f"{annotations}: missing (TinyImageNet-200 expects val/val_annotations.txt)"
        )
    texts[annotations] = _read_text(annotations)
    val_files, val_targets = [], []
    for number, line in enumerate(texts[annotations].splitlines(), 1):
        if not line.strip():
            continue
        parts, where = line.split("\t"), f"{annotations}:{number}"
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"{where}: expected '<file>\\t<wnid>...' with a wnid of wnids.txt")
        file = inside(root / "val" / "images", parts[0], where=where, error=DataError)
        if not file.is_file():
            raise DataError(f"{file}: missing (listed in {annotations})")
        val_files.append(file)
        val_targets.append(index[parts[1]])
    classes = tuple(words.get(w, w) for w in wnids)
    splits = {"train": train, "test": (val_files, val_targets)}
    return classes, "tinyimagenet", splits, texts, tuple(wnids)


def _fingerprint(root: Path, size: int | None, listing: _Listing) -> str:
    classes, _, splits, texts, _ = listing
    digest = hashlib.sha256()
    digest.update(f"version {_CACHE_VERSION}\0size {size}\0".encode())
    digest.update(repr(classes).encode() + b"\0")
    for path, text in texts.items():  # a name that is not UTF-8 is hashed as its bytes
        content = text.encode()
        name = f"{path.relative_to(root)}\0{len(content)}\0"
        digest.update(name.encode("utf-8", "surrogateescape") + content)
    for split in sorted(splits):
        files, targets = splits[split]
        digest.update(f"\0split {split} {len(files)}\n".encode())
        for file, target in zip(files, targets, strict=True):
            with _reading(file):
                stat = file.stat()
            digest.update(
                f"{file.relative_to(root)}\0{target}\0{stat.st_size}\0{stat.st_mtime_ns}\0"
                f"{stat.st_ctime_ns}\0{stat.st_ino}\n".encode("utf-8", "surrogateescape")
            )
    return digest.hexdigest()


def _decode(files: Sequence[Path], size: int | None, root: Path) -> torch.Tensor:
    """In threads, each in a copy of the command's context (so the gate records its inputs)."""
    optional_import("PIL.Image", "Pillow is needed to load this data", "train")
    one = functools.partial(
        decode_image,
        size=None if size is None else (size, size),
        max_pixels=pixel_limit(size),  # max(4096, MAX_DOWNSCALE * size) ** 2 pixels
        error=DataError,
        context=f" for image_size={size}",
    )
    workers = min(8, os.cpu_count() or 1)
    out: torch.Tensor | None = None
    waiting = iter(files)
    pending: collections.deque[tuple[Path, Future[torch.Tensor]]] = collections.deque()
    with bombs_refused(), ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for index in range(len(files)):
                for file in itertools.islice(waiting, 2 * workers - len(pending)):
                    pending.append((file, pool.submit(contextvars.copy_context().run, one, file)))
                file, future = pending.popleft()
                image = future.result()
                if out is None:
                    out = torch.empty(len(files), *image.shape, dtype=torch.uint8)
                elif image.shape != out.shape[1:]:
                    raise DataError(
                        f"{root}: images differ in size ({printable(str(files[0]))} is "
                        f"{tuple(out.shape[2:])}, {printable(str(file))} "
                        f"{tuple(image.shape[1:])}); pass image_size to resize (--image-size)"
                    )
                out[index] = image
        finally:
            for _, future in pending:
                future.cancel()
    return torch.empty(0, 3, size or 1, size or 1, dtype=torch.uint8) if out is None else out


def _decode_cached(
    root: Path, size: int | None, listing: _Listing
) -> tuple[ImageDataset, ImageDataset]:
    classes, name, splits, _, _ = listing
    fingerprint = _fingerprint(root, size, listing)
    if "RESNETLIB_CACHE_DIR" in os.environ:
        cache = Path(os.environ["RESNETLIB_CACHE_DIR"])
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnetlib"
    key = hashlib.sha256(f"{root.resolve()}\0{size}".encode()).hexdigest()[:24]
    path = cache / f"{root.name or 'data'}-{key}.pt"
    stored: Any = None
    if path.is_file():  # the cache is this loader's own file; a damaged one is rebuilt
        with suppress(Exception), open_regular(path, own=True) as file:
            stored = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or stored.get("fingerprint") != fingerprint:  # has the version
        stored = {"classes": list(classes), "version": _CACHE_VERSION, "fingerprint": fingerprint}
        for split, (files, targets) in splits.items():
            stored[f"{split}_images"] = _decode(files, size, root)
            stored[f"{split}_labels"] = torch.tensor(targets, dtype=torch.int64)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda file: torch.save(stored, file))
        except OSError as error:
            warnings.warn(f"could not cache decoded images at {path}: {error}", stacklevel=3)
    train = ImageDataset(stored["train_images"], stored["train_labels"], classes, name)
    test = ImageDataset(stored["test_images"], stored["test_labels"], classes, name)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{root}: train images are {tuple(train.images.shape[2:])}, test images "
            f"{tuple(test.images.shape[2:])}; pass image_size to resize (--image-size)"
        )
    return train, test
