"""Pretrained weights end to end, without network: files the tests make, in a temporary cache.

Each test registers a fake entry (a registered one with another tag, URL and hash) for a
file it generates in the publisher's layout, and checks what ``create_model(...,
pretrained=...)`` does: a cached file with the right checksum loads without network and
computes what the publisher's model computes; a wrong checksum is refused; a missing file on
an offline machine gives an error naming the URL and the cache path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
import torch
from safetensors.torch import save_file

import resnetlib as rl
from resnetlib.models import weights as w
from resnetlib.models.pretrained import PretrainedError

from .akamaster_reference import AkamasterResNet, released_checkpoint


@pytest.fixture
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    """torch.hub's cache in a temporary directory."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network: torch.hub's downloader raises URLError; returns the URLs it was asked for."""
    asked: list[str] = []

    def fail(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        asked.append(url)
        raise URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    return asked


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def register(monkeypatch: pytest.MonkeyPatch, entry: w.PretrainedWeights) -> None:
    tags = dict(w._BY_MODEL.get(entry.model, {}))
    tags[entry.tag] = entry
    monkeypatch.setitem(w._BY_MODEL, entry.model, tags)


def publish(payload: Any, folder: Path, stem: str, suffix: str = ".pth") -> tuple[Path, str]:
    """Save ``payload`` as ``<stem>-<sha256 prefix><suffix>``, as the publishers name files."""
    folder.mkdir(parents=True, exist_ok=True)
    draft = folder / f"{stem}{suffix}"
    torch.save(payload, draft)
    prefix = sha256(draft)[:8]
    final = draft.with_name(f"{stem}-{prefix}{suffix}")
    draft.rename(final)
    return final, prefix


def fake_entry(base: str, tag: str, file: Path, prefix: str, **changes: Any) -> w.PretrainedWeights:
    fields: dict[str, Any] = {
        "tag": tag,
        "url": f"https://example.invalid/models/{file.name}",
        "hash_prefix": prefix,
        "aliases": (),
        **changes,
    }
    return dataclasses.replace(w.get_weights(base), **fields)


def randomize_norms(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)


@pytest.fixture
def akamaster_file(tmp_path: Path) -> tuple[AkamasterResNet, Path, str]:
    torch.manual_seed(0)
    reference = AkamasterResNet(3)
    randomize_norms(reference)
    file, prefix = publish(
        released_checkpoint(reference), tmp_path / "published", "resnet20", ".th"
    )
    return reference.eval(), file, prefix


def place_in_cache(hub: Path, file: Path) -> Path:
    cached = hub / "checkpoints" / file.name
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(file.read_bytes())
    return cached


def test_cached_file_loads_without_network_and_computes_the_publishers_outputs(
    monkeypatch: pytest.MonkeyPatch,
    hub_dir: Path,
    offline: list[str],
    akamaster_file: tuple[AkamasterResNet, Path, str],
) -> None:
    reference, file, prefix = akamaster_file
    register(monkeypatch, fake_entry("resnet20", "test", file, prefix))
    place_in_cache(hub_dir, file)
    model = rl.create_model("resnet20", pretrained="test").eval()
    assert offline == []
    assert model.spec.shortcut == "A_both"
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), reference(x))
    assert model.pretrained_cfg["tag"] == "test"
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    # The same through timm's "model.tag" name.
    again = rl.create_model("resnet20.test", pretrained=True).eval()
    torch.testing.assert_close(again(x), reference(x))


def test_missing_file_downloads_into_the_cache_with_its_hash_checked(
    monkeypatch: pytest.MonkeyPatch, hub_dir: Path, akamaster_file: tuple[Any, Path, str]
) -> None:
    reference, file, prefix = akamaster_file
    # torch.hub's own downloader, from a file: URL (no network needed).
    entry = fake_entry("resnet20", "test", file, prefix, url=file.as_uri())
    register(monkeypatch, entry)
    model = rl.create_model("resnet20", pretrained="test").eval()
    assert (hub_dir / "checkpoints" / file.name).read_bytes() == file.read_bytes()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), reference(x))

    wrong = dataclasses.replace(entry, tag="wrong", hash_prefix="0" * 8)
    (hub_dir / "checkpoints" / file.name).unlink()
    register(monkeypatch, wrong)
    with pytest.raises(PretrainedError, match="checksum mismatch") as error:
        rl.create_model("resnet20", pretrained="wrong")
    assert file.as_uri() in str(error.value)
    assert not (hub_dir / "checkpoints" / file.name).exists()


def test_wrong_checksum_in_the_cache_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    hub_dir: Path,
    offline: list[str],
    akamaster_file: tuple[Any, Path, str],
) -> None:
    _, file, prefix = akamaster_file
    entry = fake_entry("resnet20", "test", file, prefix)
    register(monkeypatch, entry)
    cached = place_in_cache(hub_dir, file)
    data = cached.read_bytes()
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one byte changed
    with pytest.raises(PretrainedError, match="checksum mismatch") as error:
        rl.create_model("resnet20", pretrained="test")
    message = str(error.value)
    assert str(cached) in message
    assert str(entry.url) in message
    assert prefix in message


def test_missing_file_offline_names_the_url_and_the_cache_path(
    monkeypatch: pytest.MonkeyPatch,
    hub_dir: Path,
    offline: list[str],
    akamaster_file: tuple[Any, Path, str],
) -> None:
    _, file, prefix = akamaster_file
    entry = fake_entry("resnet20", "test", file, prefix)
    register(monkeypatch, entry)
    with pytest.raises(PretrainedError, match="could not download") as error:
        rl.create_model("resnet20", pretrained="test")
    assert offline == [entry.url]
    message = str(error.value)
    assert str(entry.url) in message
    assert str(hub_dir / "checkpoints" / file.name) in message
    assert "URLError" in message


def test_a_registered_entry_offline_gives_the_same_error(hub_dir: Path, offline: list[str]) -> None:
    with pytest.raises(PretrainedError, match=r"pretrained_models/resnet20-12fca82f\.th"):
        rl.create_model("resnet20", pretrained=True)
    assert offline == [w.get_weights("resnet20").url]


def test_a_directory_at_the_cache_path_is_named_not_a_download_failure(
    hub_dir: Path, offline: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Something already there is no reason to download (and no network advice): one line
    saying a directory is in the way, from create_model and the command line."""
    from resnetlib.cli import main

    (hub_dir / "checkpoints" / "resnet32-d509ac18.th").mkdir(parents=True)
    with pytest.raises(PretrainedError, match=r"resnet32-d509ac18\.th: a directory is in the way"):
        rl.create_model("resnet32", pretrained=True)
    assert offline == []
    assert main(["summary", "resnet32", "--pretrained"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "a directory is in the way of resnet32.akamaster_cifar10's file" in error
    assert "check the network" not in error


def test_torchvision_layout_with_another_head_and_input(
    monkeypatch: pytest.MonkeyPatch, hub_dir: Path, offline: list[str], tmp_path: Path
) -> None:
    torch.manual_seed(1)
    published = rl.resnet18()
    file, prefix = publish(published.state_dict(), tmp_path / "published", "resnet18")
    register(monkeypatch, fake_entry("resnet18.tv_in1k", "test", file, prefix))
    place_in_cache(hub_dir, file)
    model = rl.create_model("resnet18", pretrained="test", num_classes=7, in_chans=1)
    assert model.fc.out_features == 7
    torch.testing.assert_close(model.conv1.weight, published.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, published.layer4[1].conv2.weight)
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == 7
    assert cfg["input_size"] == (1, 224, 224)
    assert cfg["mean"] == pytest.approx((sum((0.485, 0.456, 0.406)) / 3,))
    assert cfg["source"] == "torchvision"


@pytest.mark.parametrize(
    ("base", "model_name", "overrides"),
    [
        ("resnet18.mm_cifar10", "resnet18", {"stem": "cifar", "num_classes": 10}),
        ("resnet50d.mm_v1c_in1k", "resnet18d", {"shortcut": "B"}),
    ],
)
def test_mmpretrain_layout_and_model_arguments(
    monkeypatch: pytest.MonkeyPatch,
    hub_dir: Path,
    offline: list[str],
    tmp_path: Path,
    base: str,
    model_name: str,
    overrides: dict[str, Any],
) -> None:
    torch.manual_seed(2)
    published = rl.create_model(model_name, **overrides).eval()
    randomize_norms(published)
    state = rl.interop.convert_state_dict(
        published.state_dict(), source="resnetlib", target="mmpretrain"
    )
    payload = {"meta": {"epoch": 100}, "state_dict": state}
    file, prefix = publish(payload, tmp_path / "published", model_name)
    register(monkeypatch, fake_entry(base, "test", file, prefix, model=model_name))
    place_in_cache(hub_dir, file)
    model = rl.create_model(model_name, pretrained="test").eval()  # the entry's arguments
    size = model.pretrained_cfg["input_size"][-1]
    x = torch.randn(1, 3, min(size, 64), min(size, 64))
    torch.testing.assert_close(model(x), published(x))


def test_local_file_through_pretrained_cfg_overlay(
    hub_dir: Path, offline: list[str], akamaster_file: tuple[AkamasterResNet, Path, str]
) -> None:
    reference, file, _ = akamaster_file
    model = rl.create_model(
        "resnet20", pretrained=True, pretrained_cfg_overlay={"file": str(file), "crop_pct": 0.9}
    ).eval()
    assert offline == []
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), reference(x))
    assert model.pretrained_cfg["file"] == str(file)
    assert model.pretrained_cfg["crop_pct"] == 0.9
    with pytest.raises(ValueError, match="checkpoint_path"):
        rl.create_model("plain20", pretrained_cfg_overlay={"file": str(file)})
    with pytest.raises(ValueError, match="'nope'"):
        rl.create_model("resnet20", pretrained_cfg_overlay={"nope": 1})


