"""Data statistics by one definition (per-channel mean and std over all training pixels), the
data set's own for a model trained from scratch, and the TinyImageNet recipe."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlib as rl
import resnetlib.train.data as data_module
from resnetlib.cli import main
from resnetlib.core.data_config import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from resnetlib.models.weights import get_weights
from resnetlib.train import fit
from resnetlib.train.data import ImageDataset, data_layout, data_statistics, load_data
from resnetlib.train.recipe import TINYIMAGENET, Recipe

from .test_train_data import write_cifar10


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _dataset(n: int = 7, size: int = 5, seed: int = 0) -> ImageDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    images[:, 2] //= 3  # channels that differ
    return ImageDataset(images, torch.zeros(n, dtype=torch.int64), ("a",), "mine")


def _folder(root: Path, size: int, *, test: str = "val", per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), (test, 1)):
        for name in ("cat", "dog"):
            for j in range(count):
                path = root / split / name / f"{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[..., 0] //= 2
                Image.fromarray(pixels).save(path)


def test_cifar_statistics_are_pixel_statistics() -> None:
    # per-channel mean and std over every training pixel (not the average per-image std)
    assert pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4) == CIFAR10_MEAN
    assert pytest.approx((0.2470, 0.2435, 0.2616), abs=1e-4) == CIFAR10_STD
    assert pytest.approx((0.5071, 0.4865, 0.4409), abs=1e-4) == CIFAR100_MEAN
    assert pytest.approx((0.2673, 0.2564, 0.2762), abs=1e-4) == CIFAR100_STD
    # the library's default for a new CIFAR model
    assert rl.resnet20().pretrained_cfg["std"] == CIFAR10_STD


def test_published_weights_keep_their_publishers_statistics() -> None:
    mm = get_weights("resnet18.mm_cifar10")
    assert mm.config["std"] == pytest.approx((0.2023, 0.1994, 0.2010), abs=1e-4)
    mm100 = get_weights("resnet50.mm_cifar100")
    assert mm100.config["std"] == pytest.approx((68.170 / 255, 65.392 / 255, 70.418 / 255))
    aka = get_weights("resnet20.akamaster_cifar10")
    assert aka.config["std"] == (0.229, 0.224, 0.225)


def test_computed_statistics_match_float64_over_all_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = _dataset()
    pixels = dataset.images.numpy().astype(np.float64) / 255
    want_mean = pixels.mean(axis=(0, 2, 3))
    want_std = pixels.std(axis=(0, 2, 3))
    mean, std = data_statistics(dataset)
    assert mean == pytest.approx(want_mean, rel=1e-12)
    assert std == pytest.approx(want_std, rel=1e-12)
    monkeypatch.setattr(data_module, "_STATISTICS_CHUNK", 1)  # one image a chunk: same sums
    assert data_statistics(dataset) == (mean, std)


def test_constant_channel_has_zero_std_and_empty_set_is_refused() -> None:
    images = torch.full((2, 1, 3, 3), 51, dtype=torch.uint8)
    mean, std = data_statistics(
        ImageDataset(images, torch.zeros(2, dtype=torch.int64), ("a",), "x")
    )
    assert mean == pytest.approx((0.2,))
    assert std == (0.0,)
    empty = ImageDataset(
        torch.zeros(0, 3, 4, 4, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), ("a",), "x"
    )
    with pytest.raises(ValueError, match="no pixels"):
        data_statistics(empty)


def test_cifar_layout_carries_published_statistics(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "c10", n=6)
    splits = load_data(tmp_path / "c10", val_size=2, classes=[0, 1, 2])
    for split in (splits.train, splits.val, splits.test):
        assert split is not None
        assert data_statistics(split) == (CIFAR10_MEAN, CIFAR10_STD)


def test_fit_from_scratch_records_the_data_sets_statistics(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    _folder(root, 8, test="valid")
    data = load_data(root)
    model = rl.resnet20(num_classes=2)
    recipe = Recipe(iterations=1, milestones=(), batch_size=4, val_size=0)
    before = dict(model.pretrained_cfg)
    fit(model, data, recipe, progress=False, out=tmp_path / "kept")
    assert model.pretrained_cfg["std"] == before["std"]  # default: the model's own

    model = rl.resnet20(num_classes=2)
    fit(model, data, recipe, progress=False, out=tmp_path / "run", statistics="data")
    mean, std = data_statistics(data.train)
    assert model.pretrained_cfg["mean"] == mean
    assert model.pretrained_cfg["std"] == std
    assert std != before["std"]
    saved = rl.load(tmp_path / "run" / "final.pt")  # evaluate/predict/export read it there
    assert saved.pretrained_cfg["mean"] == pytest.approx(mean)
    assert saved.pretrained_cfg["std"] == pytest.approx(std)
    with pytest.raises(ValueError, match="statistics must be"):
        fit(model, data, recipe, progress=False, statistics="imagenet")  # type: ignore[arg-type]


FAST = ["--no-progress", "--iterations", "1", "--batch-size", "4", "--val-size", "0"]


def _run_json(out: Path) -> dict[str, object]:
    info: dict[str, object] = json.loads((out / "run.json").read_text())
    return info


def test_cli_64x64_folder_gets_tinyimagenet_recipe_stem_and_own_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "tiny100"
    _folder(root, 64)
    assert data_layout(root) == "folder"
    out = tmp_path / "run"
    assert main(["train", "resnet18", "--data", str(root), "--out", str(out), *FAST]) == 0
    info = _run_json(out)
    assert info["recipe_name"] == "the TinyImageNet recipe"
    model = rl.load(out / "final.pt")
    assert model.spec.stem.type == "cifar"  # 3x3 stride 1, no max-pool: 8x8 at the last stage
    assert model.pretrained_cfg["pool_size"] == (8, 8)
    mean, std = data_statistics(load_data(root).train)
    assert model.pretrained_cfg["mean"] == pytest.approx(mean)
    assert model.pretrained_cfg["std"] == pytest.approx(std)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["weight_decay"] == TINYIMAGENET.weight_decay
    assert recipe["augment"] == {"pad": 8, "flip": True}

    # fine-tuning from those weights keeps the weights' statistics (the stem is named)
    tuned = tmp_path / "tuned"
    argv = ["train", "resnet18", "--stem", "cifar", "--checkpoint", str(out / "final.pt")]
    argv += ["--data", "digits"]
    assert main([*argv, "--out", str(tuned), "--image-size", "64", *FAST]) == 0
    again = rl.load(tuned / "final.pt")
    assert again.pretrained_cfg["std"] == pytest.approx(std)


def test_cli_small_folder_and_named_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "small"
    _folder(root, 8, test="test")
    out = tmp_path / "run"
    assert main(["train", "resnet20", "--data", str(root), "--out", str(out), *FAST]) == 0
    assert _run_json(out)["recipe_name"] == "the paper's CIFAR recipe"
    model = rl.load(out / "final.pt")
    assert model.pretrained_cfg["std"] != CIFAR10_STD  # its own, not CIFAR's or ImageNet's
    assert model.pretrained_cfg["std"] == pytest.approx(data_statistics(load_data(root).train)[1])

    named = tmp_path / "named"
    argv = ["train", "resnet20", "--data", str(root), "--recipe", "tinyimagenet"]
    assert main([*argv, "--out", str(named), *FAST]) == 0
    assert _run_json(named)["recipe_name"] == "the TinyImageNet recipe"
    assert json.loads((named / "recipe.json").read_text())["schedule"] == "cosine"


def test_startup_line_says_when_bf16_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import resnetlib.train.loop as loop

    recipe = Recipe()
    monkeypatch.setattr(loop, "native_bf16", lambda: True)
    # The gain over what the run does: fp32 channels_last (the CPU default) or fp32 NCHW.
    hint = loop._bf16_hint(torch.device("cpu"), dataclasses.replace(recipe, channels_last=True))
    assert "--bf16 trains about 1.4x faster" in hint
    hint = loop._bf16_hint(torch.device("cpu"), dataclasses.replace(recipe, channels_last=False))
    assert "--bf16 trains about 1.7x faster" in hint
    assert loop._bf16_hint(torch.device("cpu"), Recipe(autocast="bf16")) == ""
    monkeypatch.setattr(loop, "native_bf16", lambda: False)
    assert loop._bf16_hint(torch.device("cpu"), recipe) == ""
