"""``resnetlib export``: pt2 and ONNX files from the command line, and its one-line errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import resnetlib as rl
from resnetlib.cli import main


def test_pt2_from_a_checkpoint_fused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = rl.resnet20(num_classes=7)
    checkpoint = tmp_path / "model.pt"
    rl.save(model, checkpoint)
    out = tmp_path / "model.pt2"
    argv = ["export", "resnet20", "--format", "pt2", "--checkpoint", str(checkpoint)]
    assert main([*argv, "--fuse", "--input", "3,16,16", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    program = torch.export.load(out)
    convs_with_bias = [k for k in program.state_dict if k.endswith(".bias") and "conv" in k]
    assert convs_with_bias  # folded
    loaded = program.module()
    for batch in (1, 4):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model.eval()(x), rtol=1e-4, atol=1e-5)


def test_onnx(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "plain.onnx"
    argv = ["export", "plain20", "--format", "onnx", "--fuse", "--input", "1,8,8"]
    assert main([*argv, "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [1, 8, 8]
    (logits,) = session.run(["output"], {"input": torch.randn(3, 1, 8, 8).numpy()})
    assert logits.shape == (3, 10)


def test_a_backbones_onnx_outputs_are_named_after_its_maps(tmp_path: Path) -> None:
    """A features-only export named its first map "output" and the others by torch's nodes."""
    ort = pytest.importorskip("onnxruntime")
    from resnetlib.deploy.export import export_onnx

    backbone = rl.create_model("resnet20", features_only=True, out_indices=(1, 3)).eval()
    export_onnx(backbone, tmp_path / "maps.onnx", (3, 16, 16))
    session = ort.InferenceSession(str(tmp_path / "maps.onnx"), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == ["layer1", "layer3"]
    x = torch.randn(2, 3, 16, 16)
    maps = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = backbone(x)
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "resnet21", "--format", "pt2"], "resnet20"),  # close matches listed
        (["export", "resnet20", "--format", "pt2", "--checkpoint", "missing.pt"], "no such file"),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a if a != "missing.pt" else str(tmp_path / a) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("resnetlib export: error:")
    assert message in err


