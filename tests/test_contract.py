"""The model's contract, end to end through the commands: preprocessing travels with the
weights, a run directory describes itself, every command takes the same model options, and
mistakes are one line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.core.data_config import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN
from resnetlib.train import evaluate, load_data

from .test_pretrained import (
    akamaster_file,  # noqa: F401  (a fixture)
    fake_entry,
    hub_dir,  # noqa: F401  (a fixture)
    offline,  # noqa: F401  (a fixture)
    place_in_cache,
    register,
)
from .test_train_data import write_cifar10

DIGITS8 = ["--data", "digits", "--image-size", "8", "--batch-size", "100", "--no-progress"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"resnetlib [a-z]+: error: ", lines[0]), lines[0]
    return lines[0]


def accuracy_in(stdout: str) -> float:
    match = re.search(r"top-1 accuracy ([\d.]+)%", stdout)
    assert match, stdout
    return float(match[1])


@pytest.fixture
def cifar(tmp_path: Path) -> Path:
    """A CIFAR-10 directory in the published format: 100 training and 2 test images."""
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root, n=20)
    return root


@pytest.fixture
def published(
    monkeypatch: pytest.MonkeyPatch,
    hub_dir: Path,  # noqa: F811
    offline: list[str],  # noqa: F811
    akamaster_file: tuple[Any, Path, str],  # noqa: F811
) -> str:
    """akamaster-layout ResNet-20 weights registered as tag ``test`` and already in
    torch.hub's cache (no network)."""
    _, file, prefix = akamaster_file
    register(monkeypatch, fake_entry("resnet20", "test", file, prefix))
    place_in_cache(hub_dir, file)
    return "test"


