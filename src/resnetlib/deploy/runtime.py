"""An exported ONNX file, run by onnxruntime and called like the model it came from: it
carries ``spec``, ``num_classes`` and ``pretrained_cfg`` (from its contract), so ``evaluate``
and ``predict`` feed it as they feed a checkpoint. Needs ``pip install "resnetlib[export]"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..common import PathLike, first_line, printable
from ..core.data_config import set_data_config
from ..core.spec import ResNetSpec
from ..files import open_regular, read_bytes
from ..interop.checkpoint import is_onnx
from ..limits import MAX_ONNX_BYTES
from .contract import ExportContract, read_metadata
from .export import require

__all__ = ["OnnxModel", "load_onnx", "onnx_argument"]


class OnnxModel(nn.Module):
    """An onnxruntime session as a module: float ``(N, C, H, W)`` in, logits out (on the
    input's device). Inference only; it holds no parameters."""

    def __init__(
        self, session: Any, contract: ExportContract, *, where: str = "ONNX model"
    ) -> None:
        super().__init__()
        self.where = where
        self.session = session
        self.contract = contract
        self.spec: ResNetSpec = contract.spec
        self.num_classes = contract.spec.num_classes
        self.default_input_size = tuple(contract.config["input_size"])
        self.pretrained_cfg: dict[str, Any]
        set_data_config(self, contract.config)
        self._input = str(session.get_inputs()[0].name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            (logits, *_) = self.session.run(None, {self._input: array})
        except Exception as error:  # onnxruntime raises its own types, not RuntimeError's
            raise RuntimeError(
                f"{self.where}: onnxruntime could not run it on a {tuple(array.shape)} input "
                f"({first_line(error, 300)}); export it again with resnetlib export (its "
                "metadata then says the size the graph takes), or with --dynamic-size"
            ) from None
        return torch.from_numpy(logits).to(x.device)


def load_onnx(path: PathLike) -> OnnxModel:
    """The ONNX file at ``path`` (a resnetlib export) in an onnxruntime CPU session, with
    the contract its metadata holds; the session is made from the bytes read once.

    Raises:
        ValueError: the file is too large, not ONNX, or holds no valid resnetlib metadata.
        MissingDependencyError: onnxruntime is not installed.
    """
    require(("onnxruntime",), "running an ONNX file")
    ort = importlib.import_module("onnxruntime")
    data = read_bytes(path, limit=MAX_ONNX_BYTES, what="an ONNX model", error=ValueError)
    where = printable(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings concern no user
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for a bad file
        if "external data" in str(error).lower():
            raise ValueError(
                f"{where}: its weights are in separate files (ONNX external data); resnetlib "
                "runs one self-contained file: export it with resnetlib export, or save it "
                "with onnx.save(model, path, save_as_external_data=False)"
            ) from None
        reason = first_line(error, 300)
        raise ValueError(f"{where}: not an ONNX model onnxruntime can run ({reason})") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    return OnnxModel(session, read_metadata(metadata, where=where), where=where)


def refuse_given(options: Mapping[str, object], reason: str) -> None:
    """Raise ``ValueError("--a, --b: reason")`` naming the options whose value is not ``None``."""
    given = [f"--{key.replace('_', '-')}" for key, value in options.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: {reason}")


def onnx_argument(
    model: str | None, options: Mapping[str, object], device: str | None = None
) -> OnnxModel | None:
    """The ONNX file a command's model positional names (``load_onnx``; a file by its bytes,
    a missing one by its ``.onnx`` name), or ``None``. The
    model ``options`` given beside it (name: value, ``None`` when absent), or a ``device``
    other than the cpu: ``ValueError``."""
    name = str(model or "")
    if Path(name).is_file():  # told by its bytes (is_onnx), as the checkpoint reader tells it
        with open_regular(name, what="a model", error=ValueError) as file:
            if not is_onnx(file.read(16)):
                return None
    elif not name.lower().endswith(".onnx"):  # in any case
        return None
    refuse_given(
        options,
        f"an ONNX file ({printable(name)}) is the graph it was exported as; export again to "
        "change it",
    )
    if device not in (None, "cpu"):
        raise ValueError(f"--device {device}: an ONNX file runs on the cpu (onnxruntime)")
    if not Path(name).exists():
        raise ValueError(f"{printable(name)}: no such ONNX file")
    return load_onnx(name)
