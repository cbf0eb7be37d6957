"""The one image decoder, streaming predict, escaped output, checked data configs, exports
that cannot destroy their input or lie about dynamic sizes, and class counts checked before
anything is decoded (issue 24). Files are made here as an attacker or a careless user would
make them; memory cases run in a subprocess under ``RLIMIT_AS`` (:func:`run_limited`)."""

from __future__ import annotations

import importlib.util
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.common import printable
from resnetlib.core.data_config import check_data_config
from resnetlib.images import ImageError, decode_image
from tests.test_gate_files import save_unchecked
from tests.test_hostile_inputs import run_limited

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, command: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"resnetlib {command}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def _grey_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit greyscale PNG of zeros, written by hand: a few KB whatever its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def _photo(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """A smooth RGB picture (gradients and a blob), as a camera would give."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        127
        + 120
        * np.sin(x / rng.uniform(3, 9) + rng.uniform(0, 6))
        * np.cos(y / rng.uniform(3, 9) + rng.uniform(0, 6))
        for _ in range(3)
    ]
    picture: np.ndarray = np.clip(np.stack(channels, -1), 0, 255).round().astype(np.uint8)
    return picture


def _checkpoint(path: Path, **config: Any) -> Path:
    """A resnet20 checkpoint whose data config has ``config`` in it, unchecked, as a
    hand-edited file would (``rl.save`` itself refuses a config ``load`` would refuse)."""
    torch.manual_seed(0)
    model = rl.resnet20(num_classes=config.get("num_classes", 10))
    model.pretrained_cfg = {**model.pretrained_cfg, **config}
    save_unchecked(model, path)
    return path


# --------------------------------------------------------------------------------------
# One decoder, bounded before decoding
# --------------------------------------------------------------------------------------


def test_predict_and_image_folders_share_the_one_decoder() -> None:
    import resnetlib.deploy.preprocess as preprocess
    import resnetlib.images as images
    import resnetlib.train.data as data
    from resnetlib import limits

    assert vars(preprocess)["decode_image"] is images.decode_image
    assert vars(data)["decode_image"] is images.decode_image
    assert data.MAX_IMAGE_PIXELS == limits.MAX_IMAGE_PIXELS  # still importable from here
    assert data.MAX_DOWNSCALE == limits.MAX_DOWNSCALE


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (3_000_000, 1, r"3000000x1 pixels, a longer side more than 64 times"),  # 5.4 GB before
        (20_000, 1, r"20000x1 pixels, a longer side more than 64 times"),  # > 8 GB before
        (13_000, 13_000, r"decompression bomb"),
        (9_000, 9_000, r"9000x9000 pixels, more than the 67,108,864"),  # (32 * 256) ** 2
    ],
    ids=["3000000x1", "20000x1", "bomb", "pixels"],
)
def test_predict_refuses_by_the_header_in_bounded_memory(
    width: int, height: int, message: str, tmp_path: Path
) -> None:
    image = _grey_png(tmp_path / "huge.png", width, height)
    assert image.stat().st_size < 300_000
    code = (
        "import resnetlib.deploy.preprocess as p\n"
        "m = resnetlib.resnet18()\n"
        f"list(p.predict(m, [{str(image)!r}]))"
    )
    report = run_limited(code, headroom=400 * 2**20)
    assert report["error"] == "ImageError", report
    assert report["message"].startswith(f"{image}: "), report
    assert re.search(message, report["message"]), report
    assert report["seconds"] < 10, report


def test_a_long_image_within_the_aspect_bound_is_resized_from_its_centre_only(
    tmp_path: Path,
) -> None:
    """A 4096 x 64 strip, shorter side to 256: resized from the crop's region (a 224 x 224
    output), never to the 16384 x 256 whole."""
    strip = _grey_png(tmp_path / "strip.png", 4096, 64)
    code = (
        "import torch, resnetlib.images as i\n"
        f"x = i.decode_image({str(strip)!r}, size=(224, 224), crop_pct=0.875, "
        "dtype=torch.float32)\n"
        "assert x.shape == (3, 224, 224), x.shape"
    )
    report = run_limited(code, headroom=200 * 2**20)
    assert report["error"] is None, report


