"""Self-describing checkpoints: exact round trips, and clear errors for anything else."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.interop import checkpoint
from resnetlib.interop.checkpoint import FORMAT_VERSION, _digest

from .reference_weights import deterministic_fill_


def filled(model: rl.ResNet) -> rl.ResNet:
    deterministic_fill_(model)
    return model.eval()


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model.eval()(x)
    return out


def assert_identical(a: rl.ResNet, b: rl.ResNet) -> None:
    assert a.spec == b.spec
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture
def saved(tmp_path: Path) -> tuple[rl.ResNet, Path]:
    model = filled(rl.resnet20())
    path = tmp_path / "resnet20.pt"
    rl.save(model, path, metadata={"epoch": 12, "top1": 91.25})
    return model, path


@pytest.mark.parametrize(
    "make",
    [
        lambda: rl.resnet20().double(),
        lambda: rl.resnet(layers=(1, 1), block="bottleneck", shortcut="C", in_channels=1),
        lambda: rl.cifar_resnet(20, shortcut="A_both", num_classes=100).half(),
    ],
    ids=["resnet20-float64", "bottleneck-C-1ch", "A_both-float16"],
)
def test_round_trip_is_bit_exact(make: object, tmp_path: Path) -> None:
    assert callable(make)
    model: rl.ResNet = filled(make())
    path = tmp_path / "model.pt"
    rl.save(model, path)
    loaded = rl.load(path)
    assert isinstance(loaded, rl.ResNet)
    assert_identical(model, loaded)
    if next(model.parameters()).dtype != torch.float16:  # no half convolutions on CPU
        dtype = next(model.parameters()).dtype
        x = torch.randn(2, model.spec.in_channels, 32, 32, dtype=dtype)
        assert torch.equal(outputs(model, x), outputs(loaded, x))
    assert all(p.requires_grad for p in loaded.parameters())


def test_round_trip_on_device(device: torch.device, tmp_path: Path) -> None:
    model = filled(rl.resnet20()).to(device)
    path = tmp_path / "model.pt"
    rl.save(model, path)
    loaded = rl.load(path, map_location=device)
    assert next(loaded.parameters()).device.type == device.type
    x = torch.randn(2, 3, 32, 32, device=device)
    assert torch.equal(outputs(model, x), outputs(loaded, x))


def test_read_checkpoint_gives_spec_and_metadata(saved: tuple[rl.ResNet, Path]) -> None:
    model, path = saved
    checkpoint = rl.interop.read_checkpoint(path)
    assert checkpoint.spec == model.spec
    assert checkpoint.metadata == {"epoch": 12, "top1": 91.25}
    assert checkpoint.format_version == FORMAT_VERSION == 2
    assert checkpoint.pretrained_cfg == model.pretrained_cfg
    assert list(checkpoint.state_dict) == list(model.state_dict())


def test_create_model_reads_a_checkpoint(saved: tuple[rl.ResNet, Path]) -> None:
    model, path = saved
    assert_identical(rl.create_model("resnet20", checkpoint_path=path), model)
    fine_tune = rl.create_model("resnet20", checkpoint_path=path, num_classes=3)
    assert fine_tune.fc.out_features == 3
    assert torch.equal(fine_tune.layer3[2].conv2.weight, model.layer3[2].conv2.weight)
    with pytest.raises(ValueError, match="is a resnetlib checkpoint; checkpoint_source"):
        rl.create_model("resnet20", checkpoint_path=path, checkpoint_source="akamaster")


def test_create_model_keeps_the_checkpoints_head_and_refuses_another_network(
    tmp_path: Path,
) -> None:
    model = filled(rl.resnet20(num_classes=100, act="silu", output_stride=2))
    path = tmp_path / "cifar100.pt"
    rl.save(model, path)
    # The file says it has 100 classes: no override is needed to get its head back.
    again = rl.create_model("resnet20", checkpoint_path=path, act="silu", output_stride=2)
    assert_identical(again, model)
    # The file says what it computes: options it does not repeat come from it.
    assert_identical(rl.create_model("resnet20", checkpoint_path=path), model)
    # An override that disagrees with the file is refused, naming what differs.
    with pytest.raises(ValueError, match=r"another network.*act: file 'silu', model 'gelu'"):
        rl.create_model("resnet20", checkpoint_path=path, act="gelu")
    with pytest.raises(ValueError, match=r"another network.*stages: file"):
        rl.create_model("resnet32", checkpoint_path=path, act="silu")


# --- files that are not intact checkpoints -------------------------------------------------


def test_truncated_file(saved: tuple[rl.ResNet, Path]) -> None:
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(rl.CheckpointError, match=rf"^{path}: not a readable torch file"):
        rl.load(path)


# steps.csv begins with "i", a pickle opcode: it was called a file of Python objects
@pytest.mark.parametrize(
    "content", [b"epoch,iteration\n1,2\n", b"hello\n", b"iteration,lr\n1,0.1\n"]
)
def test_a_file_of_no_weights_format_is_named_so(tmp_path: Path, content: bytes) -> None:
    """A CSV or text file was "not a readable torch file: IndexError: pop from empty list":
    the unpickler's own error, not what the file is."""
    path = tmp_path / "metrics.csv"
    path.write_bytes(content)
    with pytest.raises(rl.CheckpointError) as caught:
        rl.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a checkpoint, state dict or ONNX file")
    assert "Error" not in message
    assert "final.pt" in message