def test_timm_arguments_apply_before_the_weights_load(
    offline: list[str], akamaster_file: tuple[AkamasterResNet, Path, str]
) -> None:
    reference, file, _ = akamaster_file
    model = rl.create_model(
        "resnet20",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(file)},
        global_pool="max",
        drop_rate=0.25,
    ).eval()
    assert (model.global_pool, model.drop_rate) == ("max", 0.25)
    torch.testing.assert_close(model.fc.weight, reference.linear.weight)  # kept, not reset
    x = torch.randn(2, 3, 32, 32)
    pooled = model.forward_features(x).amax(dim=(2, 3))
    torch.testing.assert_close(model(x), reference.linear(pooled))
    # a pool of twice the width cannot keep the pretrained classifier: refused, as timm does
    with pytest.raises(ValueError, match="gives the classifier 128 features"):
        rl.create_model(
            "resnet20",
            pretrained=True,
            pretrained_cfg_overlay={"file": str(file)},
            global_pool="catavgmax",
        )


def test_a_tagged_name_without_pretrained_downloads_nothing(offline: list[str]) -> None:
    model = rl.create_model("resnet20.akamaster_cifar10")
    assert offline == []
    assert model.pretrained_cfg["tag"] == "akamaster_cifar10"
    assert model.spec.shortcut == "A_both"
    with pytest.raises(KeyError, match="no pretrained weights for 'plain20'"):
        rl.create_model("plain20", pretrained=True)
    with pytest.raises(KeyError, match=r"resnet20\.nope"):
        rl.create_model("resnet20", pretrained="nope")
    with pytest.raises(ValueError, match="disagrees"):
        rl.create_model("resnet20.akamaster_cifar10", pretrained="other")


