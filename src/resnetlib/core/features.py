"""Feature extraction (timm's ``features_only=True``): a ResNet's stem and stages, under the
model's module names (its state dict less ``fc.*`` loads), returning a list of maps."""

# No ``from __future__ import annotations``, for torch.fx and TorchScript (see model.py).

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .data_config import set_data_config
from .model import FeatureInfo, FeatureInfoList, ResNet, StagedNet, feature_plan

__all__ = ["ResNetFeatures", "features"]


class ResNetFeatures(StagedNet):
    """A :class:`~resnetlib.ResNet`'s own stem and stages up to the last map asked for (indices
    of ``model.feature_info``), its ``feature_info`` the returned maps'; the other settings
    start as the model's. It scripts with ``torch.jit.script``."""

    def __init__(self, model: ResNet, *, out_indices: int | Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(model, ResNet):
            raise TypeError(f"features() takes a ResNet; got {type(model).__name__}")
        take, stages, tail, self._points = feature_plan(
            model, out_indices, stop_early=True, norm=True
        )
        self.out_indices: tuple[int, ...] = tuple(sorted(set(take)))
        self.feature_info = FeatureInfoList(
            [FeatureInfo(**model.feature_info[i]) for i in self.out_indices]
        )
        self.stem_names: tuple[str, ...] = model.stem_names
        self.stage_names: tuple[str, ...] = stages
        self.final_names: tuple[str, ...] = tail
        self._names = [*self.stem_names, *self.stage_names, *self.final_names]
        for name in self._names:
            self.add_module(name, model.get_submodule(name))
        self._take = list(self.out_indices)
        self.default_input_size: tuple[int, int, int] = model.default_input_size
        set_data_config(self, model.pretrained_cfg)
        self.norm_eval = model.norm_eval
        self.frozen_stages = min(model.frozen_stages, len(self.stage_names))
        self.grad_checkpointing: bool = model.grad_checkpointing
        self.grad_checkpointing_segment: int = model.grad_checkpointing_segment
        self.grad_checkpointing_last_stage: bool = model.grad_checkpointing_last_stage
        self.train(model.training)

    def __getattr__(self, name: str) -> Any:
        if name == "tail_names":  # its name before final_names (the model's)
            warnings.warn(
                "ResNetFeatures.tail_names is deprecated: use final_names, as on the model",
                FutureWarning,
                stacklevel=2,
            )
            return self.final_names
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        is_scripting = torch.jit.is_scripting  # type: ignore[attr-defined]
        if not is_scripting() and self.grad_checkpointing and torch.is_grad_enabled():
            return self._checkpointed(x, self._names, self._points, self._take)[1]
        return self._run(x, self._names, self._points, self._take)[1]


def features(model: ResNet, *, out_indices: int | Sequence[int] | None = None) -> ResNetFeatures:
    """``model`` as a feature extractor returning the maps ``out_indices`` picks (default: all),
    sharing its modules; a pre-activation net's last map is normalized (``norm=True``)."""
    return ResNetFeatures(model, out_indices=out_indices)