@pytest.mark.parametrize("crop_pct", [0.01, 0.049, 1.01, float("nan")])
def test_the_decoder_bounds_crop_pct_as_the_data_config_validator_does(
    tmp_path: Path, crop_pct: float
) -> None:
    """``decode_image`` and ``check_data_config`` refuse the same ``crop_pct`` values, with
    the same bound in the message, before the file is opened."""
    missing = tmp_path / "never-opened.png"
    with pytest.raises(ValueError, match=r"crop_pct must be a number from 0.05 to 1") as decoded:
        decode_image(missing, size=(32, 32), crop_pct=crop_pct)
    with pytest.raises(ValueError, match=r"crop_pct must be a number from 0.05 to 1"):
        check_data_config({"crop_pct": crop_pct})
    assert "never-opened" not in str(decoded.value)
    assert decode_image(_grey_png(tmp_path / "ok.png", 64, 64), size=(32, 32), crop_pct=0.05).shape[
        1:
    ] == (32, 32)


def test_a_non_square_size_is_covered_keeping_the_aspect_then_centre_cropped(
    tmp_path: Path,
) -> None:
    """As timm's eval transform (ResizeKeepRatio): an image of the model's own non-square size
    at crop_pct 1 is fed as it is; otherwise it is scaled to cover size / crop_pct."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # height 12, width 20
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    same = decode_image(tmp_path / "wide.png", size=(12, 20), crop_pct=1.0)
    assert torch.equal(same, torch.from_numpy(pixels).permute(2, 0, 1))
    tall = np.concatenate([pixels, pixels])  # 24 x 20: covers 12 x 20 at scale 1 (its width)
    Image.fromarray(tall).save(tmp_path / "tall.png")
    middle = decode_image(tmp_path / "tall.png", size=(12, 20), crop_pct=1.0)
    assert torch.equal(middle, torch.from_numpy(tall[6:18]).permute(2, 0, 1))
    # crop_pct 0.5 covers 24 x 40: the 12 x 20 image doubled, its centre quarter kept
    half = decode_image(tmp_path / "wide.png", size=(12, 20), crop_pct=0.5, interpolation="nearest")
    assert torch.equal(
        half, torch.from_numpy(pixels[3:9, 5:15].repeat(2, 0).repeat(2, 1)).permute(2, 0, 1)
    )


def test_squash_stretches_the_whole_image_or_its_central_crop_pct(tmp_path: Path) -> None:
    """crop_mode="squash" (how load_data resizes) keeps the whole image, stretched; with
    crop_pct its central fraction in each direction."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    whole = decode_image(tmp_path / "wide.png", size=(6, 6), crop_mode="squash")
    assert torch.equal(whole, decode_image(tmp_path / "wide.png", size=(6, 6)))
    kept = decode_image(
        tmp_path / "wide.png",
        size=(6, 12),
        crop_pct=0.5,
        crop_mode="squash",
        interpolation="nearest",
    )
    assert torch.equal(kept, torch.from_numpy(pixels[3:9, 6:18]).permute(2, 0, 1))
    with pytest.raises(ValueError, match="crop_mode must be one of center, squash; got 'border'"):
        decode_image(tmp_path / "wide.png", size=(6, 6), crop_mode="border")
    with pytest.raises(ValueError, match="crop_mode must be one of center, squash or border"):
        check_data_config({"crop_mode": "diagonal"})


