"""The named networks: the zoo of factories (also at the top level, with ``create_model``,
``list_models`` and ``list_pretrained``) and the registry of their pretrained weights."""

from __future__ import annotations

from . import zoo
from .pretrained import PretrainedError
from .share import save_pretrained
from .weights import PretrainedWeights, list_pretrained
from .zoo import *  # noqa: F403  (the factories, create_model, list_models, MODELS)

__all__ = ["PretrainedError", "PretrainedWeights", "list_pretrained", "save_pretrained"]
__all__ += zoo.__all__
