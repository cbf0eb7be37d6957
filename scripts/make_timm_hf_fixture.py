"""Write ``tests/fixtures/timm_save_for_hf_resnet18.json``: the ``config.json`` timm's
``save_for_hf`` writes for resnet18, so tests/test_share.py checks resnetlib against timm's
exact output rather than a copy of it.

Run with an environment that has timm (and so torch)::

    python scripts/make_timm_hf_fixture.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from make_torchvision_fixture import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "timm_save_for_hf_resnet18.json"


def main() -> None:
    """Save timm's resnet18.a1_in1k config (random weights) and record its config.json."""
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("resnet18.a1_in1k", pretrained=False)
    with tempfile.TemporaryDirectory() as folder:
        save_for_hf(model, folder, safe_serialization=True)
        config = json.loads((Path(folder) / "config.json").read_text())
    data = {"timm_version": timm.__version__, "config": config}
    FIXTURE.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
