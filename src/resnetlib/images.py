"""The one image decoder, :func:`decode_image`: the header is checked against
``resnetlib.limits`` before a pixel is decoded; each mode is converted by its true range
(16-bit grey from 0..65535, float from 0..1 or 0..255), palettes by colour, alpha dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .common import PathLike, first_line, optional_import, printable
from .files import open_regular
from .limits import MAX_ASPECT, MAX_DOWNSCALE, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MIN_CROP_PCT

__all__ = [
    "CROP_MODES",
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "INTERPOLATIONS",
    "ImageError",
    "bombs_refused",
    "decode_image",
    "pixel_limit",
]

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "TGA")
"""The Pillow formats decoded; others (EPS, PDF, ...) are refused unopened."""
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
)
"""The file names an image folder's listing takes (lower case): those of ``IMAGE_FORMATS``."""

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
"""The resampling filters :func:`decode_image` takes."""
CROP_MODES = ("center", "squash")
"""How ``crop_pct`` crops (timm's ``crop_mode``): keeping the aspect, or stretching the image."""

_GREY = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class ImageError(ValueError):
    """An image file that is not decoded: unreadable, or refused by a bound (both named)."""


class _RefusedError(Exception):
    """A refusal inside the decoder, raised as the caller's error type."""


def pixel_limit(side: float | None = None) -> int:
    """The most pixels an image may have to be decoded for an output of ``side`` pixels a side:
    ``MAX_IMAGE_PIXELS``, or ``(MAX_DOWNSCALE * side) ** 2`` where that is larger."""
    if side is None:
        return MAX_IMAGE_PIXELS
    return max(MAX_IMAGE_PIXELS, math.ceil(MAX_DOWNSCALE * side) ** 2)


@contextmanager
def bombs_refused() -> Iterator[None]:
    """Pillow's decompression-bomb warning raised as an error, not printed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", _pil().DecompressionBombWarning)
        yield


def _pil() -> Any:
    return optional_import("PIL.Image", "reading images needs Pillow", "train")


def decode_image(
    path: PathLike,
    *,
    channels: int = 3,
    size: tuple[int, int] | None = None,
    crop_pct: float | None = None,
    crop_mode: str = "center",
    interpolation: str = "bilinear",
    max_pixels: int | None = None,
    dtype: torch.dtype = torch.uint8,
    error: type[Exception] = ImageError,
    context: str = "",
) -> torch.Tensor:
    """The image at ``path`` as a ``channels`` x H x W tensor: uint8 (0..255) or, with
    ``dtype=torch.float32``, float in [0, 1].

    ``size`` is the output (height, width), else the native size: the whole image resized to
    it, or with ``crop_pct`` scaled (keeping its aspect) to cover ``size / crop_pct`` (for a
    square size: the shorter side to ``H / crop_pct``) and the centre kept (timm's eval
    transform); ``crop_mode="squash"`` stretches it to ``size / crop_pct`` instead (how
    :func:`resnetlib.train.load_data` resizes images). The header is checked first: at most
    ``max_pixels`` (default :func:`pixel_limit` of the resize), an aspect ratio of at most
    ``MAX_ASPECT``, a format of :data:`IMAGE_FORMATS`. ``context`` ends a refusal's message.

    Raises:
        ValueError: a bad ``channels``, ``interpolation``, ``size``, ``crop_pct`` or
            ``crop_mode``.
        error: (default :class:`ImageError`) the file is not a regular file, not readable,
            not an image, or refused by a bound; one line naming the file.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {', '.join(CROP_MODES)}; got {crop_mode!r}")
    name = printable(path)
    target = _target(size, crop_pct)  # size and crop_pct checked before the file is opened
    limit = pixel_limit(target) if max_pixels is None else max_pixels
    image_module = _pil()
    image_module.init()  # IMAGE_FORMATS this Pillow opens (WEBP is optional when it is built)
    formats = [name for name in IMAGE_FORMATS if name in image_module.OPEN]
    try:
        file = open_regular(path, what="an image", error=error)
    except PermissionError:
        raise error(f"{name}: permission denied; make it readable") from None
    except OSError as failed:
        raise error(f"{name}: cannot read ({failed.strerror or failed})") from None
    try:
        with file, image_module.open(file, formats=formats) as image:
            _check_header(image.size, limit, image_module.MAX_IMAGE_PIXELS, context)
            pixels = _convert(image, channels)
            resample = getattr(image_module.Resampling, interpolation.upper())
            pixels = _resize(pixels, size, crop_pct, resample, crop_mode == "squash")
            return _tensor(pixels, channels, dtype)
    except _RefusedError as refused:
        raise error(f"{name}: {refused}") from None
    except (image_module.DecompressionBombError, image_module.DecompressionBombWarning):
        raise error(f"{name}: {_BOMB}") from None
    except image_module.UnidentifiedImageError:
        raise error(f"{name}: not a readable image (none of {', '.join(IMAGE_FORMATS)})") from None
    except PermissionError:
        raise error(f"{name}: permission denied; make it readable") from None
    except MemoryError:
        raise error(f"{name}: out of memory decoding it") from None
    except Exception as failed:  # Pillow's decoders raise OSError, ValueError, EOFError, ...
        raise error(f"{name}: not a readable image ({first_line(failed)})") from None