def test_bad_out_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["export", "resnet20", "--format", "pt2", "--out"]
    assert main([*base, str(tmp_path / "nowhere" / "x.pt2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    # a path with a line break or an escape sequence is still one printable line
    assert main([*base, str(tmp_path / "no\nwhere\x1b[2J" / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no\\x0awhere\\x1b[2J" in err


def test_a_missing_optional_dependency_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def without_onnxscript(name: str, *args: Any) -> Any:
        return None if name == "onnxscript" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_onnxscript)
    out = tmp_path / "x.onnx"
    assert main(["export", "resnet20", "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert 'needs onnxscript: pip install "resnetlib[export]"' in err
    assert not out.exists()


def test_import_resnetlib_stays_light() -> None:
    """``import resnetlib`` (and the CLI module) load no exporter beyond what torch does."""
    code = (
        "import sys, torch; before = set(sys.modules); import resnetlib, resnetlib.cli; "
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('onnx', 'onnxscript', 'onnxruntime') or m.startswith(('torch.onnx', 'torch.export', "
        "'resnetlib.deploy.export', 'resnetlib.deploy.cli'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_onnx_int8_and_dynamic_size_run_in_onnxruntime(tmp_path: Path) -> None:
    """``--int8 --calibrate digits`` writes QDQ int8 ONNX (dynamic batch); ``--dynamic-size``
    a float file whose height and width are dynamic: each runs at two sizes."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("torchao")
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = rl.resnet20().eval()
    checkpoint = tmp_path / "model.pt"
    rl.save(model, checkpoint)
    base = ["export", "resnet20", "--format", "onnx", "--checkpoint", str(checkpoint)]
    int8 = tmp_path / "int8.onnx"
    calibrate = ["--int8", "--calibrate", "digits", "--calibration-size", "64"]
    assert main([*base, *calibrate, "--out", str(int8)]) == 0
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = torch.randn(batch, 3, 32, 32)
        (logits,) = session.run(["output"], {"input": x.numpy()})
        with torch.no_grad():
            expected = model(x)
        error = float((torch.from_numpy(logits) - expected).norm() / expected.norm())
        assert error < 0.1, error
    dynamic = tmp_path / "dynamic.onnx"
    assert main([*base, "--dynamic-size", "--out", str(dynamic)]) == 0
    session = ort.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    for batch, size in ((1, 32), (3, 48)):
        x = torch.randn(batch, 3, size, size)
        (logits,) = session.run(["output"], {"input": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=1e-4, atol=1e-4)


def test_int8_needs_onnx_and_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.onnx")
    for argv in (
        ["export", "resnet20", "--format", "onnx", "--int8", "--out", out],
        ["export", "resnet20", "--format", "pt2", "--int8", "--calibrate", "digits", "--out", out],
        ["export", "resnet20", "--format", "onnx", "--calibrate", "digits", "--out", out],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "--int8" in err


def test_onnx_export_prints_one_line(tmp_path: Path) -> None:
    """No torchvision-missing lines from the exporter, no FutureWarnings: just the result."""
    pytest.importorskip("onnxscript")
    out = tmp_path / "x.onnx"
    argv = ["export", "resnet20", "--format", "onnx", "--out", str(out)]
    code = "import sys; from resnetlib.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    )
    assert done.stderr == ""
    assert done.stdout == (
        f"wrote {out} (onnx, dynamic batch, random weights (no --pretrained or --checkpoint))\n"
    )


_BRANCHY = """
import resnetlib as rl
from resnetlib.nn.blocks import BasicBlock


class Branchy(BasicBlock):
    def forward(self, x):
        out = super().forward(x)
        return out if out.mean() > 0 else -out  # on a tensor's value: no graph captures it


rl.register_block("test_branchy", Branchy)
"""


@pytest.mark.parametrize("form", ["pt2", "onnx"])
def test_a_model_export_cannot_capture_is_one_line(form: str, tmp_path: Path) -> None:
    """torch printed its partial graph (80 lines and more) before a many-line error."""
    if form == "onnx":
        pytest.importorskip("onnxscript")
    (tmp_path / "branchymod.py").write_text(_BRANCHY)
    argv = ["export", "resnet20", "--import", "branchymod", "--block", "test_branchy"]
    argv += ["--format", form, "--out", str(tmp_path / f"x.{form}")]
    code = "import sys; from resnetlib.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr[:2000]
    assert "resnetlib export: error: cannot export" in done.stderr
    assert "(GuardOnDataDependentSymNode: Could not guard on data-dependent" in done.stderr
    assert not (tmp_path / f"x.{form}").exists()


def test_int8_on_an_old_torch_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "__version__", "2.7.1")
    argv = ["export", "resnet20", "--format", "onnx", "--int8", "--calibrate", "digits"]
    assert main([*argv, "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "needs torch >= 2.8" in err


def test_export_replaces_only_an_export_of_its_format_named_by_its_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "final.pt"
    rl.save(rl.resnet20(widths=(4, 8, 8)), checkpoint)
    kept = checkpoint.read_bytes()
    base = ["export", str(checkpoint), "--format"]
    for form, out, message in (
        ("onnx", tmp_path / "final.pt", "a --format onnx file's name ends in .onnx"),
        ("onnx", tmp_path / "o.pt2", "a --format onnx file's name ends in .onnx"),
        ("pt2", tmp_path / "p2.onnx", "a --format pt2 file's name ends in .pt2"),
    ):
        assert main([*base, form, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert message in err, err
    assert checkpoint.read_bytes() == kept
    assert not (tmp_path / "o.pt2").exists()
    assert not (tmp_path / "p2.onnx").exists()
    victims = {"pt2": tmp_path / "v.pt2", "onnx": tmp_path / "v.onnx"}
    for form, victim in victims.items():
        victim.write_bytes(kept)  # a checkpoint under an export's name
        assert main([*base, form, "--out", str(victim)]) == 2
        err = capsys.readouterr().err
        assert "would be overwritten; choose another --out or delete it" in err, err
        assert victim.read_bytes() == kept
        victim.unlink()
    assert main([*base, "pt2", "--out", str(victims["pt2"])]) == 0
    assert main([*base, "pt2", "--out", str(victims["pt2"])]) == 0  # a previous export: replaced
    # a link is replaced itself, not refused as "an existing file" nor written through
    (tmp_path / "link.pt2").symlink_to(victims["pt2"])
    (tmp_path / "dangling.pt2").symlink_to(tmp_path / "nowhere.pt2")
    exported = victims["pt2"].read_bytes()
    for link in (tmp_path / "link.pt2", tmp_path / "dangling.pt2"):
        assert main([*base, "pt2", "--out", str(link)]) == 0, capsys.readouterr().err
        assert link.is_file()
        assert not link.is_symlink()
    assert victims["pt2"].read_bytes() == exported
    assert not (tmp_path / "nowhere.pt2").exists()


def test_every_format_checks_its_output_directory_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One check of --out's directory for every format (root may write anywhere: os.access
    stands in for a read-only directory)."""
    from resnetlib.deploy import cli

    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    for form, name in (("hf", "folder"), ("pt2", "m.pt2"), ("onnx", "m.onnx")):
        argv = ["export", "resnet20", "--format", form, "--out", str(tmp_path / name)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"directory {tmp_path} is not writable" in err, err
    assert not any(tmp_path.iterdir())


def test_export_refuses_weights_that_are_not_finite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export wrote a file of NaN weights that evaluate and predict then refused."""
    model = rl.resnet20(widths=(4, 8, 8))
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    rl.save(model, tmp_path / "nan.pt")
    for form, out in (("pt2", "m.pt2"), ("hf", "folder")):
        argv = ["export", str(tmp_path / "nan.pt"), "--format", form, "--out", str(tmp_path / out)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "weights hold NaN or inf (fc.bias)" in err, err
        assert not (tmp_path / out).exists()
