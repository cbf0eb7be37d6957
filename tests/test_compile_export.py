"""torch.compile, torch.export and ONNX for every registered model and every option.

"Every registered model" is checked on its own spec with every stage cut to ONE block
(tests/deploy_cases.py): the same block, stem, shortcut, norm, activation and options, so
the same module types and code paths reach dynamo and the exporter, while resnet1202,
preact_resnet1001 and resnet152 trace in a second instead of minutes. Models whose cut
specs coincide (resnet20 ... resnet1202) are checked once, under the first name. Variants
add drop path, dilation, the other shortcuts, norms and an activation. Inductor (real
compilation, slow on a CPU) compiles one tiny net per block family (two stages, base
width 4), all four in one call.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import resnetlib as rl
from resnetlib.deploy.export import export_onnx, export_program, export_pt2

from .deploy_cases import FAMILIES, case_spec, distinct_cases, input_for, randomize_norms, shrink

CASES = distinct_cases(blocks=1)
IDS = [name for name, _ in CASES]


def _build(name: str, blocks: int = 1) -> rl.ResNet:
    torch.manual_seed(0)
    return rl.build(shrink(case_spec(name), blocks))


@pytest.mark.parametrize(("name", "sharing"), CASES, ids=IDS)
def test_compiles_in_one_graph(name: str, sharing: tuple[str, ...]) -> None:
    """``torch.compile(fullgraph=True)`` would succeed: dynamo finds no graph break."""
    model = _build(name)
    x = input_for(model.spec)
    for training in (True, False):
        model.train(training)
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, (sharing, training, explanation.break_reasons)
        assert explanation.graph_count == 1


@pytest.mark.parametrize(("name", "sharing"), CASES, ids=IDS)
def test_export_with_dynamic_batch(name: str, sharing: tuple[str, ...]) -> None:
    model = _build(name).eval()
    program = export_program(model, (model.spec.in_channels, 32, 32)).module()
    for batch in (1, 3):
        x = input_for(model.spec, batch=batch)
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((1, 16, 16), r"input_size \(1, 16, 16\) has 1 channels; the model takes 3"),
        ((16, 16), r"input_size must be \(channels, height, width\).*got \(16, 16\)"),
        ("3,16,16", r"input_size must be \(channels, height, width\).*got '3,16,16'"),
        ((3, 16.5, 16), r"input_size must be \(channels, height, width\).*got \(3, 16.5, 16\)"),
        ((3, 0, 16), r"sides up to 8,192.*got \(3, 0, 16\)"),
    ],
)
def test_export_functions_check_input_size(size: object, message: str, tmp_path: Path) -> None:
    """One check (the CLI's --input too): a ValueError naming input_size, what is allowed and
    the model's channels, never a deep conv error, an unpacking error or a silent truncation."""
    model = rl.cifar_resnet(8, widths=(4, 8, 8))
    for export in (
        lambda: export_program(model, size),  # type: ignore[arg-type]
        lambda: export_pt2(model, tmp_path / "x.pt2", size),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match=message) as error:
            export()
        assert "3" in str(error.value)  # the model's in_channels
    assert not (tmp_path / "x.pt2").exists()


def _tiny(name: str) -> rl.ResNetSpec:
    """``name``'s spec at base width 4, its first two stages of one block each."""
    spec = shrink(rl.create_model(name, base_channels=4).spec, 1)
    return replace(spec, stages=spec.stages[:2])


class Families(nn.Module):
    """One tiny net per block family, run side by side: one compilation for all four."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.nets = nn.ModuleList(rl.build(_tiny(name)) for name in FAMILIES.values())
        for net in self.nets:
            randomize_norms(net)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(net(x) for net in self.nets)


def _assert_all_close(actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> None:
    assert len(actual) == len(expected) == len(FAMILIES)
    for family, a, e in zip(FAMILIES, actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5, msg=family)


def test_compiled_fast_path_matches_eager() -> None:
    """Inductor with freezing (``optimize_for_inference(compile=True)``), end to end."""
    model = Families().eval()
    x = torch.randn(2, 3, 16, 16)
    fast = rl.deploy.optimize_for_inference(model, compile=True, example_input=x)
    with torch.no_grad():
        _assert_all_close(fast(x), model(x))


def test_compiled_training_step_matches_eager() -> None:
    """A fullgraph training step through AOT autograd: outputs, gradients and batch-norm
    statistics equal eager's. (The ``aot_eager`` backend runs everything inductor gets,
    minus code generation, which ``test_compiled_fast_path_matches_eager`` covers.)
    """
    model = Families().nets[0].train()
    twin = Families().nets[0].train()
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    model(x).square().mean().backward()
    compiled(x).square().mean().backward()
    for (key, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert p.grad is not None, key
        assert q.grad is not None, key
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=key)
    for (key, b), c in zip(model.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(c, b, msg=key)


def test_pt2_round_trip(tmp_path: Path) -> None:
    model = Families().nets[-1].eval()
    path = tmp_path / "model.pt2"
    export_pt2(model, path, (3, 16, 16))
    loaded = torch.export.load(path).module()
    for batch in (1, 5):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


def test_onnx_dynamic_batch_runs_in_onnxruntime(tmp_path: Path) -> None:
    """One ONNX file holding a net of each family (one export), run at batch 1 and 5."""
    ort = pytest.importorskip("onnxruntime")
    model = Families().eval()
    path = tmp_path / "families.onnx"
    export_onnx(model, path, (3, 16, 16), output_names=list(FAMILIES))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, 16, 16)
        outputs = session.run(list(FAMILIES), {"input": x.numpy()})
        with torch.no_grad():
            _assert_all_close(tuple(torch.from_numpy(out) for out in outputs), model(x))
