"""The one gate for files (issue 24): every read refuses what is not a regular file, bounds
the bytes it actually reads and the work of parsing; every write is atomic, never goes
through a link it did not make and never replaces an input of the same command. Each case
is made the way an attacker or a careless user would make it."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

import resnetlib as rl
from resnetlib import files
from resnetlib.core.data_config import check_data_config, set_data_config
from resnetlib.files import FileRefusedError, OutputIsInputError
from resnetlib.interop import checkpoint as checkpoint_module
from resnetlib.limits import MAX_JSON_DEPTH
from resnetlib.train.data import DataError, load_data
from resnetlib.train.recipe import Recipe
from tests.test_hostile_inputs import run_limited
from tests.test_train_data import _py2_str, write_cifar10

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and devices are POSIX")

# -- reading: regular files only, bounded by what is read -----------------------------------


@posix_only
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "recipe.json"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(FileRefusedError, match=r"recipe\.json: a FIFO \(the recipe\); resnetlib"):
        files.read_json(fifo, what="the recipe")
    os.mkfifo(tmp_path / "model.pt")
    with pytest.raises(rl.CheckpointError, match=r"model\.pt: a FIFO \(a checkpoint\)"):
        rl.load(tmp_path / "model.pt")
    assert time.perf_counter() - start < 60  # a blocking open would never return


@posix_only
def test_a_character_device_behind_a_link_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.symlink_to("/dev/zero")
    with pytest.raises(FileRefusedError, match=r"spec\.json: a character device"):
        files.read_json(spec)
    with pytest.raises(FileRefusedError, match=r"a directory"):
        files.read_bytes(tmp_path, limit=10)


@posix_only
def test_check_regular_refuses_as_open_regular_without_opening(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    os.mkfifo(tmp_path / "fifo.png")
    files.check_regular(tmp_path / "a.png")
    files.check_regular(tmp_path / "link.png")  # a link to a regular file is that file
    with pytest.raises(FileRefusedError, match=r"fifo\.png: a FIFO \(an image\); resnetlib reads"):
        files.check_regular(tmp_path / "fifo.png", what="an image")
    with pytest.raises(FileNotFoundError):
        files.check_regular(tmp_path / "gone.png")


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc")
def test_the_bound_is_on_bytes_read_not_on_what_st_size_claims() -> None:
    maps = Path("/proc/self/maps")
    assert maps.stat().st_size == 0  # a regular file that claims nothing
    with pytest.raises(FileRefusedError, match=r"maps: larger than 16 bytes"):
        files.read_bytes(maps, limit=16)
    assert len(files.read_bytes(maps, limit=1 << 24)) > 16


def test_read_bytes_returns_the_whole_file_at_its_limit(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 7)  # more than one chunk
    (tmp_path / "x").write_bytes(data)
    assert files.read_bytes(tmp_path / "x", limit=len(data)) == data
    with pytest.raises(FileRefusedError, match="larger than"):
        files.read_bytes(tmp_path / "x", limit=len(data) - 1)


# -- JSON: no duplicate keys, no NaN, bounded depth -----------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"lr": 0.1, "lr": 0.2}', r"duplicate key 'lr'"),
        ('{"seed": Infinity}', r"Infinity is not a number JSON allows"),
        ('{"seed": NaN}', r"NaN is not a number JSON allows"),
        ('{"std": [1e999]}', r"1e999 is out of a float's range"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), r"nested more than 32 deep"),
        ("[" * 100_000 + "]" * 100_000, r"nested more than 32 deep"),
        ('{"a": 1', r"not valid JSON \(line 1: "),
        ("-" + "1" * 5000, r"an integer of more than 4,300 digits, longer than any number"),
    ],
    ids=["duplicate", "infinity", "nan", "overflow", "depth-33", "depth-100k", "cut", "digits"],
)
def test_json_the_gate_refuses(text: str, message: str) -> None:
    """One line in the gate's words (no Python-internal advice such as sys.set_...)."""
    with pytest.raises(FileRefusedError, match=rf"^run\.json: .*{message}") as info:
        files.parse_json(text, where="run.json")
    assert "sys." not in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_json_within_the_rules_parses() -> None:
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert files.parse_json(deep) is not None
    assert files.parse_json('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_a_recipe_and_a_spec_with_a_duplicate_key_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Recipe JSON: duplicate key 'lr'"):
        Recipe.from_json('{"lr": 0.1, "lr": 0.2}')
    spec = json.loads(rl.resnet20().spec.to_json())
    text = json.dumps(spec)[:-1] + ', "num_classes": 10}'
    with pytest.raises(ValueError, match=r"ResNetSpec JSON: duplicate key 'num_classes'"):
        rl.ResNetSpec.from_json(text)


# -- paths named in a file stay in their root -----------------------------------------------


@pytest.mark.parametrize("name", ["../../x.png", "/etc/passwd", "a/../../b.png", "", "a\0b"])
def test_a_path_from_a_file_may_not_leave_its_root(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileRefusedError, match="is not a path inside"):
        files.inside(tmp_path, name, where="list:3")


def test_a_path_inside_its_root_is_kept(tmp_path: Path) -> None:
    assert files.inside(tmp_path, "images/val_1.JPEG", where="x") == tmp_path / "images/val_1.JPEG"


def _tinyimagenet(root: Path) -> None:
    from PIL import Image

    (root / "train" / "n01" / "images").mkdir(parents=True)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("n01\n")
    Image.new("RGB", (8, 8)).save(root / "train" / "n01" / "images" / "a.png")
    Image.new("RGB", (8, 8), "red").save(root / "secret.png")  # outside val/images


def test_an_annotation_line_that_leaves_the_data_root_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESNETLIB_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "tiny"
    _tinyimagenet(root)
    (root / "val" / "val_annotations.txt").write_text("../../secret.png\tn01\t0\t0\t8\t8\n")
    with pytest.raises(DataError, match=r"val_annotations\.txt:1: '\.\./\.\./secret\.png' is not"):
        load_data(root)
    assert not (tmp_path / "cache").exists()  # refused before anything was decoded


# -- pickles: the work of parsing is bounded -----------------------------------------------


def _doubling_lists(levels: int) -> bytes:
    """Pickle opcodes that leave a list on the stack: ``levels`` lists, each holding the last
    one twice (2**levels objects when unfolded, a few hundred bytes on disk)."""
    body = b"]q\x00"  # level 0: an empty list, memo 0
    for level in range(1, levels):
        twice = (b"h" + bytes([level - 1])) * 2  # BINGET the last level, twice
        body += b"0(" + twice + b"lq" + bytes([level])  # POP, MARK ... LIST, BINPUT level
    return body


def test_lists_that_reference_each_other_are_refused_at_once(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "batches.meta").write_bytes(
        b"\x80\x02}" + _py2_str(b"label_names") + _doubling_lists(80) + b"s."
    )
    assert (root / "batches.meta").stat().st_size < 2000
    report = run_limited(f"resnetlib.train.data.load_data({str(root)!r})", headroom=1 << 30)
    assert report["error"] == "DataError", report
    assert "reference each other more times than the pickle has opcodes" in report["message"]
    assert report["seconds"] < 30, report  # 38 s and 3.5 GB before the bound


def test_a_memo_index_past_the_pickle_is_refused_before_unpickling(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    huge_put = b"]r" + struct.pack("<I", 2**31)  # LONG_BINPUT: a memo of 2**31 slots
    (root / "batches.meta").write_bytes(b"\x80\x02}" + _py2_str(b"label_names") + huge_put + b"s.")
    with pytest.raises(DataError, match=r"batches\.meta: damaged CIFAR python batch \(a memo"):
        load_data(root)


def test_a_memo_index_refusal_names_the_file_once(tmp_path: Path) -> None:
    root = tmp_path / "pk"
    write_cifar10(root)
    (root / "data_batch_2").write_bytes(b"\x80\x02}q\x00j\xff\xff\xff\x7f.")  # LONG_BINGET 2**31-1
    with pytest.raises(DataError) as refused:
        load_data(root)
    assert str(refused.value) == (
        f"{root / 'data_batch_2'}: damaged CIFAR python batch "
        "(a memo index of 2147483647 after 4 opcodes)"
    )
    with pytest.raises(FileRefusedError) as refused:
        files.pickle_opcodes(b"\x80\x02\xff", where="x.pkl")
    assert str(refused.value).count("x.pkl") == 1, refused.value


# -- writing: never onto an input, never through a link ------------------------------------


def test_a_command_may_not_write_over_its_input(tmp_path: Path) -> None:
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    (tmp_path / "hard.pt").hardlink_to(source)
    (tmp_path / "soft.pt").symlink_to(source)
    with files.command_files():
        files.read_bytes(source, limit=100)
        for out in ("model.pt", "hard.pt", "soft.pt"):
            with pytest.raises(OutputIsInputError, match=rf"{out}: .*model\.pt, an input of"):
                files.atomic_write(tmp_path / out, lambda file: file.write(b"export"))
            with pytest.raises(OutputIsInputError), files.atomic_path(tmp_path / out):
                raise AssertionError("the writer must not run")  # pragma: no cover
        files.atomic_write(tmp_path / "other.pt", lambda file: file.write(b"export"))
    assert source.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hard.pt",
        "model.pt",
        "other.pt",
        "soft.pt",
    ]
    files.atomic_write(source, lambda file: file.write(b"new"))  # outside a command: allowed
    assert source.read_bytes() == b"new"


def test_a_commands_own_state_may_be_rewritten(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    state.write_bytes(b"iteration 3")
    with files.command_files():
        files.read_bytes(state, limit=100, own=True)
        files.atomic_write(state, lambda file: file.write(b"iteration 4"))
    assert state.read_bytes() == b"iteration 4"


def test_a_symbolic_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"keep me")
    (tmp_path / "final.pt").symlink_to(elsewhere)
    files.atomic_write(tmp_path / "final.pt", lambda file: file.write(b"checkpoint"))
    assert elsewhere.read_bytes() == b"keep me"
    assert not (tmp_path / "final.pt").is_symlink()


@posix_only
def test_the_lock_file_is_never_opened_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    (tmp_path / ".lock").symlink_to(victim)
    with pytest.raises(FileRefusedError, match=r"\.lock: a symbolic link; .*remove it"):
        files.open_lock(tmp_path / ".lock")
    assert victim.read_text() == "precious"
    os.mkfifo(tmp_path / "fifo.lock")
    with pytest.raises(FileRefusedError, match=r"fifo\.lock: a FIFO; the lock must be"):
        files.open_lock(tmp_path / "fifo.lock")
    fd = files.open_lock(tmp_path / "new.lock")
    os.close(fd)


def test_a_long_output_name_is_written(tmp_path: Path) -> None:
    target = tmp_path / ("r" * 240 + ".pt")  # the temporary name beside it must fit too
    rl.save(rl.resnet20(), target)
    assert rl.load(target).spec == rl.resnet20().spec
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# -- one validator for a data configuration -------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"std": (1e-300, 0.2, 0.2)}, r"std must hold 3 finite numbers .* from 0.001"),
        ({"mean": (1e300, 0.5, 0.5)}, r"mean must hold 3 finite numbers .* to 1000"),
        ({"std": (float("nan"),) * 3}, r"std must hold 3 finite numbers"),
        ({"mean": (0.5, 0.5)}, r"mean must hold 3 finite numbers"),
        ({"input_size": (3, 10**6, 10**6)}, r"input_size must be .*sides up to 8,192"),
        ({"input_size": None}, r"input_size must be \(channels, height, width\)"),
        ({"crop_pct": 1e-9}, r"crop_pct must be a number from 0.05 to 1"),
        ({"input_size": (3, 4000, 4000), "crop_pct": 0.1}, r"crop_pct 0.1 asks to resize to"),
        ({"interpolation": "cubic!"}, r"interpolation must be one of"),
        ({"label_names": ["a", "b"]}, r"label_names must be a list of 10 class names"),
        ({"label_names": ["x" * 1001] * 10}, r"strings of at most 1000 characters"),
        ({"num_classes": True}, r"num_classes must be an int"),
        ({"test_crop_pct": -1}, r"test_crop_pct must be a number from 0.05 to 1; got -1"),
        ({"test_input_size": (3, 8000, 8000), "test_crop_pct": 0.9}, r"test_crop_pct 0.9 asks"),
        ({"classifier": 5}, r"classifier must be a str of at most 1,000 characters; got 5"),
        ({"first_conv": ["conv1"]}, r"first_conv must be a str"),
        ({"license": {"x": 1}}, r"license must be a str .*; got \{'x': 1\}"),
        ({"hf_hub_id": 5}, r"hf_hub_id must be a str"),
        ({"pool_size": [0, 1]}, r"pool_size must be \(height, width\): ints from 1 to 8,192"),
        ({"pool_size": [10**6, 7]}, r"pool_size must be \(height, width\)"),
        ({"pool_size": "7x7"}, r"pool_size must be \(height, width\)"),
    ],
)
def test_the_data_config_validator_refuses(change: dict[str, object], message: str) -> None:
    config = {**rl.resnet20().pretrained_cfg, **change}
    with pytest.raises(ValueError, match=message):
        check_data_config(config)


