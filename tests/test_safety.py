"""Hostile input and crashes: absurd sizes, crafted and damaged checkpoints in both formats
(refused for what they hold, before anything is built), and saves killed midway."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.core.spec import MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_STAGES, MAX_STRIDE
from resnetlib.interop.checkpoint import FORMAT, FORMAT_VERSION, _digest
from resnetlib.models.zoo import cifar_spec, imagenet_spec

from .helpers import tiny_cifar

HUGE = 10**9

# --- absurd sizes through every public entry point ------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: rl.StageSpec(num_blocks=HUGE, width=16),
            "StageSpec.num_blocks must be an int <= 10,000",
        ),
        (
            lambda: rl.StageSpec(num_blocks=1, width=HUGE),
            "StageSpec.width must be an int <= 65,536",
        ),
        (lambda: rl.StageSpec(1, 16, stride=HUGE), "StageSpec.stride must be an int <= 1,024"),
        (lambda: rl.StageSpec(1, 16, dilation=HUGE), "StageSpec.dilation must be an int <= 1,024"),
        (lambda: rl.StemSpec("cifar", HUGE), "StemSpec.out_channels must be an int <= 65,536"),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(1, 16),), num_classes=HUGE),
            "ResNetSpec.num_classes must be an int <= 10,000,000",
        ),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(1, 16),), in_channels=HUGE),
            "ResNetSpec.in_channels must be an int <= 65,536",
        ),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(1, 16),) * (MAX_STAGES + 1)),
            "ResNetSpec.stages must hold <= 64 stages",
        ),
        (
            lambda: rl.ResNetSpec((rl.StageSpec(6000, 16), rl.StageSpec(6000, 16))),
            "ResNetSpec.stages must hold <= 10000 blocks in all",
        ),
    ],
    ids=[
        "num_blocks",
        "width",
        "stride",
        "dilation",
        "stem",
        "classes",
        "in_channels",
        "stages",
        "depth",
    ],
)
def test_spec_refuses_absurd_sizes(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match="resnetlib's size limit") as info:
        make()
    assert str(info.value).startswith(message)
    assert "(resnetlib's size limit, see resnetlib.limits); got " in str(info.value)


def test_limits_are_far_above_real_networks() -> None:
    assert cifar_spec(1202).num_blocks * 10 < MAX_BLOCKS  # the paper's deepest: 200 blocks a stage
    widest = imagenet_spec((3, 4, 23, 3), "bottleneck").stages[-1].width * 4  # 2048
    assert widest * 16 <= MAX_CHANNELS
    assert MAX_CLASSES > 21_843 * 100  # ImageNet-21k
    assert MAX_STRIDE >= 64


def test_the_limits_themselves_are_allowed() -> None:
    stage = rl.StageSpec(num_blocks=MAX_BLOCKS, width=MAX_CHANNELS, stride=MAX_STRIDE)
    spec = rl.ResNetSpec((stage,), stem=rl.StemSpec("cifar", MAX_CHANNELS), num_classes=MAX_CLASSES)
    assert rl.ResNetSpec.from_json(spec.to_json()) == spec


def _json_with(**changes: object) -> str:
    data = rl.resnet20().spec.to_dict()
    stages = changes.pop("stages", None)
    data.update(changes)
    if stages is not None:
        data["stages"] = stages
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_json_with(num_classes=HUGE), r"num_classes must be an int <= 10,000,000"),
        (_json_with(in_channels=HUGE), r"in_channels must be an int <= 65,536"),
        (
            _json_with(stages=[{"num_blocks": HUGE, "width": 16, "stride": 1}]),
            r"num_blocks must be an int <= 10,000",
        ),
        (
            _json_with(stages=[{"num_blocks": 1, "width": HUGE, "stride": 1}]),
            r"width must be an int <= 65,536",
        ),
        (
            _json_with(stages=[{"num_blocks": 1, "width": 16, "stride": 1}] * 10**5),
            r"<= 64 stages .*; got 100000",
        ),
    ],
    ids=["classes", "in_channels", "num_blocks", "width", "stages"],
)
def test_from_json_refuses_absurd_sizes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rl.ResNetSpec.from_json(text)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rl.cifar_resnet(6 * HUGE + 2), r"StageSpec.num_blocks must be an int <= 10,000"),
        (lambda: rl.resnet(layers=(HUGE,)), r"StageSpec.num_blocks must be an int <= 10,000"),
        (lambda: rl.resnet(layers=(1,) * 100), r"StageSpec.width must be an int <= 65,536"),
        (lambda: rl.resnet18(num_classes=HUGE), r"num_classes must be an int <= 10,000,000"),
        (lambda: rl.resnet18(in_channels=HUGE), r"in_channels must be an int <= 65,536"),
        (lambda: rl.resnet18(base_channels=HUGE), r"width must be an int <= 65,536"),
        (lambda: rl.resnet18(widths=(HUGE, 1, 1, 1)), r"width must be an int <= 65,536"),
        (lambda: rl.resnet56(width_multiplier=HUGE), r"StageSpec.width must be an int <= 65,536"),
        (lambda: rl.resnet50(block_options={"groups": HUGE}), r"groups must be an int <= 65,536"),
        (
            lambda: rl.resnet50(block_options={"width_per_group": 10**400}),
            r"width_per_group must be an int <= 65,536",
        ),
        (
            lambda: rl.resnet50(block_options={"groups": 4096, "width_per_group": 4096}),
            r"inner width .* is 16777216; it must be <= 65,536",
        ),
        (
            lambda: rl.create_model("resnet20", num_classes=HUGE),
            r"num_classes must be an int <= 10,000,000",
        ),
        (
            lambda: rl.create_model("resnet20", features_only=True, widths=(HUGE, 32, 64)),
            r"width must be an int <= 65,536",
        ),
    ],
    ids=[
        "cifar-depth",
        "layers",
        "stages",
        "classes",
        "in_channels",
        "base_channels",
        "widths",
        "width_multiplier",
        "groups",
        "width_per_group",
        "inner-width",
        "create_model",
        "create_model-features",
    ],
)
def test_factories_refuse_absurd_sizes(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("classes", [str(HUGE), str(10**30)])
def test_cli_summary_refuses_absurd_sizes(classes: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet20", "--num-classes", classes]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    error = captured.err.splitlines()[-1]
    assert error.startswith(
        "resnetlib summary: error: ResNetSpec.num_classes must be an int <= 10,000,000"
    )


# --- hostile checkpoint files: refused for what they hold, before anything is built ---------

WORKER = Path(__file__).with_name("hostile_worker.py")
# Address space the worker may map beyond what it maps after importing torch and resnetlib
# (0.7 GB for a CPU torch, several GB for a CUDA one): every refusal must fit in it.
MEMORY_HEADROOM = 5 * 2**30 // 4


def write_checkpoint(
    path: Path,
    spec_json: str,
    state: dict[str, torch.Tensor],
    digest: str | None = None,
    metadata_json: str = "{}",
) -> Path:
    """A file in resnetlib's format with a consistent digest (as ``save`` computes it)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),
        "spec": spec_json,
        "metadata": metadata_json,
        "data_config": "{}",
        "state_dict": state,
        "sha256": digest or _digest(spec_json, metadata_json, state, "{}"),
    }
    torch.save(payload, path)
    return path


