"""int8 post-training quantization (resnetlib.deploy.quantize): agreement with the float
model on a net trained here on the built-in digits, every block family, the report of
what stayed float, optimize_for_inference(int8=True), and the refusals."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from typing import Any

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.deploy.export import MissingDependencyError

from .deploy_cases import case_spec, randomize_norms, shrink

pytest.importorskip("torchao")

quantize = rl.deploy.quantize
quantize_module = importlib.import_module("resnetlib.deploy.quantize")


@pytest.fixture(scope="module")
def trained() -> tuple[rl.ResNet, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ResNet-8 (widths 8/16/32) trained on the 16x16 digits: model, calibration images,
    test images and test labels, normalized as fit() trains (the model's pretrained_cfg).
    """
    from resnetlib.train import DIGITS, fit, load_data

    data = load_data("digits")
    torch.manual_seed(0)
    model = rl.cifar_resnet(8, widths=(8, 16, 32), num_classes=10)
    recipe = dataclasses.replace(DIGITS, batch_size=64, epochs=6)
    result = fit(model, data, recipe, progress=False, device="cpu")
    mean = torch.tensor(result.model.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(result.model.pretrained_cfg["std"]).view(3, 1, 1)

    def images(split: Any) -> torch.Tensor:
        return (split.images.to(torch.float32) / 255.0 - mean) / std

    return result.model.eval(), images(data.train)[:256], images(data.test), data.test.labels


def test_int8_agrees_with_float_on_a_trained_model(
    trained: tuple[rl.ResNet, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    model, calibration, x, labels = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    int8 = quantize(model, calibration.split(64))
    report = int8.report
    with torch.no_grad():
        expected = model(x).argmax(1)
        actual = int8(x).argmax(1)
    float_accuracy = float((expected == labels).float().mean())
    int8_accuracy = float((actual == labels).float().mean())
    assert float_accuracy > 0.9, float_accuracy  # the model learned: the check means something
    assert float((actual == expected).float().mean()) >= 0.98
    assert abs(int8_accuracy - float_accuracy) <= 0.02
    # Every convolution and the classifier run in int8; the model is untouched.
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sorted(report.quantized) == sorted(layers)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert int8.spec == model.spec
    assert not any(p.requires_grad for p in int8.parameters())
    # Any batch size, one of them a single image.
    with torch.no_grad():
        torch.testing.assert_close(int8(x[:1]), int8(x[:5])[:1], rtol=1e-4, atol=1e-4)


FAMILY_CASES = {
    "basic_option_A": "resnet20",
    "bottleneck": "resnet50",
    "preact_basic": "preact_resnet110",
    "preact_bottleneck": "preact_resnet164",
    "resnet_d": "resnet18d",
    "wide": "wide_resnet50_2",
}


def test_counting_an_int8_model_is_refused_naming_the_float_model(
    trained: tuple[rl.ResNet, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """count_parameters said 698 for an int8 ResNet-8 (its float biases: the weights are
    packed buffers) and count_flops raised NotImplementedError from a meta copy."""
    model, calibration, _, _ = trained
    int8 = quantize(model, calibration.split(128))
    for count in (rl.count_parameters, rl.count_flops):
        with pytest.raises(ValueError, match=r"an int8 model packs its weights.*float model"):
            count(int8)
    assert rl.count_parameters(model) > 0  # the float model counts as before


@pytest.mark.parametrize("side", [14, 15])
def test_option_a_quantizes_at_sizes_not_a_multiple_of_four(
    trained: tuple[rl.ResNet, torch.Tensor, torch.Tensor, torch.Tensor], side: int
) -> None:
    """Option A's zero-padded shortcut reached oneDNN's fused sum in a layout it refuses at
    such sizes ("For post op sum, accum tensor must be contiguous"), and a channels-last
    model (as fit trains on the CPU) traced guards tying a dynamic size to the calibration's
    ("Guard failed")."""
    model, calibration, x, _ = trained
    assert model.spec.shortcut == "A"
    resized = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear")
    traced = quantize(model, [resized[:64]])
    dynamic = quantize(model, calibration.split(128), dynamic_size=True)
    with torch.no_grad():
        expected = model(resized).argmax(1)
        for int8 in (traced, dynamic):
            agreement = float((int8(resized).argmax(1) == expected).float().mean())
            assert agreement > 0.9, agreement


@pytest.mark.parametrize("name", list(FAMILY_CASES.values()), ids=list(FAMILY_CASES))
def test_every_family_quantizes(name: str) -> None:
    torch.manual_seed(0)
    model = rl.build(shrink(case_spec(name), 1))
    randomize_norms(model)
    model.eval()
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.randn(8, 3, 32, 32, generator=generator) for _ in range(2)]
    int8 = quantize(model, calibration)
    report = int8.report
    x = torch.randn(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        expected, actual = model(x), int8(x)
    assert actual.shape == expected.shape
    relative = float((actual - expected).norm() / expected.norm())
    assert relative < 0.15, relative
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sorted(report.quantized) == sorted(convs)
    leftovers = dict(report.float)
    if model.spec.block.startswith("preact"):
        # The norms that normalize a block's input have no convolution to fold into.
        assert any(n.endswith(".bn1") and "BatchNorm2d" in ops for n, ops in leftovers.items())


def test_a_user_block_quantizes() -> None:
    """A registered user block that keeps the block contract (its convolutions and norms in
    sub-modules of its own) quantizes like the built-ins."""
    from .test_fuse import NestedBlock

    rl.register_block("quantize_test_block", NestedBlock)
    try:
        spec = rl.ResNetSpec(
            stages=(rl.StageSpec(2, 8), rl.StageSpec(2, 16, stride=2)),
            block="quantize_test_block",
            stem=rl.StemSpec("cifar", 8),
            num_classes=5,
        )
        torch.manual_seed(0)
        model = rl.build(spec)
    finally:
        rl.nn.BLOCKS.unregister("quantize_test_block")
    randomize_norms(model)
    model.eval()
    int8 = quantize(model, [torch.randn(8, 3, 16, 16)])
    report = int8.report
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected, actual = model(x), int8(x)
    assert float((actual - expected).norm() / expected.norm()) < 0.15
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sorted(report.quantized) == sorted(convs)
    assert any(".first.conv" in name for name in report.quantized)


def test_the_report_lists_what_stayed_float() -> None:
    torch.manual_seed(0)
    model = rl.resnet20(base_channels=4, norm="groupnorm", act="silu").eval()
    int8 = quantize(model, [torch.randn(4, 3, 16, 16)])
    report = int8.report
    leftovers = dict(report.float)
    groupnorms = [n for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)]
    assert groupnorms
    assert all("group_norm" in leftovers[n] for n in groupnorms)
    assert "silu" in leftovers["relu"]
    assert "constant_pad_nd" in leftovers["layer2.0.downsample"]  # option A's zero channels
    assert len(report.quantized) == 20  # 19 convolutions and the classifier
    assert int8.report == report
    text = str(report)
    assert "20 convolutions and linear layers run in int8" in text
    assert "layer1.0.bn1: GroupNorm (native_group_norm)" in text


def test_optimize_for_inference_int8() -> None:
    torch.manual_seed(0)
    model = rl.resnet20(base_channels=4).eval()
    calibration = [torch.randn(4, 3, 16, 16)]
    fast = rl.deploy.optimize_for_inference(model, int8=True, calibration=calibration)
    assert isinstance(fast, rl.deploy.Int8Model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert fast(x).shape == (2, 10)
    with pytest.raises(ValueError, match="int8=True needs calibration"):
        rl.deploy.optimize_for_inference(model, int8=True)
    with pytest.raises(ValueError, match="only with int8=True"):
        rl.deploy.optimize_for_inference(model, calibration=calibration)


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ([], "calibration is empty"),
        (torch.randn(2, 3, 16, 16), "not one tensor"),
        ([torch.randn(3, 16, 16)], r"4-d \(N, C, H, W\).*shape \(3, 16, 16\)"),
        # were blamed on the model ("torch.export cannot capture"), or a raw guard failure
        ([torch.randn(4, 1, 16, 16)], "calibration batches have 1 channels; the model takes 3"),
        (
            [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 20, 20)],
            r"share one size.*the first is 16x16, another 20x20.*dynamic_size=True",
        ),
    ],
)
def test_bad_calibration(calibration: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quantize(rl.resnet20(base_channels=4), calibration)


def test_an_int8_model_refuses_another_size_in_one_clear_line() -> None:
    """A call at a size other than the calibration's was torch's raw guard failure."""
    int8 = quantize(rl.resnet(layers=(1, 1), base_channels=8).eval(), [torch.randn(4, 3, 16, 16)])
    assert int8(torch.randn(3, 3, 16, 16)).shape == (3, 1000)
    with pytest.raises(ValueError, match=r"takes 16x16 images .* got 32x32.*dynamic_size=True"):
        int8(torch.randn(2, 3, 32, 32))


def test_refuses_an_old_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "__version__", "2.7.1+cpu")
    with pytest.raises(RuntimeError, match=r"needs torch >= 2\.8.*this is torch 2\.7\.1"):
        quantize(rl.resnet20(base_channels=4), [torch.randn(2, 3, 16, 16)])


def test_refuses_without_torchao(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_torchao(name: str, *args: Any) -> Any:
        return None if name == "torchao" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_torchao)
    with pytest.raises(MissingDependencyError, match=r'pip install "resnetlib\[quantize\]"'):
        quantize_module.check_quantize_support()


def test_compiled_int8_matches_the_lowered_one() -> None:
    """``compile=True``: inductor with freezing (kept on for each recompilation: a new batch
    size compiles again) gives what the lowered int8 model gives."""
    torch.manual_seed(0)
    model = rl.cifar_resnet(8, widths=(4, 8, 16)).eval()
    calibration = [torch.randn(4, 3, 16, 16)]
    lowered = quantize(model, calibration)
    compiled = quantize(model, calibration, compile=True)
    assert compiled.freezing
    for batch in (4, 3):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            expected = lowered(x)
            torch.testing.assert_close(compiled(x), expected, rtol=0.05, atol=0.05)


def test_calibration_batches_from_the_digits() -> None:
    """The CLI's --calibrate: images of a data set, resized to the model's input size and
    normalized by its pretrained_cfg."""
    pytest.importorskip("sklearn")
    from resnetlib.train import load_data

    model = rl.resnet20()
    images = load_data("digits").train.images  # uint8, 16x16
    batches = quantize_module.calibration_batches(images, model, size=100, batch_size=64)
    assert [tuple(b.shape) for b in batches] == [(64, 3, 32, 32), (36, 3, 32, 32)]
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    pixels = torch.cat(batches) * std + mean  # back to [0, 1]
    assert float(pixels.min()) >= -1e-5
    assert float(pixels.max()) <= 1 + 1e-5
    assert float(pixels.max()) > 0.9  # digits are white on black: some full-scale pixels
    with pytest.raises(ValueError, match="calibration size must be an int >= 1; got 0"):
        quantize_module.calibration_batches(images, model, size=0)
    with pytest.raises(ValueError, match="calibration batch_size must be an int >= 1; got 0"):
        quantize_module.calibration_batches(images, model, batch_size=0)  # was torch's error
