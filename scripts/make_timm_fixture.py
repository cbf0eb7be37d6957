"""Write ``tests/fixtures/timm_resnet.json``: timm's resnet18/50/50d layouts and logits.

Run with an environment that has timm (and so torch)::

    python scripts/make_timm_fixture.py

Weights and input come from ``make_torchvision_fixture.py`` (:func:`deterministic_fill_`,
:func:`fixed_input`), so the logits are comparable to the torchvision fixture's. resnet50d
(deep stem, ResNet-D shortcuts) is recorded for the day resnetlib registers it.
"""

from __future__ import annotations

from typing import Any

import torch
from make_torchvision_fixture import INPUT_SHAPE, REPO_ROOT, reference_entry, write_fixture

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "timm_resnet.json"
MODELS = ("resnet18", "resnet50", "resnet50d")


def main() -> None:
    """Build timm's models without pretrained weights, fill, run and write the fixture."""
    import timm

    data: dict[str, Any] = {
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "input_shape": list(INPUT_SHAPE),
        "models": {
            name: reference_entry(name, timm.create_model(name, pretrained=False))
            for name in MODELS
        },
    }
    write_fixture(FIXTURE, data)


if __name__ == "__main__":
    main()