def test_a_model_trained_on_a_folder_is_fed_by_predict_as_it_trained(tmp_path: Path) -> None:
    """fit() stretches non-square images to the size it trains at; predict's reader cropped
    their centre instead (the run's data config said "center"), so a wide image whose class
    lies at its edge was another picture to the model. The run records crop_mode "squash"."""
    from resnetlib.deploy.preprocess import read_images
    from resnetlib.train import DIGITS, fit, load_data

    for split in ("train", "test"):
        for label, value in (("a", 255), ("b", 0)):
            (tmp_path / split / label).mkdir(parents=True)
            for index in range(4):
                pixels = np.zeros((10, 40, 3), dtype=np.uint8)
                pixels[:, : 10 * (index % 2 + 1)] = value  # a stripe at the left edge
                Image.fromarray(pixels).save(tmp_path / split / label / f"{index}.png")
    data = load_data(tmp_path, image_size=8)
    model = rl.resnet20(widths=(4, 8, 16), num_classes=2)
    recipe = DIGITS.__class__(**{**DIGITS.to_dict(), "augment": None, "batch_size": 4})
    fit(model, data, recipe, iterations=1, progress=False, statistics="data")
    config = model.pretrained_cfg
    assert config["crop_mode"] == "squash"
    files = sorted((tmp_path / "test").glob("*/*.png"))
    read = read_images(files, config)
    mean = torch.tensor(config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(config["std"]).view(1, -1, 1, 1)
    torch.testing.assert_close(read, (data.test.images / 255 - mean) / std)


def test_images_are_converted_by_their_true_range(tmp_path: Path) -> None:
    rgb = _photo(0)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "float.tiff")
    Image.fromarray(grey.astype(np.int32) * 257, mode="I").save(tmp_path / "int32.tiff")
    alpha = np.random.default_rng(1).integers(0, 256, grey.shape, dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([grey, alpha])).save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tiff")
    palette = Image.fromarray(rgb).quantize(64)
    palette.save(tmp_path / "palette.png")
    palette.save(tmp_path / "transparent.png", transparency=0)
    bits = Image.fromarray(grey).convert("1")
    bits.save(tmp_path / "bits.png")

    def read(name: str, channels: int = 3) -> np.ndarray:
        x = decode_image(tmp_path / name, channels=channels, dtype=torch.float32)
        return x.permute(1, 2, 0).numpy() * 255

    grey3 = np.repeat(grey[..., None], 3, -1).astype(np.float32)
    for name in ("grey8.png", "grey16.png", "float.tiff", "int32.tiff", "la.png"):
        np.testing.assert_allclose(read(name), grey3, atol=0.01, err_msg=name)
        np.testing.assert_allclose(read(name, 1)[..., 0], grey, atol=0.01, err_msg=name)
    np.testing.assert_array_equal(read("rgba.png"), rgb)  # alpha dropped
    np.testing.assert_array_equal(read("rgb.png", 1)[..., 0], grey)
    for name in ("palette.png", "transparent.png"):  # through the palette's colours
        np.testing.assert_array_equal(read(name), np.asarray(palette.convert("RGB")))
    cmyk = np.asarray(Image.fromarray(rgb).convert("CMYK").convert("RGB"))
    np.testing.assert_array_equal(read("cmyk.tiff"), cmyk)
    np.testing.assert_array_equal(read("bits.png", 1)[..., 0], np.asarray(bits.convert("L")))
    # A 16-bit image's full range is used, not clipped at 255 of 65535.
    ramp = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    decoded = decode_image(tmp_path / "ramp16.png", channels=1, dtype=torch.float32)[0]
    np.testing.assert_allclose(decoded.numpy(), ramp / 65535, atol=1e-6)
    assert decode_image(tmp_path / "ramp16.png").max() == 255


def test_the_same_picture_at_8_and_16_bits_gets_the_same_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnetlib.deploy.preprocess import read_images

    model = _checkpoint(tmp_path / "grey.pt")
    paths = []
    for seed in range(3):
        grey = np.asarray(Image.fromarray(_photo(seed, 40, 40)).convert("L"))
        Image.fromarray(grey).save(tmp_path / f"{seed}-8.png")
        Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / f"{seed}-16.png")
        paths += [tmp_path / f"{seed}-8.png", tmp_path / f"{seed}-16.png"]
    config = rl.load(model).pretrained_cfg
    x = read_images(paths, config)
    # Pillow resizes 8-bit images in two passes, each rounded: 1 in 255 at most apart.
    atol = 1.01 / 255 / min(config["std"])
    torch.testing.assert_close(x[0::2], x[1::2], atol=atol, rtol=0)
    code, out, _ = _run(["predict", str(model), *map(str, paths)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 6
    for eight, sixteen in zip(lines[0::2], lines[1::2], strict=True):
        ranked = [re.findall(r"\((\d+)\) ([\d.]+)%", line) for line in (eight, sixteen)]
        assert [index for index, _ in ranked[0]] == [index for index, _ in ranked[1]]
        for (_, p8), (_, p16) in zip(*ranked, strict=True):
            assert abs(float(p8) - float(p16)) <= 0.2


def test_what_is_not_a_plain_image_file_is_refused_unopened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)  # a FIFO with no writer: reading it would hang
    with pytest.raises(ImageError, match=r"photo\.png: a FIFO \(an image\); resnetlib reads only"):
        decode_image(fifo)
    eps = tmp_path / "figure.eps"  # Pillow would hand it to Ghostscript, an outside program
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match=r"figure\.eps: not a readable image \(none of PNG, JPEG"):
        decode_image(eps)
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(b"<html>404 not found</html>")  # a download gone wrong
    model = _checkpoint(tmp_path / "model.pt")
    for path, message in (
        (fifo, "not a regular file"),
        (damaged, "not a readable image (none of PNG"),
    ):
        code, out, err = _run(["predict", str(model), str(path)], capsys)
        assert message in _one_line_error(code, err, "predict")
        assert out == ""