def test_pretrained_weights_score_the_same_through_the_api_a_saved_file_and_the_cli(
    published: str,
    cifar: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """akamaster's weights expect ImageNet statistics, not the CIFAR defaults: the API,
    save/load and ``resnetlib evaluate`` all feed them so, and the number depends on it."""
    model = rl.create_model("resnet20", pretrained="test")
    assert model.pretrained_cfg["mean"] == IMAGENET_MEAN
    data = load_data(cifar)
    through_api = evaluate(model, data, split="train")
    saved = tmp_path / "a.pt"
    rl.save(model, saved)
    assert rl.load(saved).pretrained_cfg == model.pretrained_cfg
    through_file = evaluate(rl.load(saved), data, split="train")
    assert through_file == through_api
    argv = ["evaluate", str(saved), "--data", str(cifar), "--split", "train"]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert accuracy_in(stdout) == pytest.approx(100 * through_api.accuracy, abs=0.006)
    assert f"loss {through_api.loss:.4f}" in stdout
    # The registered name with --pretrained says the same.
    argv = ["evaluate", "resnet20", "--pretrained-tag", "test", "--data", str(cifar)]
    code, stdout, _ = run([*argv, "--split", "train"], capsys)
    assert code == 0
    assert f"loss {through_api.loss:.4f}" in stdout
    # The check is sensitive: the CIFAR defaults give another loss.
    model.pretrained_cfg.update(mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert evaluate(model, data, split="train").loss != pytest.approx(through_api.loss)


def _write_interrupting_module(directory: Path) -> None:
    """A user's module registering ResNet-20 that presses Ctrl-C in its 25th training step."""
    (directory / "interrupting_models.py").write_text(
        "import os, signal\n"
        "import resnetlib as rl\n"
        "\n"
        "@rl.register_model('interrupting_resnet20')\n"
        "def interrupting_resnet20(**overrides):\n"
        "    model = rl.resnet20(**overrides)\n"
        "    calls = [0]\n"
        "    def hook(module, inputs):\n"
        "        if module.training:\n"
        "            calls[0] += 1\n"
        "            if calls[0] == 25:\n"
        "                os.kill(os.getpid(), signal.SIGINT)\n"
        "    model.register_forward_pre_hook(hook)\n"
        "    return model\n"
    )


def test_ctrl_c_then_resume_from_the_directory_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's model (--import) trains; Ctrl-C saves and names the resume command; the
    resumed run needs only --out (and the --import it trusts: a run directory never
    imports code itself) and ends bit-identical to an uninterrupted one."""
    _write_interrupting_module(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    common = [*DIGITS8, "--val-size", "100", "--iterations", "40", "--device", "cpu"]
    argv = ["train", "interrupting_resnet20", "--import", "interrupting_models", *common]
    code, _, err = run([*argv, "--out", str(out)], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted at iteration 25; resume with: resnetlib train --out {out} --resume "
        "--import interrupting_models"
    )
    assert "Traceback" not in err
    info = json.loads((out / "run.json").read_text())
    assert info["split"] == {"train": 1400, "val": 100, "test": 297}
    assert info["data"]["val_size"] == 100
    assert info["command"]["model"]["imports"] == ["interrupting_models"]
    # Other options on resume are refused, naming the difference.
    code, _, err = run(["train", "--out", str(out), "--resume", "--lr", "0.5"], capsys)
    assert "--lr: the run's 0.1, now 0.5" in one_line_error(code, err)  # the recipe's value
    # The same values as the run's record pass the comparison (then --import is asked for).
    again = ["--lr", "0.1", "--seed", "0", "--iterations", "40", "--val-size", "100"]
    code, _, err = run(["train", "--out", str(out), "--resume", *again], capsys)
    assert "--resume --import interrupting_models" in one_line_error(code, err)
    code, _, err = run(["train", "--out", str(out), "--resume", "--no-progress"], capsys)
    assert "--resume --import interrupting_models" in one_line_error(code, err)
    resume = ["train", "--out", str(out), "--resume", "--import", "interrupting_models"]
    code, stdout, _ = run([*resume, "--no-progress"], capsys)
    assert code == 0
    assert "after 40 iterations" in stdout
    straight = tmp_path / "straight"
    code, _, _ = run(["train", "resnet20", *common, "--out", str(straight)], capsys)
    assert code == 0
    resumed, whole = rl.load(out / "final.pt"), rl.load(straight / "final.pt")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert (out / "best.pt").is_file()
    # evaluate takes the run's data and split from run.json: 297 test, 100 validation.
    code, stdout, _ = run(["evaluate", str(out / "final.pt")], capsys)
    assert code == 0
    assert "on 297 images of digits" in stdout
    assert "top-5 accuracy" in stdout
    code, stdout, _ = run(["evaluate", str(out / "best.pt"), "--split", "val"], capsys)
    assert code == 0
    assert "on 100 images" in stdout


def test_fine_tuning_pretrained_weights_from_the_command_line(
    published: str,
    cifar: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start = rl.create_model("resnet20", pretrained="test")
    out = tmp_path / "tuned"
    argv = ["train", "resnet20", "--pretrained-tag", "test", "--data", str(cifar)]
    argv += ["--classes", "0,1,2,3,4", "--num-classes", "5", "--freeze", "1", "--lr", "0.01"]
    argv += ["--iterations", "3", "--batch-size", "10", "--val-size", "0", "--no-progress"]
    code, _, err = run([*argv, "--out", str(out)], capsys)
    assert code == 0, err
    assert "fc: a new 5-class head (the weights' 10-class head was left out)" in err
    assert "frozen (weights fixed, norms in eval mode): conv1, bn1, layer1" in err
    tuned = rl.load(out / "final.pt")
    assert tuned.fc.out_features == 5
    assert tuned.spec.shortcut == "A_both"  # akamaster's option A, kept by the checkpoint
    before, after = start.state_dict(), tuned.state_dict()
    for key in after:
        if key.startswith(("conv1.", "bn1.", "layer1.")):
            assert torch.equal(before[key], after[key]), key  # frozen, norms included
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    # The publisher's normalization and the classes trained on travel with the weights.
    assert tuned.pretrained_cfg["mean"] == IMAGENET_MEAN
    assert tuned.pretrained_cfg["label_names"] == ["airplane", "automobile", "bird", "cat", "deer"]
    # A checkpoint alone exports, though its shortcut is not resnet20's default.
    target = tmp_path / "tuned.pt2"
    code, _, err = run(
        ["export", str(out / "final.pt"), "--format", "pt2", "--out", str(target)], capsys
    )
    assert code == 0, err
    assert target.is_file()
    # Evaluating the 5-class model on all 10 classes is one line naming both.
    code, _, err = run(["evaluate", str(out / "final.pt"), "--data", str(cifar)], capsys)
    assert "the model has 5 classes and cifar10 has 10" in one_line_error(code, err)


def test_splits_that_do_not_fit_say_where_the_images_went(
    cifar: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["train", "resnet20", "--data", str(cifar), "--out", str(tmp_path / "r")]
    code, _, err = run(argv, capsys)  # a tenth, leaving a batch: here none can be held out
    line = one_line_error(code, err)
    assert "training split (100 images, after 0 were held out for validation)" in line
    assert "--batch-size" in line
    code, _, err = run([*argv, "--val-size", "200"], capsys)
    line = one_line_error(code, err)
    assert "cannot hold out 200 images for validation from a training split of 100" in line
    code, _, err = run([*argv, "--val-size", "20"], capsys)
    line = one_line_error(code, err)
    assert "training split (80 images, after 20 were held out for validation)" in line
    assert "smaller than one batch of 128" in line
    # a recipe file's val_size is held out as it is, as --val-size is: refused, not shrunk
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"val_size": 90, "batch_size": 16}')
    code, _, err = run([*argv, "--recipe", str(recipe), "--iterations", "1"], capsys)
    line = one_line_error(code, err)
    assert "training split (10 images, after 90 were held out for validation)" in line
    assert "smaller than one batch of 16" in line
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_evaluate_without_data_or_a_run_refuses_to_guess(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rl.save(rl.resnet20(), tmp_path / "loose.pt")
    code, _, err = run(["evaluate", str(tmp_path / "loose.pt")], capsys)
    line = one_line_error(code, err)
    assert "--data" in line
    assert "run.json" in line


def test_predict_prints_named_top_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from resnetlib.deploy.preprocess import read_images

    out = tmp_path / "run"
    code, _, _ = run(
        ["train", "resnet20", *DIGITS8, "--iterations", "15", "--out", str(out)], capsys
    )
    assert code == 0
    images = []
    for i, value in enumerate((0, 128, 255)):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(path)
        images.append(path)
    code, stdout, _ = run(["predict", str(out / "final.pt"), *map(str, images)], capsys)
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 3
    model = rl.load(out / "final.pt").eval()
    x = read_images(images, model.pretrained_cfg)
    assert x.shape == (3, 3, 8, 8)  # the size the model trained at
    with torch.no_grad():
        best = model(x).argmax(1).tolist()
    for line, path, index in zip(lines, images, best, strict=True):
        assert line.startswith(f"{path}: {index} ")  # digits' class names are "0".."9"
        assert line.count("%") == 5
    code, _, err = run(["predict", str(out / "final.pt"), str(tmp_path / "none.png")], capsys)
    assert "none.png: no such image file" in one_line_error(code, err)


def test_predict_and_train_refuse_a_model_without_classes_or_finite_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    image = tmp_path / "img.png"
    Image.fromarray(np.full((8, 8, 3), 99, dtype=np.uint8)).save(image)
    model = rl.resnet20(widths=(4, 8, 8), num_classes=10)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    rl.save(model, tmp_path / "nan.pt")
    code, out, err = run(["predict", str(tmp_path / "nan.pt"), str(image)], capsys)
    line = one_line_error(code, err)
    assert "outputs are not finite (NaN or inf)" in line
    assert "weights hold NaN" in line
    assert "%" not in out
    out_dir = tmp_path / "tnan"
    argv = ["train", "--checkpoint", str(tmp_path / "nan.pt"), *DIGITS8, "--iterations", "2"]
    code, _, err = run([*argv, "--out", str(out_dir)], capsys)
    line = one_line_error(code, err)
    assert "starting weights hold NaN or inf" in line
    assert "lr" not in line
    assert not out_dir.exists()
    code, out, err = run(["predict", "resnet20", "--num-classes", "0", str(image)], capsys)
    assert "no classifier head (num_classes 0)" in one_line_error(code, err)
    assert "%" not in out
    argv = ["train", "resnet20", "--num-classes", "0", *DIGITS8, "--iterations", "2"]
    code, _, err = run([*argv, "--out", str(out_dir)], capsys)
    line = one_line_error(code, err)
    assert "the model has 0 classes and digits has 10" in line
    assert "--classes" not in line
    assert not out_dir.exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "summary", "predict"])
def test_every_model_command_takes_the_same_model_options(command: str) -> None:
    from resnetlib.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    options = {opt for action in sub.choices[command]._actions for opt in action.option_strings}
    expected = {"--import", "--pretrained", "--checkpoint"}
    expected |= {"--" + name.replace("_", "-") for name in rl.ModelOverrides.__annotations__}
    assert expected <= options


def test_debug_shows_the_traceback_and_long_messages_keep_their_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(["--debug", "summary", "resnet7"], capsys)
    assert code == 2
    assert "Traceback" in err
    # A weight mismatch lists its keys: more than the first line survives.
    state = rl.resnet20().state_dict()
    del state["layer2.0.bn1.weight"], state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    argv = ["summary", "resnet20", "--checkpoint", str(tmp_path / "partial.pth")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "Traceback" not in err
    assert "layer1.0.conv1.weight" in err
    assert "layer2.0.bn1.weight" in err
    assert len(err.strip().splitlines()) > 1


def test_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    first = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "export", "reproduce"):
        assert command in first
    assert "list models and summarize one" not in first


def test_an_image_dataset_repr_is_short() -> None:
    data = load_data("digits", image_size=8)
    assert repr(data.train) == "ImageDataset(name='digits', 1500 images of 3x8x8, 10 classes)"
    assert sys.getsizeof(repr(data)) < 1000
