"""Between resnetlib and the outside: checkpoint files (``load``, ``save`` and
``CheckpointError`` also at the top level), other libraries' weight layouts, fine-tuning."""

from __future__ import annotations

from .checkpoint import Checkpoint, CheckpointError, load, read_checkpoint, save
from .convert import (
    LoadReport,
    ShapeMismatch,
    WeightsMismatchError,
    adapt_input_channels,
    convert_state_dict,
    load_weights,
    to_torchvision,
)
from .finetune import freeze, param_groups, unfreeze

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "LoadReport",
    "ShapeMismatch",
    "WeightsMismatchError",
    "adapt_input_channels",
    "convert_state_dict",
    "freeze",
    "load",
    "load_weights",
    "param_groups",
    "read_checkpoint",
    "save",
    "to_torchvision",
    "unfreeze",
]