def with_stages(spec: rl.ResNetSpec, *stages: tuple[int, int]) -> str:
    """``spec`` as JSON with other (blocks, width) stages, bypassing the spec's own checks."""
    data = spec.to_dict()
    data["stages"] = [
        dict(old, num_blocks=blocks, width=width)
        for old, (blocks, width) in zip(data["stages"], stages, strict=True)
    ]
    return json.dumps(data)


def test_a_spec_that_cannot_be_built_is_a_checkpoint_error(tmp_path: Path) -> None:
    model = rl.resnet20()
    data = model.spec.to_dict()
    data.update(shortcut="none", zero_init_residual=True)  # build() refuses this pair
    state = {key: value.detach() for key, value in model.state_dict().items()}
    path = write_checkpoint(tmp_path / "bad.pt", json.dumps(data), state)
    with pytest.raises(rl.CheckpointError, match=r"spec cannot be built: zero_init_residual"):
        rl.load(path)


@pytest.mark.parametrize(
    ("spec_json", "metadata_json", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "{}", "invalid spec: JSON nested more than 32 deep"),
        (None, "[" * 100_000 + "]" * 100_000, "invalid metadata: JSON nested more than 32 deep"),
        (None, '{"a": 1, "a": 2}', "invalid metadata: duplicate key 'a'"),
        (None, '{"accuracy": NaN}', "invalid metadata: NaN is not a number JSON allows"),
        (None, "[1]", "invalid metadata: a JSON object expected; got list"),
    ],
    ids=["deep-spec", "deep-metadata", "duplicate-key", "nan", "list-metadata"],
)
def test_crafted_json_entries_are_checkpoint_errors(
    spec_json: str | None, metadata_json: str, message: str, tmp_path: Path
) -> None:
    model = rl.resnet20()
    spec_json = spec_json or model.spec.to_json()
    state = {key: value.detach() for key, value in model.state_dict().items()}
    path = write_checkpoint(tmp_path / "crafted.pt", spec_json, state, metadata_json=metadata_json)
    with pytest.raises(rl.CheckpointError, match=message):
        rl.load(path)