_BOMB = (
    "refused as a decompression bomb (its header claims more pixels than Pillow allows); "
    "shrink it or remove it"
)


def _target(size: tuple[int, int] | None, crop_pct: float | None) -> float | None:
    if size is None:
        return None
    height, width = size
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise ValueError(f"size must be (height, width) within 1..{MAX_IMAGE_SIDE}; got {size}")
    side = float(max(height, width))
    if crop_pct is not None:
        if not (math.isfinite(crop_pct) and MIN_CROP_PCT <= crop_pct <= 1):
            raise ValueError(
                f"crop_pct must be a number from {MIN_CROP_PCT} to 1; got {crop_pct!r}"
            )
        side /= crop_pct
        if side > MAX_IMAGE_SIDE:
            raise ValueError(
                f"crop_pct {crop_pct} asks to resize to {side:,.0f} pixels a side, more than "
                f"{MAX_IMAGE_SIDE:,} (resnetlib.limits.MAX_IMAGE_SIDE)"
            )
    return side


def _check_header(size: tuple[int, int], limit: int, bomb: int | None, context: str) -> None:
    width, height = size
    pixels = width * height
    if bomb is not None and pixels > bomb:
        raise _RefusedError(_BOMB)
    if pixels > limit:
        raise _RefusedError(
            f"{width}x{height} pixels, more than the {limit:,} an image may have{context} "
            "(resnetlib.limits.MAX_IMAGE_PIXELS, MAX_DOWNSCALE); shrink it or remove it"
        )
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise _RefusedError(
            f"{width}x{height} pixels, a longer side more than {MAX_ASPECT} times the shorter "
            "(resnetlib.limits.MAX_ASPECT); crop it first"
        )


def _convert(image: Any, channels: int) -> Any:
    """``image`` as ``L`` or ``RGB`` (8-bit), or as ``F`` on 0..255 (a high-depth grey)."""
    mode = image.mode
    if mode.startswith("I"):  # 16-bit (I;16, I;16B, ...) or 32-bit integer grey: 0..65535
        return image.convert("F").point(lambda value: value * (255 / 65535))
    if mode == "F":
        image.load()
        low, high = image.getextrema()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise _RefusedError("a float image holding NaN or infinite values")
        return image if high > 1 else image.point(lambda value: value * 255)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "La"):  # to their plain alpha modes
        image = image.convert({"PA": "RGBA", "La": "LA"}[mode])
    if image.mode in _GREY:
        return image.convert("L")
    rgb = image.convert("RGB")
    return rgb if channels == 3 else rgb.convert("L")


def _resize(
    image: Any, size: tuple[int, int] | None, crop_pct: float | None, resample: Any, squash: bool
) -> Any:
    if size is None:
        return image
    height, width = size
    if crop_pct is None or (squash and crop_pct == 1):
        return image if image.size == (width, height) else image.resize((width, height), resample)
    if squash:  # stretched to (height, width) / crop_pct, the centre (height, width) kept
        left, top = image.width * (1 - crop_pct) / 2, image.height * (1 - crop_pct) / 2
        kept = (left, top, image.width - left, image.height - top)
        return image.resize((width, height), resample, box=kept)
    # Scaled, keeping its aspect, to cover (height, width) / crop_pct (timm's ResizeKeepRatio;
    # for a square size, the shorter side to height / crop_pct); the centre (height, width) of
    # that resize, made from that region alone (nothing larger)
    scale = max(height / image.height, width / image.width) / crop_pct
    full = (
        max(width, math.floor(image.width * scale + 0.5)),
        max(height, math.floor(image.height * scale + 0.5)),
    )
    left, top = (full[0] - width) // 2, (full[1] - height) // 2
    x_scale, y_scale = image.width / full[0], image.height / full[1]
    box = (left * x_scale, top * y_scale, (left + width) * x_scale, (top + height) * y_scale)
    return image.resize((width, height), resample, box=box)


def _tensor(image: Any, channels: int, dtype: torch.dtype) -> torch.Tensor:
    width, height = image.size  # L, RGB or F (grey on 0..255)
    if image.mode == "F":  # clamped and rounded; 8-bit pixels need neither (no extra copies)
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.float32)
        grey = data.view(1, height, width).clamp(0, 255).expand(channels, height, width)
        if dtype == torch.uint8:
            return grey.round().to(torch.uint8).contiguous()
        return (grey / 255).to(dtype).contiguous()
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = data.view(height, width, -1).permute(2, 0, 1).expand(channels, height, width)
    if dtype == torch.uint8:
        return pixels.contiguous()
    return (pixels.to(dtype) / 255).contiguous()
