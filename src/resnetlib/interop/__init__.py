"""Between resnetlib and the outside: other libraries' weight layouts, checkpoint files and
fine-tuning.

Loading and saving (``load``, ``save``, ``CheckpointError``) are also at the top level;
reading a checkpoint's parts, converting other layouts and fine-tuning helpers live here.
"""

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
