"""Exports carry the model's contract (issue 25): ONNX ``metadata_props`` and ``.pt2`` extra
files hold the data config, spec and version; ``evaluate`` and ``predict`` run an ONNX file
fed as its metadata says and agree with the checkpoint it came from; ``--int8 --normalize``
takes images in [0, 1]."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

import resnetlib as rl
from resnetlib.cli import main
from resnetlib.core.data_config import CIFAR10_CLASSES
from resnetlib.deploy.contract import export_metadata, read_metadata
from resnetlib.deploy.preprocess import Normalized, class_names

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """ResNet-8 (widths 8/16/32) trained on the 16x16 digits and saved (its pretrained_cfg
    with the digits' statistics and label names), and four test images as PNG files."""
    from PIL import Image

    from resnetlib.train import DIGITS, fit, load_data

    root = tmp_path_factory.mktemp("contract")
    data = load_data("digits")
    torch.manual_seed(0)
    model = rl.cifar_resnet(8, widths=(8, 16, 32), num_classes=10)
    recipe = dataclasses.replace(DIGITS, batch_size=64, epochs=4)
    result = fit(model, data, recipe, progress=False, device="cpu")
    checkpoint = root / "digits.pt"
    rl.save(result.model, checkpoint)
    for i in range(6):
        pixels = data.test.images[i].permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(root / f"image{i}.png")
    return checkpoint, root


def _export(checkpoint: Path, out: Path, *flags: str) -> None:
    assert (
        main(["export", str(checkpoint), "--format", out.suffix[1:], *flags, "--out", str(out)])
        == 0
    )


def _metadata(path: Path) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def _accuracy(text: str) -> tuple[str, str]:
    found = re.search(r"top-1 accuracy ([\d.]+)%.*top-5 accuracy ([\d.]+)%", text)
    assert found is not None, text
    return found.group(1), found.group(2)


def test_onnx_metadata_holds_the_contract(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = trained
    model = rl.load(checkpoint)
    plain, normalized = tmp_path / "plain.onnx", tmp_path / "normalized.onnx"
    _export(checkpoint, plain)
    _export(checkpoint, normalized, "--normalize")
    props = _metadata(plain)
    config = model.pretrained_cfg
    assert json.loads(props["mean"]) == pytest.approx(config["mean"])
    assert json.loads(props["std"]) == pytest.approx(config["std"])
    assert json.loads(props["input_size"]) == [3, 16, 16]
    assert json.loads(props["interpolation"]) == config["interpolation"]
    assert json.loads(props["crop_pct"]) == config["crop_pct"]
    assert json.loads(props["label_names"]) == [str(i) for i in range(10)]
    assert json.loads(props["normalization_in_graph"]) is None
    assert rl.ResNetSpec.from_json(props["spec"]) == model.spec
    assert json.loads(props["resnetlib_version"])
    # With --normalize the graph takes [0, 1]: mean 0 and std 1 for its input, and it says
    # which normalization it applies itself.
    inside = _metadata(normalized)
    assert json.loads(inside["mean"]) == [0.0, 0.0, 0.0]
    assert json.loads(inside["std"]) == [1.0, 1.0, 1.0]
    applied = json.loads(inside["normalization_in_graph"])
    assert applied["mean"] == pytest.approx(config["mean"])
    assert applied["std"] == pytest.approx(config["std"])
    contract = read_metadata(inside, where="normalized.onnx")
    assert contract.takes_unit_range
    assert contract.spec == model.spec


def test_pt2_extra_files_hold_the_contract(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = trained
    out = tmp_path / "model.pt2"
    _export(checkpoint, out, "--normalize")
    files = dict.fromkeys(export_metadata(Normalized(rl.load(checkpoint))), "")
    program = torch.export.load(out, extra_files=files)
    contract = read_metadata(files, where=str(out))
    assert contract.takes_unit_range
    assert contract.config["mean"] == (0.0, 0.0, 0.0)
    assert contract.config["label_names"] == [str(i) for i in range(10)]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = Normalized(rl.load(checkpoint).eval()).eval()(x)
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-4, atol=1e-5)


def test_evaluate_and_predict_agree_on_checkpoint_and_onnx(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, images = trained
    exports = [tmp_path / "plain.onnx", tmp_path / "normalized.onnx"]
    _export(checkpoint, exports[0], "--fuse")
    _export(checkpoint, exports[1], "--normalize")
    capsys.readouterr()
    scores, tops = [], []
    pngs = [str(p) for p in sorted(images.glob("image*.png"))]
    for model in (checkpoint, *exports):
        assert main(["evaluate", str(model), "--data", "digits"]) == 0
        scores.append(_accuracy(capsys.readouterr().out))
        assert main(["predict", str(model), *pngs, "--top", "3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        tops.append([line.split(": ", 1)[1].split(",")[0].split()[0] for line in lines])
    assert float(scores[0][0]) > 80, scores  # the model learned: agreement means something
    assert scores[1] == scores[0]
    assert scores[2] == scores[0]
    assert len(tops[0]) == len(pngs)
    assert tops[1] == tops[0]
    assert tops[2] == tops[0]


def test_int8_normalized_takes_unit_images(trained: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("torchao")
    from resnetlib.train import load_data

    checkpoint, _ = trained
    out = tmp_path / "int8.onnx"
    calibrate = ["--int8", "--calibrate", "digits", "--calibration-size", "256"]
    _export(checkpoint, out, "--normalize", *calibrate)
    props = _metadata(out)
    assert json.loads(props["mean"]) == [0.0, 0.0, 0.0]
    assert json.loads(props["normalization_in_graph"]) is not None
    graph = onnx.load(str(out)).graph
    ops = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in ops
    # Normalization stays float: the input reaches Sub/Mul before any QuantizeLinear.
    first_quantize = ops.index("QuantizeLinear")
    consumers = [node.op_type for node in graph.node if "input" in node.input]
    assert consumers
    assert all(op in ("Sub", "Mul", "Div") for op in consumers), consumers
    assert ops.index(consumers[0]) < first_quantize
    test = load_data("digits").test
    x = test.images.to(torch.float32) / 255.0  # [0, 1], no normalization outside
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": x.numpy()})
    model = Normalized(rl.load(checkpoint).eval()).eval()
    with torch.no_grad():
        expected = model(x).argmax(1)
    actual = torch.from_numpy(logits).argmax(1)
    float_accuracy = float((expected == test.labels).float().mean())
    int8_accuracy = float((actual == test.labels).float().mean())
    assert float_accuracy > 0.8, float_accuracy
    assert float((actual == expected).float().mean()) >= 0.98
    assert abs(int8_accuracy - float_accuracy) <= 0.02


def test_an_export_records_the_size_its_graph_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--input 3,32,32`` of a 16x16 model: the ONNX metadata and .pt2 extra files say
    [3, 32, 32], the size the graph is fixed at, so predict feeds it that; --dynamic-size keeps
    the model's own size; ``--int8`` applies ``--input`` too. A file whose metadata lies gets
    onnxruntime's refusal as one line, exit 2, never a traceback."""
    from PIL import Image

    from resnetlib.core.data_config import set_data_config

    torch.manual_seed(0)
    model = rl.cifar_resnet(8, widths=(4, 8, 8))
    set_data_config(model, {**model.pretrained_cfg, "input_size": (3, 16, 16)})
    checkpoint = tmp_path / "model.pt"
    rl.save(model, checkpoint)
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16), (40, 90, 200)).save(image)
    fixed, dynamic, program = tmp_path / "x32.onnx", tmp_path / "dyn.onnx", tmp_path / "x32.pt2"
    _export(checkpoint, fixed, "--input", "3,32,32")
    _export(checkpoint, dynamic, "--input", "3,32,32", "--dynamic-size")
    _export(checkpoint, program, "--input", "3,32,32")
    assert json.loads(_metadata(fixed)["input_size"]) == [3, 32, 32]
    assert json.loads(_metadata(dynamic)["input_size"]) == [3, 16, 16]
    files = {"input_size": ""}
    torch.export.load(program, extra_files=files)
    assert json.loads(files["input_size"]) == [3, 32, 32]
    capsys.readouterr()
    assert main(["predict", str(fixed), str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    if importlib.util.find_spec("torchao") is not None:
        int8 = tmp_path / "int8.onnx"
        calibrate = ["--int8", "--calibrate", "digits", "--calibration-size", "64"]
        _export(checkpoint, int8, "--input", "3,32,32", *calibrate)
        assert json.loads(_metadata(int8)["input_size"]) == [3, 32, 32]
        session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape[1:] == [3, 32, 32]
    proto = onnx.load(str(fixed))  # as 0.2 wrote it: the graph at 32x32, the metadata 16x16
    for prop in proto.metadata_props:
        if prop.key == "input_size":
            prop.value = "[3, 16, 16]"
    onnx.save(proto, str(fixed))
    capsys.readouterr()
    for argv in (["predict", str(fixed), str(image)], ["evaluate", str(fixed), "--data", "digits"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert f"{fixed}: onnxruntime could not run it on a (" in err, err
        assert "export it again" in err


def test_an_onnx_file_without_metadata_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A self-contained ONNX file whose metadata is gone: nothing says how to feed it."""
    from resnetlib.deploy.export import export_onnx

    out = tmp_path / "bare.onnx"
    export_onnx(rl.cifar_resnet(8, widths=(4, 8, 8)), out, (3, 32, 32))
    proto = onnx.load(str(out))
    assert proto.metadata_props  # exported with the contract ...
    del proto.metadata_props[:]  # ... which is now stripped
    onnx.save(proto, str(out))
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the model is refused first
    capsys.readouterr()
    for argv in (["evaluate", str(out), "--data", "digits"], ["predict", str(out), str(image)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "no resnetlib metadata" in err


def test_external_data_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """torch.onnx.export(model, x, path) keeps the weights beside the file: refused by name,
    since resnetlib reads one file through its reader, never a path the file names."""
    model = rl.cifar_resnet(8, widths=(4, 8, 8)).eval()
    out = tmp_path / "external.onnx"
    torch.onnx.export(model, (torch.rand(2, 3, 32, 32),), str(out), dynamo=True, verbose=False)
    if not list(tmp_path.glob("external.onnx.*")):
        pytest.skip("this torch writes the weights inside the file")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "external data" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-classes", "3"], "--num-classes: an ONNX file"),
        (["--checkpoint", "x.pt"], "--checkpoint: an ONNX file"),
    ],
)
def test_model_options_on_an_onnx_file_are_refused(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"\x08\x07\x12not read")  # ONNX by its first bytes; refused before parsing
    assert main(["evaluate", str(out), "--data", "digits", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err


def test_a_file_that_is_not_onnx_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "junk\nname.onnx"  # the path printed on the same one line
    out.write_bytes(b"\x08\x07\x12junk")  # ONNX by its first bytes, not by its name alone
    assert main(["evaluate", str(out), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "junk\\x0aname.onnx: not an ONNX model" in err


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("std", "[0.0, 1.0, 1.0]", "std"),
        ("mean", "[NaN, 0, 0]", "NaN"),
        ("label_names", '["a"]', "label_names"),
        ("spec", '{"stages": 3}', "spec"),
        ("normalization_in_graph", '{"mean": [0, 0, 0]}', "std"),
    ],
)
def test_bad_metadata_is_refused(key: str, value: str, message: str) -> None:
    model = rl.cifar_resnet(8, widths=(4, 8, 8))
    metadata = export_metadata(Normalized(model))
    read_metadata(metadata, where="ok.onnx")  # the unchanged metadata reads
    with pytest.raises(ValueError, match=message):
        read_metadata({**metadata, key: value}, where="bad.onnx")


@pytest.mark.parametrize("name", ["resnet20.akamaster_cifar10", "resnet18.mm_cifar10"])
def test_cifar10_weights_name_their_classes_in_an_export(name: str) -> None:
    """The registry's CIFAR-10 weights carry CIFAR-10's class names in their pretrained_cfg,
    so an exported file names its outputs as the checkpoint does (not "class 0")."""
    model = rl.create_model(name)  # their configuration; the weights are not needed
    assert model.pretrained_cfg["label_names"] == list(CIFAR10_CLASSES)
    contract = read_metadata(export_metadata(model), where="x.onnx")
    assert contract.config["label_names"] == list(CIFAR10_CLASSES)
    assert class_names(contract.config, 10) == list(CIFAR10_CLASSES)


def test_predict_refuses_an_onnx_file_without_a_head_or_finite_outputs(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, images = trained
    broken = rl.load(checkpoint)
    with torch.no_grad():
        broken.fc.bias.fill_(float("inf"))
    rl.save(rl.cifar_resnet(8, widths=(4, 8, 8), num_classes=0), tmp_path / "headless.pt")
    # the command line refuses to export weights that are not finite; the library writes them
    rl.deploy.export_onnx(broken, tmp_path / "inf.onnx")
    _export(tmp_path / "headless.pt", tmp_path / "headless.onnx")
    for name, message in (
        ("inf", "outputs are not finite (NaN or inf)"),
        ("headless", "no classifier head (num_classes 0)"),
    ):
        capsys.readouterr()
        assert main(["predict", str(tmp_path / f"{name}.onnx"), str(images / "image0.png")]) == 2
        captured = capsys.readouterr()
        assert "%" not in captured.out
        assert message in captured.err
        assert len(captured.err.strip().splitlines()) == 1


def test_every_command_tells_an_onnx_file_by_its_bytes_and_runs_it_on_the_cpu(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, images = trained
    image = str(images / "image0.png")
    (tmp_path / "ckpt_as.onnx").write_bytes(checkpoint.read_bytes())
    (tmp_path / "empty.onnx").write_bytes(b"")
    _export(checkpoint, tmp_path / "m.onnx")
    (tmp_path / "onnx_as.pt").write_bytes((tmp_path / "m.onnx").read_bytes())
    capsys.readouterr()
    assert main(["predict", str(checkpoint), image]) == 0
    expected = capsys.readouterr().out.split(": ", 1)[1]
    for name in ("ckpt_as.onnx", "onnx_as.pt"):  # a checkpoint, an ONNX file, by their bytes
        assert main(["predict", str(tmp_path / name), image]) == 0
        assert capsys.readouterr().out.split(": ", 1)[1] == expected
    assert main(["evaluate", str(tmp_path / "ckpt_as.onnx"), "--data", "digits"]) == 0
    capsys.readouterr()
    for argv in (["summary"], ["evaluate", "--data", "digits"], ["predict", image]):
        assert main([argv[0], str(tmp_path / "empty.onnx"), *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert "empty.onnx: not a checkpoint, state dict or ONNX file" in err, err
    for argv in (["evaluate", "--data", "digits"], ["predict", image]):
        for device in ("cpu:1", "cuda"):
            assert main([argv[0], str(tmp_path / "m.onnx"), *argv[1:], "--device", device]) == 2
            err = capsys.readouterr().err
            assert f"--device {device}: an ONNX file runs on the cpu (onnxruntime)" in err, err
