"""Sharing models as timm does: Hugging Face folders (save_pretrained, ``local-dir:``,
``hf-hub:`` through huggingface_hub's cache, offline), ``export --format hf``, and bare
``@register_model``.

The timm side: a folder in the format timm's ``save_for_hf`` writes (built here) loads with
timm's logits (tests/fixtures/timm_resnet.json); the live comparison runs where timm imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.core.data_config import set_data_config

from .reference_weights import FIXTURES, deterministic_fill_, fixed_input

safetensors_torch = pytest.importorskip("safetensors.torch")


def outputs(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        out: torch.Tensor = model.eval()(torch.randn(2, *shape))
    return out


def test_round_trip_of_a_resnetlib_only_model(tmp_path: Path) -> None:
    """A CIFAR net: files, config saying it needs resnetlib, same outputs and data config."""
    model = rl.resnet20(num_classes=3)
    set_data_config(model, {**model.pretrained_cfg, "label_names": ["a", "b", "c"]})
    rl.save_pretrained(model, tmp_path, metadata={"data": "CIFAR-10", "metrics": {"top1": 91.5}})
    assert sorted(os.listdir(tmp_path)) == [
        "README.md",
        "checksums.sha256",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "resnetlib/resnet20"
    assert config["library_name"] == "resnetlib"
    assert config["resnetlib"]["needs_resnetlib"] is True
    assert "timm.create_model refuses" in config["resnetlib"]["note"]
    assert config["pretrained_cfg"]["label_names"] == ["a", "b", "c"]
    assert config["num_features"] == 64
    card = (tmp_path / "README.md").read_text()
    assert "Parameters: 269,267" in card  # ResNet-20 with a 3-way head
    assert "Data: CIFAR-10" in card
    assert "top1: 91.5" in card
    loaded = rl.create_model(f"local-dir:{tmp_path}")
    assert loaded.spec == model.spec
    assert torch.equal(outputs(loaded, (3, 32, 32)), outputs(model, (3, 32, 32)))
    assert loaded.pretrained_cfg["label_names"] == ["a", "b", "c"]
    assert loaded.pretrained_cfg["mean"] == model.pretrained_cfg["mean"]
    assert loaded.pretrained_cfg["source"] == "local-dir"


def test_checksums_are_sha256sum_lines_of_each_file(tmp_path: Path) -> None:
    rl.save_pretrained(rl.resnet20(), tmp_path)
    lines = (tmp_path / "checksums.sha256").read_text().splitlines()
    names = {line.split("  ")[1]: line.split("  ")[0] for line in lines}
    assert set(names) == {"model.safetensors", "config.json", "README.md"}
    for name, digest in names.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest


def test_timm_architecture_gets_timms_name(tmp_path: Path) -> None:
    """resnet18 with one input channel: architecture resnet18, in_chans in model_args."""
    model = rl.resnet18(num_classes=4, in_channels=1)
    rl.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == config["pretrained_cfg"]["architecture"] == "resnet18"
    assert config["library_name"] == "timm"
    assert config["model_args"] == {"in_chans": 1}
    assert config["resnetlib"]["needs_resnetlib"] is False
    assert "library_name: timm" in (tmp_path / "README.md").read_text()
    loaded = rl.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert torch.equal(outputs(loaded, (1, 64, 64)), outputs(model, (1, 64, 64)))


@pytest.mark.parametrize("name", ["resnet50d", "resnext50_32x4d", "wide_resnet50_2"])
def test_timm_names_of_d_grouped_and_wide_nets(name: str, tmp_path: Path) -> None:
    with torch.device("meta"):
        spec = rl.create_model(name).spec
    from resnetlib.models.share import _name_of
    from resnetlib.models.weights import TIMM_DEFAULTS

    assert _name_of(spec, TIMM_DEFAULTS) == name
    assert _name_of(rl.model_spec("resnet50", stride_in_1x1=True), TIMM_DEFAULTS) is None


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("model.safetensors", "does not match its checksum"),
        ("config.json", "does not match its checksum"),
        ("checksums.sha256", "no checksums.sha256"),
    ],
)
def test_damaged_folder_is_refused(damage: str, match: str, tmp_path: Path) -> None:
    rl.save_pretrained(rl.resnet20(), tmp_path)
    path = tmp_path / damage
    if damage == "checksums.sha256":
        path.unlink()
        with pytest.raises(rl.CheckpointError, match=match):
            rl.create_model(f"local-dir:{tmp_path}")
        return
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(rl.CheckpointError, match=match):
        rl.create_model(f"local-dir:{tmp_path}")


@pytest.mark.parametrize(
    ("name", "target"), [("model.safetensors", "nowhere"), ("config.json", "config.json")]
)
def test_a_link_that_leads_to_no_file_is_named_a_link_not_missing(
    name: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dangling link, or one to itself, is refused by the gate as a link (one line), not
    reported as a folder without the file."""
    rl.save_pretrained(rl.resnet20(), tmp_path)
    (tmp_path / name).unlink()
    (tmp_path / name).symlink_to(target)
    message = f"{tmp_path / name}: a symbolic link to {target}, which leads to no file"
    with pytest.raises(rl.CheckpointError, match=re.escape(message)):
        rl.create_model(f"local-dir:{tmp_path}")
    assert main(["summary", f"local-dir:{tmp_path}"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert message in error
    assert "not a model folder" not in error


def test_oversized_weights_are_refused_before_parsing(tmp_path: Path) -> None:
    rl.save_pretrained(rl.resnet20(), tmp_path)
    with open(tmp_path / "model.safetensors", "ab") as file:
        file.write(b"\0" * (20 << 20))
    with pytest.raises(rl.CheckpointError, match="larger than"):
        rl.create_model(f"local-dir:{tmp_path}")


def test_folder_overrides(tmp_path: Path) -> None:
    rl.save_pretrained(rl.resnet20(), tmp_path)
    name = f"local-dir:{tmp_path}"
    assert rl.create_model(name, num_classes=7).fc.out_features == 7
    with pytest.raises(ValueError, match="shortcut"):
        rl.create_model(name, shortcut="B")
    with pytest.raises(ValueError, match="checkpoint_path"):
        rl.create_model(name, checkpoint_path="x.pt")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        rl.create_model(f"local-dir:{tmp_path / 'missing'}")


def timm_folder(folder: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """What timm's save_for_hf(model, folder, safe_serialization=True) writes."""
    folder.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def timm_config(architecture: str, **extra: Any) -> dict[str, Any]:
    """config.json as timm 1.0's save_config_for_hf writes it for a ResNet."""
    return {
        "architecture": architecture,
        "num_classes": 1000,
        "num_features": 512,
        "global_pool": "avg",
        **extra,
        "pretrained_cfg": {
            "tag": "a1_in1k",
            "custom_load": False,
            "input_size": [3, 224, 224],
            "test_input_size": [3, 288, 288],
            "fixed_input_size": False,
            "interpolation": "bicubic",
            "crop_pct": 0.95,
            "test_crop_pct": 1.0,
            "crop_mode": "center",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "num_classes": 1000,
            "pool_size": [7, 7],
            "first_conv": "conv1",
            "classifier": "fc",
            "origin_url": "https://github.com/huggingface/pytorch-image-models",
            "paper_ids": "arXiv:2110.00476",
        },
    }


def test_a_folder_takes_in_chans_with_an_adapted_stem_as_a_checkpoint_does(
    tmp_path: Path,
) -> None:
    """in_chans adapts a folder's stem (and num_classes its head) as checkpoint_path= does."""
    source = rl.resnet20(num_classes=3)
    rl.save_pretrained(source, tmp_path / "folder")
    rl.save(source, tmp_path / "run.pt")
    name = f"local-dir:{tmp_path / 'folder'}"
    model = rl.create_model(name, in_chans=1)
    expected = rl.create_model("resnet20", checkpoint_path=tmp_path / "run.pt", in_chans=1)
    assert model.spec.in_channels == 1
    assert model.pretrained_cfg["input_size"] == (1, 32, 32)
    assert model.pretrained_cfg["source"] == "local-dir"
    assert torch.equal(outputs(model, (1, 32, 32)), outputs(expected, (1, 32, 32)))
    both = rl.create_model(name, in_chans=1, num_classes=7)
    assert (both.spec.in_channels, both.num_classes) == (1, 7)
    assert torch.equal(both.conv1.weight, model.conv1.weight)
    with pytest.raises(ValueError, match="in_channels"):
        rl.create_model(name, in_chans=0)
    # a float16 folder stays float16 with a new head, as it does without one
    rl.save_pretrained(rl.resnet20().half(), tmp_path / "half")
    half = rl.create_model(f"local-dir:{tmp_path / 'half'}", num_classes=5)
    assert {p.dtype for p in half.parameters()} == {torch.float16}


def test_folder_written_as_timm_does_gives_timms_logits(tmp_path: Path) -> None:
    """resnet18 with the fixture's weights, saved in save_for_hf's format: timm's logits."""
    reference = json.loads((FIXTURES / "timm_resnet.json").read_text())["models"]["resnet18"]
    source = rl.resnet18()
    deterministic_fill_(source)
    timm_folder(
        tmp_path,
        rl.interop.convert_state_dict(source.state_dict(), target="timm"),
        timm_config("resnet18"),
    )
    model = rl.create_model(f"local-dir:{tmp_path}")
    assert model.pretrained_cfg["interpolation"] == "bicubic"
    assert model.pretrained_cfg["crop_pct"] == 0.95
    with torch.no_grad():
        out = model.double().eval()(fixed_input())
    expected = torch.tensor(reference["logits"], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


def test_config_timm_wrote_loads(tmp_path: Path) -> None:
    """timm's own config.json (scripts/make_timm_hf_fixture.py, where timm is installed)."""
    fixture = FIXTURES / "timm_save_for_hf_resnet18.json"
    if not fixture.is_file():
        pytest.skip("run scripts/make_timm_hf_fixture.py where timm is installed")
    config = json.loads(fixture.read_text())["config"]
    source = rl.resnet18()
    timm_folder(tmp_path, source.state_dict(), config)
    model = rl.create_model(f"local-dir:{tmp_path}")
    assert model.pretrained_cfg["mean"] == tuple(config["pretrained_cfg"]["mean"])
    assert torch.equal(outputs(model, (3, 64, 64)), outputs(source, (3, 64, 64)))


def test_timm_folder_with_labels_and_model_args(tmp_path: Path) -> None:
    source = rl.resnet18d(num_classes=2, in_channels=1)
    config = timm_config(
        "resnet18d.ra2_in1k", label_names=["cat", "dog"], model_args={"in_chans": 1}
    )
    config["num_classes"] = 2
    timm_folder(tmp_path, source.state_dict(), config)
    model = rl.create_model(f"local-dir:{tmp_path}")
    assert model.pretrained_cfg["label_names"] == ["cat", "dog"]
    assert model.pretrained_cfg["input_size"] == (1, 224, 224)
    assert torch.equal(outputs(model, (1, 64, 64)), outputs(source, (1, 64, 64)))
    config["model_args"] = {"act_layer": "os.system"}
    timm_folder(tmp_path, source.state_dict(), config)
    with pytest.raises(rl.CheckpointError, match="model_args"):
        rl.create_model(f"local-dir:{tmp_path}")
    config["architecture"] = "vit_base_patch16_224"
    timm_folder(tmp_path, source.state_dict(), config)
    with pytest.raises(rl.CheckpointError, match="not one resnetlib builds"):
        rl.create_model(f"local-dir:{tmp_path}")


def test_a_timm_folder_without_a_data_config_gets_its_architectures_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config.json with no mean, std or crop (timm fills them from the architecture's
    defaults): the folder's keys over create_model's defaults, so predict runs."""
    from PIL import Image

    source = rl.resnet18(num_classes=5)
    timm_folder(
        tmp_path / "bare", source.state_dict(), {"architecture": "resnet18", "num_classes": 5}
    )
    config = timm_config("resnet18", num_classes=5)
    config["pretrained_cfg"] = {"mean": [0.5, 0.5, 0.5], "input_size": [3, 160, 160]}
    timm_folder(tmp_path / "some", source.state_dict(), config)
    defaults = rl.resnet18(num_classes=5).pretrained_cfg
    bare = rl.create_model(f"local-dir:{tmp_path / 'bare'}").pretrained_cfg
    assert bare == {**defaults, "source": "local-dir"}
    some = rl.create_model(f"local-dir:{tmp_path / 'some'}").pretrained_cfg
    assert (some["mean"], some["std"]) == ((0.5, 0.5, 0.5), defaults["std"])
    assert (some["input_size"], some["crop_pct"]) == ((3, 160, 160), defaults["crop_pct"])
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    assert main(["predict", f"local-dir:{tmp_path / 'bare'}", str(tmp_path / "a.png")]) == 0
    assert "a.png: " in capsys.readouterr().out


def test_a_timm_folder_without_batch_counters_loads_as_a_state_dict_file_does(
    tmp_path: Path,
) -> None:
    """torchvision-derived weights have no num_batches_tracked: a folder of them loads (the
    model keeps its own counters), as create_model(name, checkpoint_path=FILE) loads them."""
    source = rl.resnet18(num_classes=5)
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    timm_folder(tmp_path, state, timm_config("resnet18", num_classes=5))
    model = rl.create_model(f"local-dir:{tmp_path}")
    from_file = rl.create_model("resnet18", checkpoint_path=tmp_path / "model.safetensors")
    assert torch.equal(outputs(model, (3, 64, 64)), outputs(source, (3, 64, 64)))
    assert torch.equal(outputs(from_file, (3, 64, 64)), outputs(source, (3, 64, 64)))
    assert model.state_dict()["bn1.num_batches_tracked"].dtype == torch.int64
    del state["bn1.running_mean"]  # a weight missing is still refused
    timm_folder(tmp_path, state, timm_config("resnet18", num_classes=5))
    with pytest.raises(rl.CheckpointError, match=r"missing: bn1\.running_mean$"):
        rl.create_model(f"local-dir:{tmp_path}")


def fill_hub_cache(cache: Path, repo: str, folder: Path) -> str:
    """Lay ``folder``'s files out as huggingface_hub's download does: blobs named by their
    hash, snapshots/<commit>/<file> symbolic links to them, refs/main naming the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return commit


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return cache


def test_hf_hub_loads_from_the_cache_offline(
    tmp_path: Path, offline_hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = rl.resnet20(num_classes=5)
    rl.save_pretrained(model, tmp_path / "folder", metadata={"data": "CIFAR-10"})
    fill_hub_cache(offline_hub, "someone/resnet20-demo", tmp_path / "folder")
    loaded = rl.create_model("hf-hub:someone/resnet20-demo")
    assert torch.equal(outputs(loaded, (3, 32, 32)), outputs(model, (3, 32, 32)))
    assert loaded.pretrained_cfg["hf_hub_id"] == "someone/resnet20-demo"
    with pytest.raises(rl.models.PretrainedError, match=r"could not download config\.json"):
        rl.create_model("hf-hub:someone/not-cached")
    with pytest.raises(ValueError, match="ORG/NAME"):
        rl.create_model("hf-hub:../etc")
    # the command line reads hf-hub:ORG/NAME as create_model does (not as a file path)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    assert main(["predict", "hf-hub:someone/resnet20-demo", str(tmp_path / "a.png")]) == 0
    assert main(["predict", "hf-hub:someone/not-cached", str(tmp_path / "a.png")]) == 2
    assert "could not download config.json" in capsys.readouterr().err


def test_hf_hub_without_huggingface_hub_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"resnetlib\[hub\]"):
        rl.create_model("hf-hub:someone/model")


def test_export_format_hf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "run.pt"
    model = rl.resnet20()
    rl.save(model, checkpoint, metadata={"epoch": 3, "top1": 90.1})
    out = tmp_path / "folder"
    assert main(["export", str(checkpoint), "--format", "hf", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert "top1: 90.1" in (out / "README.md").read_text()
    loaded = rl.create_model(f"local-dir:{out}")
    assert torch.equal(outputs(loaded, (3, 32, 32)), outputs(model, (3, 32, 32)))
    code = main(["export", "resnet20", "--format", "hf", "--fuse", "--out", str(out)])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert "--fuse" in error
    assert len(error.splitlines()) == 1
    with pytest.raises(SystemExit):  # the help names the format, as it names onnx and pt2
        main(["export", "--help"])
    assert "hf: a folder of weights" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "given",
    [
        ["--checkpoint", "{checkpoint}"],
        ["resnet20", "--checkpoint", "{checkpoint}"],
        ["local-dir:{folder}"],
    ],
    ids=["checkpoint-alone", "model-and-checkpoint", "local-dir"],
)
def test_export_format_hf_keeps_the_metadata_of_the_weights_wherever_they_came_from(
    given: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--checkpoint FILE alone (no MODEL), MODEL --checkpoint FILE and a shared folder: the
    folder written has the metadata of the checkpoint or folder the weights were read from."""
    checkpoint, folder, out = tmp_path / "run.pt", tmp_path / "shared", tmp_path / "out"
    rl.save(rl.resnet20(), checkpoint, metadata={"data": "CIFAR-10", "top1": 90.1})
    rl.save_pretrained(rl.load(checkpoint), folder, metadata={"data": "CIFAR-10", "top1": 90.1})
    args = [arg.format(checkpoint=checkpoint, folder=folder) for arg in given]
    assert main(["export", *args, "--format", "hf", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert "- Data: CIFAR-10" in card
    assert "- top1: 90.1" in card
    config = json.loads((out / "config.json").read_text())
    assert config["resnetlib"]["metadata"] == {"data": "CIFAR-10", "top1": 90.1}
    state = rl.create_model("resnet20", checkpoint_path=checkpoint).state_dict()
    loaded = rl.create_model(f"local-dir:{out}").state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_save_pretrained_writes_only_into_a_new_empty_or_own_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder with a user's README.md and config.json (or any other file) is refused, one
    line naming it and the files, nothing written; a file path gets a clear message; an
    earlier save_pretrained output is replaced. The CLI goes through the same check."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    (project / "config.json").write_text('{"a": 1}\n')
    message = r"project: holds files save_pretrained did not write \(README.md, config.json\)"
    with pytest.raises(FileExistsError, match=message):
        rl.save_pretrained(rl.resnet20(), project)
    assert sorted(os.listdir(project)) == ["README.md", "config.json"]
    assert (project / "config.json").read_text() == '{"a": 1}\n'
    checkpoint = tmp_path / "run.pt"
    rl.save(rl.resnet20(), checkpoint)
    code = main(["export", str(checkpoint), "--format", "hf", "--out", str(project)])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert len(error.splitlines()) == 1
    assert "holds files save_pretrained did not write (README.md, config.json)" in error
    assert (project / "config.json").read_text() == '{"a": 1}\n'
    with pytest.raises(NotADirectoryError, match=r"run.pt: is a file, not a folder"):
        rl.save_pretrained(rl.resnet20(), checkpoint)
    folder = tmp_path / "folder"
    rl.save_pretrained(rl.resnet20(), folder)
    rl.save_pretrained(rl.resnet20(num_classes=3), folder)  # its own earlier output
    assert rl.create_model(f"local-dir:{folder}").num_classes == 3
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError, match=r"did not write \(notes.txt\)"):
        rl.save_pretrained(rl.resnet20(), folder)
    assert rl.create_model(f"local-dir:{folder}").num_classes == 3


def test_register_model_bare_uses_the_function_name() -> None:
    @rl.register_model
    def my_bare_resnet(**overrides: Any) -> rl.ResNet:
        return rl.cifar_resnet(8, **overrides)

    try:
        assert rl.models.MODELS.get("my_bare_resnet") is my_bare_resnet
        assert rl.create_model("my_bare_resnet", num_classes=2).fc.out_features == 2
    finally:
        rl.models.MODELS.unregister("my_bare_resnet")

    @rl.register_model("named_resnet")
    def other(**overrides: Any) -> rl.ResNet:
        return rl.cifar_resnet(8, **overrides)

    try:
        assert rl.models.MODELS.get("named_resnet") is other
    finally:
        rl.models.MODELS.unregister("named_resnet")
    with pytest.raises(ValueError, match="no name of its own"):
        rl.register_model(lambda **o: rl.resnet20(**o))


def test_other_registries_take_bare_decorators_too() -> None:
    @rl.register_block
    class MyBareBlock(rl.BasicBlock):
        pass

    try:
        assert rl.nn.BLOCKS.get("MyBareBlock") is MyBareBlock
    finally:
        rl.nn.BLOCKS.unregister("MyBareBlock")
    with pytest.raises(TypeError, match="ResidualBlock"):
        rl.register_block(dict)


# -- live timm (only where timm is installed) -----------------------------------------------


def test_timm_loads_resnetlibs_folder(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    model = rl.resnet50d(num_classes=10)
    rl.save_pretrained(model, tmp_path)
    theirs = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    torch.testing.assert_close(outputs(theirs, (3, 64, 64)), outputs(model, (3, 64, 64)))


def test_resnetlib_loads_timms_save_for_hf(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    theirs = timm.create_model("resnext50_32x4d", num_classes=10)
    timm.models.save_for_hf(theirs, tmp_path, safe_serialization=True)
    ours = rl.create_model(f"local-dir:{tmp_path}")
    torch.testing.assert_close(outputs(ours, (3, 64, 64)), outputs(theirs, (3, 64, 64)))


def test_timm_refuses_resnetlib_only_models(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    rl.save_pretrained(rl.resnet20(), tmp_path)
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True)


def test_the_cli_reads_a_shared_folder_by_any_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``local-dir:`` with a slash in its path (and any ``hf-hub:ORG/NAME``) was taken for a
    checkpoint file ("no such checkpoint file"), and predict said the weights were random."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rl.save_pretrained(rl.resnet20(), tmp_path / "shared" / "r20")
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    outputs = []
    for name in ("local-dir:shared/r20", f"local-dir:{tmp_path / 'shared' / 'r20'}"):
        assert main(["predict", name, "a.png"]) == 0
        captured = capsys.readouterr()
        assert captured.err == ""  # no "random weights" note: the folder holds weights
        outputs.append(captured.out)
    assert outputs[0] == outputs[1]