def save_unchecked(model: rl.ResNet, path: Path) -> None:
    """``rl.save`` without its data-config check: the file an older resnetlib, or a hand
    edit, could have written."""
    with mock.patch.object(checkpoint_module, "fitted_data_config", lambda _, c: dict(c)):
        rl.save(model, path)


def test_a_checkpoint_with_an_unusable_data_config_is_refused_at_load(tmp_path: Path) -> None:
    model = rl.resnet20()
    model.pretrained_cfg = {**model.pretrained_cfg, "std": (1e-300, 1e-300, 1e-300)}
    with pytest.raises(ValueError, match=r"pretrained_cfg std must hold 3 finite numbers"):
        rl.save(model, tmp_path / "refused.pt")  # save writes only what load restores
    assert not (tmp_path / "refused.pt").exists()
    save_unchecked(model, tmp_path / "tiny-std.pt")
    with pytest.raises(rl.CheckpointError, match=r"tiny-std\.pt: invalid data_config: .*std"):
        rl.load(tmp_path / "tiny-std.pt")
    result = subprocess.run(
        [sys.executable, "-m", "resnetlib", "evaluate", str(tmp_path / "tiny-std.pt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "invalid data_config" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "config",
    [
        {"mean": (0.1, 0.9), "std": (0.2, 0.3)},  # no input_size: nothing says whose channels
        {"input_size": (1, 32, 32), "mean": (0.1, 0.9), "std": (0.2, 0.3)},  # 2 values, 1 channel
    ],
    ids=["no-input-size", "input-size-disagrees"],
)
def test_a_mean_for_no_known_channel_count_is_refused_not_averaged(
    config: dict[str, Any],
) -> None:
    """Averaging is for a config made for other channels (RGB statistics on a grey model);
    two values for a three-channel model were averaged into three before."""
    model = rl.resnet20()
    before = model.pretrained_cfg
    with pytest.raises(ValueError, match=r"pretrained_cfg mean must hold 3 finite numbers"):
        set_data_config(model, config)
    assert model.pretrained_cfg == before
    with pytest.raises(ValueError, match=r"pretrained_cfg mean must hold 3 finite numbers"):
        rl.create_model("resnet20", pretrained_cfg_overlay=config)


def test_reset_classifier_fits_the_data_config_to_the_new_head(tmp_path: Path) -> None:
    model = rl.resnet20()
    set_data_config(model, {**model.pretrained_cfg, "label_names": list("abcdefghij")})
    model.reset_classifier(5)
    assert model.pretrained_cfg["num_classes"] == 5
    assert "label_names" not in model.pretrained_cfg  # the old head's names
    untouched = rl.resnet20()  # a default config made after the reset has the new head too
    untouched.reset_classifier(7)
    assert untouched.pretrained_cfg["num_classes"] == 7
    rl.save(model, tmp_path / "m.pt")
    assert rl.load(tmp_path / "m.pt").pretrained_cfg == model.pretrained_cfg


def test_save_stores_the_config_load_restores(tmp_path: Path) -> None:
    """A config assigned without set_data_config is stored as load would fit it, so the
    loaded model's config equals the one stored, and an unfit one is refused at save."""
    model = rl.resnet20(num_classes=4)
    model.pretrained_cfg = {**rl.resnet20().pretrained_cfg}  # 10 classes: not this model's
    rl.save(model, tmp_path / "m.pt")
    stored = rl.interop.read_checkpoint(tmp_path / "m.pt").pretrained_cfg
    assert stored is not None
    assert stored["num_classes"] == 4
    assert rl.load(tmp_path / "m.pt").pretrained_cfg == stored
    model.pretrained_cfg = {"mean": "abc"}
    with pytest.raises(ValueError, match=r"pretrained_cfg mean must hold 3 finite numbers"):
        rl.save(model, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("pool", ["max", "avgmax"])
def test_a_model_pooling_other_than_by_average_is_refused_at_save(
    pool: str, tmp_path: Path
) -> None:
    """Its spec rebuilds average pooling: the loaded model would compute other outputs."""
    model = rl.create_model("resnet20", global_pool=pool)
    with pytest.raises(ValueError, match=rf"save\(\) cannot store global_pool='{pool}'"):
        rl.save(model, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"save_pretrained\(\) cannot store global_pool="):
        rl.save_pretrained(model, tmp_path / "folder")
    assert not (tmp_path / "m.pt").exists()
    assert not (tmp_path / "folder").exists()
    model.reset_classifier(model.num_classes, global_pool="avg")
    rl.save(model, tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rl.load(tmp_path / "m.pt").eval()(x), model.eval()(x))


def test_a_write_names_the_target_not_its_temporary_file(tmp_path: Path) -> None:
    """A missing directory, a file where the directory should be, a directory as the target:
    one message naming what the user gave, and nothing left behind."""
    (tmp_path / "a-file").write_text("x")
    cases = {
        tmp_path / "missing" / "m.pt": (
            FileNotFoundError,
            r"its directory .*missing does not exist",
        ),
        tmp_path / "a-file" / "m.pt": (
            FileNotFoundError,
            r"its directory .*a-file is not a directory",
        ),
        tmp_path: (IsADirectoryError, r"is a directory; name a file to write"),
    }
    for path, (kind, message) in cases.items():
        with pytest.raises(kind, match=message) as refused:
            files.atomic_write(path, b"data")
        assert ".partial" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_set_data_config_fits_the_config_to_the_model() -> None:
    model = rl.resnet20(num_classes=5, in_channels=1)
    set_data_config(model, rl.resnet20().pretrained_cfg)
    config = model.pretrained_cfg
    assert config["num_classes"] == 5
    assert config["input_size"] == (1, 32, 32)
    mean = rl.resnet20().pretrained_cfg["mean"]
    assert config["mean"] == pytest.approx((sum(mean) / 3,))
    with pytest.raises(ValueError, match="std"):
        set_data_config(model, {**config, "std": (0.0,)})
    assert model.pretrained_cfg == config  # a refused config changes nothing


def test_loading_weights_into_a_checkpoint_model_keeps_a_checked_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rl.save(rl.resnet20(), tmp_path / "r20.pt")
    model = rl.create_model("resnet20", checkpoint_path=tmp_path / "r20.pt", in_channels=1)
    assert model.pretrained_cfg["input_size"][0] == 1
    check_data_config(model.pretrained_cfg)