def fake_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file: Path | None
) -> list[tuple[str, str]]:
    """A stand-in huggingface_hub: nothing cached; downloads give ``file`` or fail."""
    calls: list[tuple[str, str]] = []
    hub = types.ModuleType("huggingface_hub")

    def hf_hub_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        calls.append((repo_id, filename))
        if file is None:
            raise OSError("offline")
        return str(file)

    hub.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    hub.constants = types.SimpleNamespace(HF_HUB_CACHE=str(tmp_path / "hf"))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    return calls


def test_hub_weights_load_from_safetensors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.manual_seed(3)
    published = rl.resnet18().eval()
    file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in published.state_dict().items()}, str(file))
    calls = fake_hub(monkeypatch, tmp_path, file)
    entry = w.get_weights("resnet18.a1_in1k")
    fake = dataclasses.replace(entry, tag="test", hf_hub_id="timm/test", sha256=sha256(file))
    register(monkeypatch, fake)
    model = rl.create_model("resnet18", pretrained="test").eval()
    assert calls == [("timm/test", "model.safetensors")]
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), published(x))
    assert model.pretrained_cfg["hf_hub_id"] == "timm/test"
    assert model.pretrained_cfg["interpolation"] == "bicubic"
    # The registered entry records the hub's SHA-256, which this file does not have.
    assert entry.sha256 is not None
    with pytest.raises(PretrainedError, match="checksum mismatch") as error:
        rl.create_model("resnet18", pretrained="a1_in1k")
    assert str(file) in str(error.value)
    assert "huggingface.co/timm/resnet18.a1_in1k" in str(error.value)


def test_hub_offline_and_missing_huggingface_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_hub(monkeypatch, tmp_path, None)
    with pytest.raises(PretrainedError, match=r"huggingface\.co/timm/resnet18\.a1_in1k") as error:
        rl.create_model("resnet18", pretrained=True)
    assert str(tmp_path / "hf") in str(error.value)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"resnetlib\[hub\]"):
        rl.create_model("resnet18", pretrained=True)


def test_an_unchanged_cached_file_is_hashed_once(
    monkeypatch: pytest.MonkeyPatch,
    hub_dir: Path,
    offline: list[str],
    akamaster_file: tuple[Any, Path, str],
) -> None:
    """A record of size and mtime skips re-hashing; a file written since is hashed again."""
    from resnetlib.models import pretrained

    _, file, prefix = akamaster_file
    register(monkeypatch, fake_entry("resnet20", "test", file, prefix))
    cached = place_in_cache(hub_dir, file)
    hashed: list[Path] = []
    real = pretrained._sha256

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(pretrained, "_sha256", counting)
    for _ in range(3):
        rl.create_model("resnet20", pretrained="test")
    assert hashed == [cached]
    assert len(list((hub_dir / "resnetlib-verified").iterdir())) == 1
    data = cached.read_bytes()
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, written anew
    stat = cached.stat()
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # coarse clocks
    with pytest.raises(PretrainedError, match="checksum mismatch"):
        rl.create_model("resnet20", pretrained="test")
    assert hashed == [cached, cached]
    cached.write_bytes(data)
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2))
    rl.create_model("resnet20", pretrained="test")
    assert len(hashed) == 3