def test_decoding_images_in_a_folder_keeps_its_messages(tmp_path: Path) -> None:
    from resnetlib.train.data import DataError, _decode

    big = _grey_png(tmp_path / "big.png", 5000, 5000)
    with pytest.raises(DataError, match=r"big\.png: 5000x5000 pixels, more than the 16,777,216 "):
        _decode([big], None, tmp_path)
    small = tmp_path / "small.png"
    Image.fromarray(_photo(0)).save(small)
    other = tmp_path / "other.png"
    Image.fromarray(_photo(1, 10, 10)).save(other)
    with pytest.raises(DataError, match=r"images differ in size .*pass image_size"):
        _decode([small, other], None, tmp_path)
    both = _decode([small, other], 8, tmp_path)
    assert both.shape == (2, 3, 8, 8)
    assert both.dtype == torch.uint8


# --------------------------------------------------------------------------------------
# Predict streams
# --------------------------------------------------------------------------------------


def test_predict_is_lazy_and_decodes_one_batch_ahead_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resnetlib.deploy.preprocess as preprocess
    import resnetlib.images as images

    paths = []
    for i in range(10):
        Image.fromarray(_photo(i)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    decoded: list[Path] = []
    real = images.decode_image

    def counting(path: Any, **kwargs: Any) -> torch.Tensor:
        decoded.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(preprocess, "decode_image", counting)
    model = rl.resnet20()
    results = preprocess.predict(model, iter(paths), top=3, batch_size=4)
    assert decoded == []
    first = next(results)
    assert first.path == str(paths[0])
    assert len(first.classes) == 3
    assert decoded == paths[:4]
    rest = list(results)
    assert [p.path for p in rest] == [str(p) for p in paths[1:]]
    assert decoded == paths
    eager = preprocess.read_images(paths, model.pretrained_cfg)
    with torch.no_grad():
        best = model.eval()(eager).argmax(1).tolist()
    assert [p.classes[0][0] for p in (first, *rest)] == best


def test_predict_over_many_images_runs_in_bounded_memory(tmp_path: Path) -> None:
    """300 images at 512 x 512 would stack to 943 MB; a batch of 8 is 25 MB."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(300):
        Image.fromarray(_photo(i, 12, 16)).save(folder / f"{i:03d}.png")
    code = (
        "import torch, resnetlib.deploy.preprocess as p\n"
        "from pathlib import Path\n"
        "model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), "
        "torch.nn.Linear(3, 4))\n"
        "model.pretrained_cfg = {'input_size': (3, 512, 512), 'mean': (0.5,) * 3, "
        "'std': (0.25,) * 3, 'crop_pct': 1.0}\n"
        f"files = sorted(Path({str(folder)!r}).iterdir())\n"
        "assert sum(1 for _ in p.predict(model, files, batch_size=8)) == 300"
    )
    report = run_limited(code, headroom=400 * 2**20)
    assert report["error"] is None, report
    assert report["peak_mb"] - report["imports_mb"] < 250, report


def test_the_command_prints_each_batch_before_a_later_image_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _checkpoint(tmp_path / "model.pt")
    paths = []
    for i in range(5):
        Image.fromarray(_photo(i)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    broken = tmp_path / "broken.png"  # a download cut short
    broken.write_bytes(Path(paths[0]).read_bytes()[:300])
    argv = ["predict", str(model), *paths, str(broken), "--batch-size", "2", "--top", "1"]
    code, out, err = _run(argv, capsys)
    assert "broken.png: not a readable image" in _one_line_error(code, err, "predict")
    assert [line.split(": ")[0] for line in out.splitlines()] == paths[:4]


# --------------------------------------------------------------------------------------
# Names and paths are printed with their control characters escaped
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cat", "cat"),
        ("chat noir é 猫 🐈", "chat noir é 猫 🐈"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
        ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),
        ("\u202egpj.exe", "\\u202egpj.exe"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("bytes\udcff", "bytes\\udcff"),  # an undecodable byte of a file name
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert len(printable(text).splitlines()) == 1
    assert printable(text).isprintable() or " " in text


def test_label_names_and_paths_cannot_clear_the_terminal_or_forge_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["\x1b[2J\x1b[H", "dog\ncat.png: cat (1) 100.0%", "\u202etac", "\x1b]0;owned\x07"]
    model = _checkpoint(tmp_path / "model.pt", num_classes=4, label_names=names)
    image = tmp_path / "a\nb\x1b[31m.png"
    Image.fromarray(_photo(0)).save(image)
    code, out, err = _run(["predict", str(model), str(image), "--top", "4"], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 1
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert out.startswith(printable(str(image)) + ": ")
    for name in names:
        assert printable(name) in out
    code, out, err = _run(["predict", str(model), str(tmp_path / "gone\n.png")], capsys)
    assert "gone\\x0a.png: no such image file" in _one_line_error(code, err, "predict")


# --------------------------------------------------------------------------------------
# Data configs: one validator for predict and export
# --------------------------------------------------------------------------------------

_BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "std-1e-300": ({"std": (1e-300,) * 3}, r"std must hold 3 finite numbers .* from 0\.001"),
    "mean-1e300": ({"mean": (1e300,) * 3}, r"mean must hold 3 finite numbers"),
    "input-10^6": ({"input_size": (3, 10**6, 10**6)}, r"input_size must be \(channels"),
    "crop-1e-9": ({"crop_pct": 1e-9}, r"crop_pct must be a number from 0\.05 to 1"),
}


@pytest.mark.parametrize("case", sorted(_BAD_CONFIGS))
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_checkpoint_with_a_bad_data_config_is_one_line(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, message = _BAD_CONFIGS[case]
    model = _checkpoint(tmp_path / "model.pt", **change)
    image = tmp_path / "x.png"
    Image.fromarray(_photo(0)).save(image)
    out = tmp_path / "model.pt2"
    argv = (
        ["predict", str(model), str(image)]
        if command == "predict"
        else ["export", str(model), "--format", "pt2", "--normalize", "--out", str(out)]
    )
    code, stdout, err = _run(argv, capsys)
    assert re.search(message, _one_line_error(code, err, command))
    assert stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("case", sorted(_BAD_CONFIGS))
def test_predict_and_normalized_check_a_config_set_on_the_model(case: str) -> None:
    from resnetlib.deploy.preprocess import Normalized, predict

    change, message = _BAD_CONFIGS[case]
    model = rl.resnet20()
    model.pretrained_cfg = {**model.pretrained_cfg, **change}
    with pytest.raises(ValueError, match=message):
        predict(model, [])
    if case.startswith(("std", "mean")):
        with pytest.raises(ValueError, match=message):
            Normalized(model)


# --------------------------------------------------------------------------------------
# Export never replaces its own input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "form"), [("pt2", "same"), ("pt2", "hard-link"), ("pt2", "symlink"), ("onnx", "same")]
)
def test_export_refuses_to_write_over_its_checkpoint(
    form: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if fmt == "onnx" and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("ONNX export needs onnx and onnxscript")
    checkpoint = _checkpoint(tmp_path / "model.pt")
    before = checkpoint.read_bytes()
    out = checkpoint
    # the output path's check refuses first: a checkpoint is not an export to replace
    expected = f"a --format {fmt} file's name ends in .{fmt}"
    if form == "hard-link":
        out = tmp_path / f"link.{fmt}"
        os.link(checkpoint, out)
        expected = f"an existing file that is not a --format {fmt} export would be overwritten"
    elif form == "symlink":
        out = tmp_path / "alias.onnx"
        out.symlink_to(checkpoint)
    for argv in (
        ["export", str(checkpoint)],
        ["export", "resnet20", "--checkpoint", str(checkpoint)],
    ):
        code, stdout, err = _run([*argv, "--format", fmt, "--out", str(out)], capsys)
        line = _one_line_error(code, err, "export")
        assert expected in line
        assert stdout == ""
        assert checkpoint.read_bytes() == before
    assert not list(tmp_path.glob(".*partial*"))


# --------------------------------------------------------------------------------------
# --dynamic-size keeps every size dynamic, whatever --input says, or refuses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["3,1,1", "3,2,5"])
def test_a_dynamic_size_export_from_a_tiny_input_runs_at_other_sizes(
    size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = rl.resnet20().eval()
    checkpoint = tmp_path / "model.pt"
    rl.save(model, checkpoint)
    out = tmp_path / "model.pt2"
    argv = ["export", str(checkpoint), "--format", "pt2", "--dynamic-size", "--input", size]
    code, stdout, err = _run([*argv, "--out", str(out)], capsys)
    assert code == 0, err
    # ResNet-20 reduces 4 times: every feature map must stay wider than 1 pixel
    assert "height and width (each at least 5), traced at 8x" in stdout
    program = torch.export.load(out).module()
    for shape in ((1, 3, 5, 5), (1, 3, 5, 7), (1, 3, 8, 8), (2, 3, 33, 17), (1, 3, 64, 48)):
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-5)


def test_a_dynamic_size_onnx_export_from_a_tiny_input_runs_at_other_sizes(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if importlib.util.find_spec("onnxscript") is None:
        pytest.skip("ONNX export needs onnxscript")
    torch.manual_seed(0)
    model = rl.plain20().eval()
    checkpoint = tmp_path / "model.pt"
    rl.save(model, checkpoint)
    out = tmp_path / "model.onnx"
    argv = ["export", str(checkpoint), "--format", "onnx", "--dynamic-size", "--input", "3,1,1"]
    assert main([*argv, "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 8, 8), (2, 3, 21, 40)):
        x = torch.randn(shape)
        (logits,) = session.run(["output"], {"input": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=1e-4, atol=1e-4)


def test_a_model_that_fixes_its_size_is_refused_a_dynamic_export() -> None:
    from resnetlib.deploy.export import export_program

    class Flattening(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 64 * 64, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.fc(x.flatten(1))
            return out

    with pytest.raises(ValueError, match=r"--dynamic-size: traced at 64x64, .* fails at 33x35"):
        export_program(Flattening(), (3, 64, 64), dynamic_size=True)


# --------------------------------------------------------------------------------------
# The class count is checked from the listing, before any image is decoded or cached
# --------------------------------------------------------------------------------------


def test_a_class_count_mismatch_is_found_before_decoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(cache))
    root = tmp_path / "shots"
    for split, label in (("train", "cat"), ("train", "dog"), ("val", "cat")):
        folder = root / split / label
        folder.mkdir(parents=True)
        for i in range(31):  # garbage: decoding any of them would fail
            (folder / f"{i}.png").write_bytes(b"not a png at all")
    model = _checkpoint(tmp_path / "model.pt")  # 10 classes
    code, _, err = _run(["evaluate", str(model), "--data", str(root)], capsys)
    line = _one_line_error(code, err, "evaluate")
    assert "the model has 10 classes and shots has 2" in line
    assert not cache.exists()
    # The same with --classes: checked after choosing, still before decoding.
    argv = ["evaluate", str(model), "--data", str(root), "--classes", "dog"]
    code, _, err = _run(argv, capsys)
    assert "the model has 10 classes and shots has 1" in _one_line_error(code, err, "evaluate")
    # With the right count the images are decoded, and the garbage named.
    two = _checkpoint(tmp_path / "two.pt", num_classes=2)
    code, _, err = _run(["evaluate", str(two), "--data", str(root)], capsys)
    assert "0.png: not a readable image (none of PNG" in _one_line_error(code, err, "evaluate")


def test_load_data_calls_before_decoding_with_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resnetlib.train.data as data

    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    for split, label in (("train", "cat"), ("train", "dog"), ("test", "dog")):
        (root / split / label).mkdir(parents=True)
        Image.fromarray(_photo(0, 8, 8)).save(root / split / label / "a.png")
    seen: list[tuple[tuple[str, ...], int, str]] = []

    class StopError(Exception):
        pass

    def stop(classes: tuple[str, ...], channels: int, name: str) -> None:
        seen.append((classes, channels, name))
        raise StopError

    def no_decoding(*args: Any) -> torch.Tensor:
        raise AssertionError("decoded before the listing was checked")

    with monkeypatch.context() as patch:
        patch.setattr(data, "_decode", no_decoding)
        with pytest.raises(StopError):
            data.load_data(root, before_decoding=stop)
        with pytest.raises(StopError):
            data.load_data(root, classes=["dog"], before_decoding=stop)
    assert seen == [(("cat", "dog"), 3, "pets"), (("dog",), 3, "pets")]
    splits = data.load_data("digits", before_decoding=lambda *args: seen.append(args))
    assert seen[-1] == (splits.classes, 3, "digits")