def deflated(source: Path, target: Path) -> Path:
    """``source`` with every zip record compressed, as ``torch.save`` never writes them."""
    with zipfile.ZipFile(source) as archive:
        records = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in records:
            archive.writestr(name, data)
    return target


def hostile_safetensors(directory: Path) -> dict[str, Path]:
    """safetensors files whose headers claim tensors far larger than the file."""

    def write(name: str, entry: dict[str, object]) -> Path:
        text = json.dumps({"fc.weight": entry}).encode()
        path = directory / f"{name}.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(16))
        return path

    return {
        "st-huge": write("huge", {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}),
        "st-lying": write("lying", {"dtype": "F32", "shape": [2**31], "data_offsets": [0, 16]}),
        "st-overflow": write(
            "overflow", {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}
        ),
    }


def run_worker(cases: dict[str, str]) -> dict[str, dict[str, object]]:
    command = [sys.executable, str(WORKER), str(MEMORY_HEADROOM)]
    command += [f"{name}={case}" for name, case in cases.items()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["case"]: line for line in lines}


def test_hostile_checkpoints_are_refused_within_a_memory_limit(tmp_path: Path) -> None:
    """Each file would cost gigabytes if built as it claims; the worker has 1.25 GB spare."""
    small = rl.cifar_resnet(20, widths=(16, 32, 128))  # stage 3: 3 blocks of 128 channels
    state = {key: value.detach().clone() for key, value in small.state_dict().items()}
    spec = small.spec
    # 9,994 blocks of 128 channels (12 GB of weights) claimed; 3 stored (3.4 MB in all).
    blocks = write_checkpoint(
        tmp_path / "blocks.pt", with_stages(spec, (3, 16), (3, 32), (9_994, 128)), state
    )
    # The file: three million blocks in one stage (above the spec's limit).
    millions = write_checkpoint(
        tmp_path / "millions.pt", with_stages(spec, (3, 16), (3, 32), (3_000_000, 128)), state
    )
    # 4,096 channels (4 GB of weights) claimed where 128 are stored, same blocks.
    widths = write_checkpoint(
        tmp_path / "widths.pt", with_stages(spec, (3, 16), (3, 32), (3, 4096)), state
    )
    # Ten million classes (a 5 GB head) claimed; create_model keeps a checkpoint's head.
    classes = write_checkpoint(
        tmp_path / "classes.pt", json.dumps(dict(spec.to_dict(), num_classes=10**7)), state
    )
    # One stored float viewed as 2**31 of them (8 GB once made contiguous).
    repeated = dict(state, extra=torch.zeros(1).as_strided((2**31,), (0,)))
    views = write_checkpoint(tmp_path / "views.pt", spec.to_json(), repeated, digest="0" * 64)
    # Compressed records that inflate to 16 MB more than the file holds.
    padded = dict(state, extra=torch.zeros(2**22))
    bomb = deflated(
        write_checkpoint(tmp_path / "padded.pt", spec.to_json(), padded), tmp_path / "bomb.pt"
    )
    good = tmp_path / "good.pt"
    rl.save(small, good)
    # The same claim in a safetensors checkpoint (its spec is in the header's metadata).
    blocks_st = tmp_path / "blocks.safetensors"
    rl.save(small, blocks_st)
    with safetensors.safe_open(str(blocks_st), framework="pt") as file:
        header = file.metadata()
    header["spec"] = with_stages(spec, (3, 16), (3, 32), (9_994, 128))
    header["sha256"] = _digest(
        header["spec"], header["metadata"], dict(sorted(state.items())), header["data_config"]
    )
    safetensors.torch.save_file(state, str(blocks_st), metadata=header)
    results = run_worker(
        {
            "blocks": f"load:{blocks}",
            "millions": f"load:{millions}",
            "widths": f"load:{widths}",
            "views": f"load:{views}",
            "bomb": f"load:{bomb}",
            "create-blocks": f"create:resnet20:{blocks}",
            "create-widths": f"create:resnet20:{widths}",
            "create-classes": f"create:resnet20:{classes}",
            "good": f"load:{good}",
            "st-blocks": f"load:{blocks_st}",
            **{name: f"load:{path}" for name, path in hostile_safetensors(tmp_path).items()},
        }
    )
    assert results["good"]["error"] is None  # the limit leaves room for an honest load
    expected = {
        "blocks": r"stage 3 \(layer3\) has 9994 blocks with weights, and there are "
        r"weights for 3",
        "millions": r"invalid spec: .*num_blocks must be an int <= 10,000",
        "widths": r"does not describe the weights; shapes differ: layer3\.0\.conv1\.weight "
        r"\(weights \(128, 32, 3, 3\), spec \(4096, 32, 3, 3\)\)",
        "views": r"entry 'extra' claims 8589934592 bytes of values, more than the 4 bytes stored",
        "bomb": r"record '.*' is compressed; torch\.save never writes compressed records",
        "create-blocks": r"stage 3 \(layer3\) has 9994 blocks",
        "create-widths": r"shapes differ: layer3\.0\.conv1\.weight",
        "create-classes": r"shapes differ: fc\.weight \(weights \(10, 128\), "
        r"spec \(10000000, 128\)\)",
        "st-blocks": r"stage 3 \(layer3\) has 9994 blocks",
        # safetensors checks shapes and offsets against the file's size before reading.
        "st-huge": r"not a readable safetensors file: .*incomplete metadata",
        "st-lying": r"not a readable safetensors file: .*invalid shape",
        "st-overflow": r"not a readable safetensors file: .*overflow",
    }
    for case, pattern in expected.items():
        result = results[case]
        assert result["error"] == "CheckpointError", (case, result)
        message = str(result["message"])
        assert re.search(pattern, message), (case, message)