def test_flipped_bytes_in_the_weights(saved: tuple[rl.ResNet, Path]) -> None:
    """A flip inside a tensor's bytes loads fine in torch; the checksum catches it."""
    model, path = saved
    data = bytearray(path.read_bytes())
    weight = model.fc.weight.detach().contiguous()
    raw = bytes(weight.view(torch.uint8).flatten().tolist())
    offset = data.find(raw)
    assert offset > 0
    data[offset + len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(rl.CheckpointError, match=rf"^{path}: checksum mismatch"):
        rl.load(path)


def test_flipped_bytes_anywhere(saved: tuple[rl.ResNet, Path]) -> None:
    """A flip at any of many places raises CheckpointError or changes nothing that is read."""
    model, path = saved
    original = path.read_bytes()
    positions = range(7, len(original), len(original) // 40)
    messages = []
    for position in positions:
        data = bytearray(original)
        data[position] ^= 0xFF
        path.write_bytes(bytes(data))
        try:
            loaded = rl.load(path)
        except rl.CheckpointError as error:
            messages.append(str(error))
        else:  # the flip hit padding or an unread header field
            assert_identical(model, loaded)
    assert all(message.startswith(f"{path}: ") for message in messages)
    assert len(messages) >= len(positions) // 2


def test_plain_state_dict_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(rl.resnet20().state_dict(), path)
    with pytest.raises(rl.CheckpointError, match=r"a plain state dict \(116 tensors\)") as info:
        rl.load(path)
    assert str(path) in str(info.value)
    assert "create_model(name, checkpoint_path=...)" in str(info.value)
    # the advice works as written for a file saved on a GPU too, and names the CLI's way
    assert 'torch.load(path, map_location="cpu", weights_only=True)' in str(info.value)
    assert "name the model and pass --checkpoint FILE" in str(info.value)


def test_a_plain_state_dict_keeps_its_head(tmp_path: Path) -> None:
    """A state dict with another head width loads with that head, as a checkpoint does; a
    ``num_classes`` asked for still gets a new one."""
    torch.manual_seed(0)
    trained = rl.resnet20(num_classes=3).eval()
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    loaded = rl.create_model("resnet20", checkpoint_path=path).eval()
    assert loaded.num_classes == 3
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), trained(x))
    assert rl.create_model("resnet20", checkpoint_path=path, num_classes=5).num_classes == 5


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_weights_of_another_dtype_are_refused_naming_the_file_and_key(
    dtype: torch.dtype, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An integer or bool ``fc.weight`` is refused in one line naming the file and the key,
    by rl.load, checkpoint_path= and a folder alike (not torch's error in load_state_dict);
    a user's own integer buffer under another name, and a mix of float dtypes, load as saved."""
    from resnetlib.cli import main

    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = rl.resnet20()
    model.fc.weight = nn.Parameter(model.fc.weight.detach().to(dtype), requires_grad=False)
    state = model.state_dict()
    saved, plain, folder = tmp_path / "run.pt", tmp_path / "plain.pt", tmp_path / "folder"
    rl.save(model, saved)
    torch.save(state, plain)
    rl.save_pretrained(rl.resnet20(), folder)
    weights = safetensors_torch.save(dict(state))
    (folder / "model.safetensors").write_bytes(weights)
    sums = (folder / "checksums.sha256").read_text().splitlines()
    sums[0] = f"{hashlib.sha256(weights).hexdigest()}  model.safetensors"
    (folder / "checksums.sha256").write_text("\n".join(sums) + "\n")
    kind = f"holds {dtype} values"
    for where, load in [
        (saved, lambda: rl.load(saved)),
        (plain, lambda: rl.create_model("resnet20", checkpoint_path=plain)),
        (folder / "model.safetensors", lambda: rl.create_model(f"local-dir:{folder}")),
    ]:
        with pytest.raises(rl.CheckpointError) as info:
            load()
        assert f"{where}: state_dict entry 'fc.weight' {kind}" in str(info.value)
    assert main(["summary", f"local-dir:{folder}"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "'fc.weight'" in error
    half = tmp_path / "half.pt"  # half precision with float32 norms round-trips as saved
    mixed = rl.resnet20().half()
    for module in mixed.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.float()
    rl.save(mixed, half)
    loaded = rl.load(half).state_dict()
    assert loaded["fc.weight"].dtype == torch.float16
    assert loaded["bn1.weight"].dtype == torch.float32
    assert loaded["bn1.num_batches_tracked"].dtype == torch.int64
    own = {"layer1.0.mask": torch.ones(3, dtype=torch.bool), "fc.weight": torch.zeros(2)}
    checkpoint.check_tensors(tmp_path / "own.pt", own)  # a user's buffer under its own name passes


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(4096)))
    with pytest.raises(rl.CheckpointError, match=rf"^{path}: "):
        rl.load(path)
    with pytest.raises(rl.CheckpointError, match=rf"^{path}: "):
        rl.create_model("resnet20", checkpoint_path=path)


def test_a_safetensors_header_length_that_looks_like_onnx_is_still_safetensors(
    tmp_path: Path,
) -> None:
    """The 8-byte length 0x0A0508 begins 08 05 0A, as an ONNX model does: the file is read
    as the safetensors it is (here its empty weights), not named an ONNX model."""
    length = 0x0A0508
    header = json.dumps({"__metadata__": {"pad": "x" * (length - 40)}}).encode()
    header += b" " * (length - len(header))
    path = tmp_path / "weights.safetensors"
    path.write_bytes(struct.pack("<Q", length) + header)
    assert checkpoint._read(path) == {}


@pytest.mark.parametrize("content", [b"\x08", b"\x08\x05", b"\x08\x80\x0a"])
def test_a_few_bytes_that_begin_like_onnx_are_a_checkpoint_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "short.pt"
    path.write_bytes(content)
    with pytest.raises(rl.CheckpointError, match=r"short\.pt"):
        rl.load(path)


def test_other_kinds_of_file_are_named_by_their_first_bytes(tmp_path: Path) -> None:
    """A .pt2 program, an ONNX model (under any name), an image or JSON text where a
    checkpoint belongs: "X is a <kind>, not a resnetlib checkpoint; <what to do>", not
    torch's "corrupted" advice or the weights-only refusal meant for code-carrying pickles."""
    from PIL import Image

    from resnetlib.deploy.export import export_pt2

    program = tmp_path / "model.pt2"
    export_pt2(rl.cifar_resnet(8, widths=(4, 8, 8)), program, (3, 8, 8))
    png, jpeg = tmp_path / "image.png", tmp_path / "photo.pt"
    Image.new("RGB", (8, 8)).save(png)
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    text = tmp_path / "config.pt"
    text.write_text('{"architecture": "resnet20"}\n')
    cases = [
        (program, r"a torch.export program \(.pt2\).*torch.export.load\(path\).module\(\)"),
        (png, r"a PNG image, not a resnetlib checkpoint; an image is not a model: give a"),
        (jpeg, r"a JPEG image, not a resnetlib checkpoint"),
        (text, r"JSON text, not a resnetlib checkpoint; .*local-dir:FOLDER"),
    ]
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph([], "g", [], [])
    renamed = tmp_path / "renamed.pt"  # an ONNX model under a checkpoint's name
    renamed.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    advice = r"given as the model \(resnetlib predict FILE.onnx IMAGE..., not --checkpoint\)"
    cases.append((renamed, rf"an ONNX model, not a resnetlib checkpoint; .*{advice}"))
    for path, message in cases:
        with pytest.raises(rl.CheckpointError, match=rf"^{path} is {message}") as info:
            rl.load(path)
        assert "\n" not in str(info.value)
        assert "refused" not in str(info.value)
        assert "corrupted" not in str(info.value)


class Payload:
    """Unpickling this would create a file: proof that code from the file ran."""

    marker: ClassVar[str] = ""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_pickle_with_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    Payload.marker = str(marker)
    plain_pickle = tmp_path / "object.pt"
    with plain_pickle.open("wb") as file:
        pickle.dump({"format": "resnetlib.checkpoint", "evil": Payload()}, file, protocol=2)
    pickled_module = tmp_path / "module.pt"
    torch.save(rl.resnet20(), pickled_module)  # a whole module, classes and all
    assert not marker.exists()
    for path in (plain_pickle, pickled_module):
        with pytest.raises(rl.CheckpointError, match=rf"^{path}: refused: .*weights_only=True"):
            rl.load(path)
        with pytest.raises(rl.CheckpointError, match="refused"):
            rl.create_model("resnet20", checkpoint_path=path)
        assert not marker.exists()


def test_unknown_format_version(saved: tuple[rl.ResNet, Path]) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 3
    torch.save(payload, path)
    with pytest.raises(
        rl.CheckpointError,
        match=r"format_version 3 is not supported; this resnetlib reads versions 1 and 2",
    ):
        rl.load(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_the_data_config_travels_with_the_weights(tmp_path: Path, suffix: str) -> None:
    """A publisher's normalization (here ImageNet's on a CIFAR net, as akamaster's) survives
    save/load in both formats, tuples and all."""
    model = rl.resnet20()
    model.pretrained_cfg.update(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    model.pretrained_cfg["source"] = "akamaster"
    path = tmp_path / f"m{suffix}"
    rl.save(model, path)
    loaded = rl.load(path)
    assert loaded.pretrained_cfg == model.pretrained_cfg
    assert loaded.pretrained_cfg != rl.resnet20().pretrained_cfg
    assert isinstance(loaded.pretrained_cfg["input_size"], tuple)
    # Starting from the file with a new head keeps the normalization, with the new head.
    tuned = rl.create_model("resnet20", checkpoint_path=path, num_classes=5)
    assert tuned.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)
    assert tuned.pretrained_cfg["num_classes"] == 5


def test_the_data_config_is_covered_by_the_checksum(saved: tuple[rl.ResNet, Path]) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    edited = payload["data_config"].replace('"crop_pct": 1.0', '"crop_pct": 0.9')
    assert edited != payload["data_config"]
    payload["data_config"] = edited
    torch.save(payload, path)
    with pytest.raises(rl.CheckpointError, match="checksum mismatch"):
        rl.load(path)


def test_version_1_files_still_load(saved: tuple[rl.ResNet, Path]) -> None:
    """A file written before the data config was stored: same weights, default config."""
    model, path = saved
    payload = torch.load(path, weights_only=True)
    del payload["data_config"]
    payload["format_version"] = 1
    payload["sha256"] = _digest(payload["spec"], payload["metadata"], payload["state_dict"])
    torch.save(payload, path)
    checkpoint = rl.interop.read_checkpoint(path)
    assert checkpoint.format_version == 1
    assert checkpoint.pretrained_cfg is None
    loaded = rl.load(path)
    assert_identical(loaded, model)
    assert loaded.pretrained_cfg == rl.build(model.spec).pretrained_cfg


def test_a_checkpoint_of_an_adapted_shortcut_loads_by_its_name(tmp_path: Path) -> None:
    """A model saved with akamaster's shortcut (``A_both``) is still a resnet20: the file's
    spec decides the shortcut, the name the stages."""
    model = rl.resnet20(shortcut="A_both")
    path = tmp_path / "tuned.pt"
    rl.save(model, path)
    again = rl.create_model("resnet20", checkpoint_path=path)
    assert again.spec == model.spec
    with pytest.raises(rl.CheckpointError, match=r"another network .*stages"):
        rl.create_model("resnet32", checkpoint_path=path)
    with pytest.raises(rl.CheckpointError, match=r"another .*residual: file True"):
        rl.create_model("plain20", checkpoint_path=path)


def test_edited_spec_is_caught(saved: tuple[rl.ResNet, Path]) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["spec"] = payload["spec"].replace('"num_classes": 10', '"num_classes": 11')
    torch.save(payload, path)
    with pytest.raises(rl.CheckpointError, match="checksum mismatch"):
        rl.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        rl.load(tmp_path / "nowhere.pt")


def test_unregistered_block_names_the_known_ones(tmp_path: Path) -> None:
    class TaggedBlock(rl.BasicBlock):
        pass

    rl.register_block("test_checkpoint_block", TaggedBlock)
    try:
        model = filled(rl.cifar_resnet(20, block="test_checkpoint_block"))
        path = tmp_path / "custom.pt"
        rl.save(model, path)
    finally:
        rl.nn.BLOCKS.unregister("test_checkpoint_block")
    with pytest.raises(KeyError) as info:
        rl.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "unknown block 'test_checkpoint_block'" in message
    assert "known: basic, bottleneck" in message
    rl.register_block("test_checkpoint_block", TaggedBlock)
    try:
        assert_identical(rl.load(path), model)
    finally:
        rl.nn.BLOCKS.unregister("test_checkpoint_block")


def test_save_takes_what_computes_as_the_spec_does(tmp_path: Path) -> None:
    """SyncBatchNorm (the multi-process recipe) and activations not in place compute what
    the spec's layers do in evaluation: saved, they load as the spec's model."""
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(rl.resnet20(widths=(4, 8, 16))).eval()
    for module in synced.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    rl.save(synced, tmp_path / "synced.pt")
    loaded = rl.load(tmp_path / "synced.pt").eval()
    assert type(loaded.bn1) is nn.BatchNorm2d
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(loaded(x), synced(x), rtol=0, atol=0)


def test_save_refuses_what_load_could_not_rebuild(tmp_path: Path) -> None:
    model = rl.resnet20()
    model.fc = nn.Linear(64, 3, bias=False)  # no longer what model.spec says
    with pytest.raises(ValueError, match=r"no longer matches its spec.*fc\.bias"):
        rl.save(model, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"takes a resnetlib ResNet; got Sequential.*float ResNet"):
        rl.save(nn.Sequential(rl.resnet20()), tmp_path / "x.pt")  # type: ignore[arg-type]
    wrapped = torch.compile(rl.resnet20())
    with pytest.raises(TypeError, match=r"got OptimizedModule .*compiled one model\._orig_mod"):
        rl.save(wrapped, tmp_path / "x.pt")  # type: ignore[arg-type]
    # layers without weights, or with other settings, which the weights alone do not show
    swaps = {
        "maxpool": (nn.Identity(), "its maxpool is Identity(), the spec builds MaxPool2d("),
        "conv1": (nn.Conv2d(3, 64, 7, 1, 3, bias=False), "stride=(1, 1)"),
        "avgpool": (nn.AdaptiveMaxPool2d(1), "its avgpool is AdaptiveMaxPool2d"),
    }
    for name, (layer, message) in swaps.items():
        model = rl.resnet18(num_classes=10)
        setattr(model, name, layer)
        with pytest.raises(ValueError, match=re.escape(message)):
            rl.save(model, tmp_path / "x.pt")
    model = rl.resnet56()
    model.layer3[7].relu = nn.GELU()
    with pytest.raises(ValueError, match=r"its layer3\.7\.relu is GELU"):
        rl.save(model, tmp_path / "x.pt")
    # metadata load would refuse: not a JSON number, nested too deep
    deep: dict[str, object] = {}
    for _ in range(40):
        deep = {"x": deep}
    for metadata in ({"loss": float("nan")}, {"loss": float("inf")}, deep):
        with pytest.raises(ValueError, match="metadata must"):
            rl.save(rl.resnet20(), tmp_path / "x.pt", metadata=metadata)  # type: ignore[arg-type]
    assert not os.listdir(tmp_path)


def test_what_save_accepts_loads_with_the_same_outputs(tmp_path: Path) -> None:
    """The module check refuses no model its spec rebuilds: frozen, channels-last, half,
    another head, momentum changed, drop path, output stride, group norm."""
    models = [rl.resnet20(), rl.resnet50(drop_path_rate=0.1), rl.resnet18(output_stride=8)]
    models += [rl.resnet18(norm="groupnorm", act="silu"), rl.preact_resnet18()]
    rl.interop.freeze(models[0], stages=2)
    models[1].reset_classifier(5)
    for module in models[2].modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.01
    for model in models:
        rl.save(model.to(memory_format=torch.channels_last), tmp_path / "m.pt")
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(rl.load(tmp_path / "m.pt").eval()(x), model.eval()(x))


def test_the_spec_check_builds_once_per_spec_and_registered_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving every epoch pays for one meta build; a type registered anew is built anew."""
    built: list[str] = []
    real_build = checkpoint.build

    def counting_build(spec: rl.ResNetSpec) -> rl.ResNet:
        built.append(spec.block)
        return real_build(spec)

    monkeypatch.setattr(checkpoint, "build", counting_build)
    checkpoint._probe_of_spec.cache_clear()

    class WiderBlock(rl.BasicBlock):
        pass

    class OtherBlock(rl.BasicBlock):
        def __init__(self, **args: Any) -> None:
            super().__init__(**args)
            self.extra = nn.Parameter(torch.zeros(1))

    model = rl.resnet20()
    for _ in range(3):
        rl.save(model, tmp_path / "a.pt")
    assert built == ["basic"]
    rl.register_block("test_recheck", WiderBlock)
    try:
        custom = rl.cifar_resnet(20, block="test_recheck")
        rl.save(custom, tmp_path / "b.pt")
    finally:
        rl.nn.BLOCKS.unregister("test_recheck")
    rl.register_block("test_recheck", OtherBlock)  # the same name, another type
    try:
        with pytest.raises(ValueError, match=r"no longer matches its spec.*layer1\.0\.extra"):
            rl.save(custom, tmp_path / "c.pt")
    finally:
        rl.nn.BLOCKS.unregister("test_recheck")
    assert built == ["basic", "test_recheck", "test_recheck"]


def test_a_changed_registered_block_is_named_when_the_weights_no_longer_fit(
    tmp_path: Path,
) -> None:
    """A user's block registered again with other layers: the refusal says the registered
    block may have changed, not only that the file's spec does not describe its weights."""
    from resnetlib.nn import BLOCKS, BasicBlock

    class Saved(BasicBlock):
        pass

    class Changed(BasicBlock):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.extra = nn.Conv2d(1, 1, 1)

    BLOCKS.register("changed_later_basic")(Saved)
    try:
        rl.save(rl.resnet20(block="changed_later_basic"), tmp_path / "m.pt")
        BLOCKS.unregister("changed_later_basic")
        BLOCKS.register("changed_later_basic")(Changed)
        with pytest.raises(rl.CheckpointError) as info:
            rl.load(tmp_path / "m.pt")
    finally:
        BLOCKS.unregister("changed_later_basic")
    message = str(info.value)
    assert "the spec does not describe the weights; missing: layer1.0.extra.weight" in message
    assert message.endswith(
        "(the block 'changed_later_basic' registered here may build other parameters than "
        "when the weights were saved)"
    )
    # a built-in block is not suspected
    with pytest.raises(rl.CheckpointError) as plain:
        checkpoint.check_fits("x", rl.resnet20().spec, {})
    assert "registered here" not in str(plain.value)


def test_a_model_changed_after_building_names_its_modules_not_a_registered_part(
    tmp_path: Path,
) -> None:
    """At save time no weights were saved before: the hint names the changed module."""
    from resnetlib.nn import BLOCKS, BasicBlock

    class Mine(BasicBlock):
        pass

    BLOCKS.register("test_saved_custom")(Mine)
    try:
        model = rl.resnet20(block="test_saved_custom")
        model.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, 4))
        with pytest.raises(ValueError, match="no longer matches its spec") as info:
            rl.save(model, tmp_path / "m.pt")
    finally:
        BLOCKS.unregister("test_saved_custom")
    message = str(info.value)
    assert "unexpected: fc.1.weight" in message
    assert message.endswith("(changed after the model was built: fc)")
    assert "registered here" not in message


@pytest.mark.parametrize("block", ["basic", "test_unchanged_block"])
def test_a_changed_registered_shortcut_is_named_when_the_weights_no_longer_fit(
    tmp_path: Path, block: str
) -> None:
    """The hint names the registered part whose keys differ: the shortcut, not the block."""
    from resnetlib.nn import BLOCKS, SHORTCUTS, BasicBlock, OptionB

    class Unchanged(BasicBlock):
        pass

    class Saved(OptionB):
        pass

    class Changed(OptionB):
        def make(self, **args: Any) -> nn.Module:
            return nn.Sequential(super().make(**args), nn.Conv2d(1, 1, 1))

    BLOCKS.register("test_unchanged_block")(Unchanged)
    SHORTCUTS.register("test_changed_shortcut")(Saved)
    try:
        rl.save(rl.resnet20(block=block, shortcut="test_changed_shortcut"), tmp_path / "m.pt")
        SHORTCUTS.unregister("test_changed_shortcut")
        SHORTCUTS.register("test_changed_shortcut")(Changed)
        with pytest.raises(rl.CheckpointError) as info:
            rl.load(tmp_path / "m.pt")
    finally:
        BLOCKS.unregister("test_unchanged_block")
        SHORTCUTS.unregister("test_changed_shortcut")
    assert str(info.value).endswith(
        "(the shortcut 'test_changed_shortcut' registered here may build other parameters "
        "than when the weights were saved)"
    )