# --- durable saves: a crash at any moment leaves the old checkpoint or the new one ---------


def seeded(seed: int) -> rl.ResNet:
    torch.manual_seed(seed)
    return rl.resnet18()  # 47 MB of weights: a save takes a while


def same_weights(a: rl.ResNet, b: rl.ResNet) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[key], sb[key]) for key in sa)


def save_forever(model: rl.ResNet, target: Path, ready: int) -> None:
    """The child: say it has started, then save over ``target`` until it is killed."""
    try:
        os.write(ready, b"!")
        while True:
            rl.save(model, target)
    finally:
        os._exit(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_checkpoint(
    tmp_path: Path,
) -> None:
    old, new = seeded(0), seeded(1)
    target = tmp_path / "model.pt"
    start = time.perf_counter()
    rl.save(new, target)
    duration = time.perf_counter() - start  # the kills fall anywhere in about one save
    delays = random.Random(0)
    for _ in range(6):
        rl.save(old, target)
        ready, started = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            save_forever(new, target, started)
        os.close(started)
        assert os.read(ready, 1) == b"!"
        os.close(ready)
        time.sleep(delays.uniform(0.0, 1.5 * duration))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = rl.load(target)  # never a CheckpointError: the file is whole
        matches = [
            name for name, model in (("old", old), ("new", new)) if same_weights(loaded, model)
        ]
        assert len(matches) == 1, matches  # all old or all new, never a mix
    # A kill between writing and renaming leaves a temporary file: hidden, never a *.pt.
    assert sorted(tmp_path.glob("*.pt")) == [target]
    for path in tmp_path.iterdir():
        assert path == target or re.fullmatch(r"\.model\.pt\.\w+\.partial", path.name), path


# --- damaged files, in both formats: CheckpointError, never anything else ------------------

FORMATS = ["pt", "safetensors"]


def tiny() -> rl.ResNet:
    return tiny_cifar(seed=0).eval()  # a file of about 30 kB


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_truncation_is_a_checkpoint_error(suffix: str, tmp_path: Path) -> None:
    source = tmp_path / f"model.{suffix}"
    rl.save(tiny(), source)
    data = source.read_bytes()
    damaged = tmp_path / f"damaged.{suffix}"
    lengths = sorted({*range(0, len(data), 300), *range(len(data) - 40, len(data))})
    for length in lengths:
        damaged.write_bytes(data[:length])
        with pytest.raises(rl.CheckpointError, match=rf"^{damaged}: "):
            rl.load(damaged)
    with pytest.raises(rl.CheckpointError, match=rf"^{damaged}: "):
        rl.create_model("resnet20", checkpoint_path=damaged)


@pytest.mark.parametrize("suffix", FORMATS)
def test_random_byte_flips_are_caught_or_harmless(suffix: str, tmp_path: Path) -> None:
    model = tiny()
    source = tmp_path / f"model.{suffix}"
    rl.save(model, source)
    data = source.read_bytes()
    damaged = tmp_path / f"damaged.{suffix}"
    rng = random.Random(f"flips-{suffix}")
    messages = []
    for _ in range(150):
        flipped = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            flipped[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        damaged.write_bytes(bytes(flipped))
        try:
            loaded = rl.load(damaged)
        except rl.CheckpointError as error:
            messages.append(str(error))
        else:  # the flip hit bytes nothing reads (zip padding, an unread header field)
            assert loaded.spec == model.spec
            assert same_weights(loaded, model)
    assert all(message.startswith(f"{damaged}: ") for message in messages)
    assert len(messages) >= 75


def test_safetensors_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = rl.cifar_resnet(20, shortcut="B", num_classes=7).half().eval()
    model = model.to(memory_format=torch.channels_last)
    path = tmp_path / "model.safetensors"
    rl.save(model, path, metadata={"epoch": 3, "note": "half"})
    assert path.read_bytes()[8:9] == b"{"  # safetensors: header length, then JSON
    with safetensors.safe_open(str(path), framework="pt") as file:
        header = file.metadata()
    assert header["format"] == "resnetlib.checkpoint"
    assert rl.ResNetSpec.from_json(header["spec"]) == model.spec
    loaded = rl.load(path)
    assert loaded.spec == model.spec
    assert list(loaded.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == value.dtype
        assert torch.equal(loaded.state_dict()[key], value), key
    assert rl.interop.read_checkpoint(path).metadata == {"epoch": 3, "note": "half"}
    resized = rl.create_model("resnet20", checkpoint_path=path, shortcut="B", num_classes=10)
    assert torch.equal(resized.layer1[0].conv1.weight, model.layer1[0].conv1.weight.float())


def test_safetensors_round_trip_on_device(device: torch.device, tmp_path: Path) -> None:
    model = tiny().to(device)
    path = tmp_path / "model.safetensors"
    rl.save(model, path)
    loaded = rl.load(path, map_location=device).eval()
    assert all(tensor.device.type == device.type for tensor in loaded.state_dict().values())
    assert all(parameter.requires_grad for parameter in loaded.parameters())
    x = torch.randn(2, 3, 32, 32, device=device)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_formats_are_told_apart_by_content_not_name(tmp_path: Path) -> None:
    model = tiny()
    as_safetensors, as_torch = tmp_path / "a.safetensors", tmp_path / "b.pt"
    rl.save(model, as_safetensors)
    rl.save(model, as_torch)
    assert not as_torch.read_bytes().startswith(as_safetensors.read_bytes()[:8])
    swapped_a, swapped_b = tmp_path / "a.pt", tmp_path / "b.safetensors"
    as_safetensors.rename(swapped_a)
    as_torch.rename(swapped_b)
    for path in (swapped_a, swapped_b):
        assert same_weights(rl.load(path), model)


def test_plain_safetensors_state_dicts_load_like_timms(tmp_path: Path) -> None:
    """timm publishes ``model.safetensors``: a state dict, with ``{"format": "pt"}``."""
    torch.manual_seed(0)
    model = rl.resnet20()
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path), metadata={"format": "pt"})
    with pytest.raises(rl.CheckpointError, match=r"a plain state dict .*load_file\(path\)"):
        rl.load(path)
    built = rl.create_model("resnet20", checkpoint_path=path)
    assert same_weights(built, model)
    fresh = rl.resnet20()
    rl.interop.load_weights(fresh, safetensors.torch.load_file(str(path)))
    assert same_weights(fresh, model)


def test_a_missing_safetensors_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.safetensors"
    rl.save(tiny(), path)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    for action in (lambda: rl.save(tiny(), tmp_path / "x.safetensors"), lambda: rl.load(path)):
        with pytest.raises(ModuleNotFoundError, match=r'pip install "resnetlib\[safetensors\]"'):
            action()
    assert not (tmp_path / "x.safetensors").exists()
