"""torch.hub entry points (hubconf.py at the repository root)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
import torch.hub

import resnetlib as rl

ROOT = Path(__file__).resolve().parents[1]


def load_hubconf() -> ModuleType:
    # What torch.hub does with a local repository: import hubconf.py from its path.
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hub_load_local_builds_the_factorys_model() -> None:
    model = torch.hub.load(str(ROOT), "resnet18", source="local", num_classes=3)
    assert isinstance(model, rl.ResNet)
    assert model.spec == rl.resnet18(num_classes=3).spec
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_hub_load_passes_features_only() -> None:
    backbone = torch.hub.load(
        str(ROOT), "resnet20", source="local", features_only=True, out_indices=(1, 3)
    )
    assert isinstance(backbone, rl.core.ResNetFeatures)
    assert [info["num_chs"] for info in backbone.feature_info] == [16, 64]


def test_every_registered_model_is_an_entry_point() -> None:
    hubconf = load_hubconf()
    assert hubconf.dependencies == ["torch"]
    # torch.hub.list's own rule: public callables of hubconf.
    public = [name for name in dir(hubconf) if not name.startswith("_")]
    entry_points = {name for name in public if callable(getattr(hubconf, name))}
    assert entry_points == set(rl.list_models())
    assert hubconf.resnet50.__doc__.startswith("ResNet-50:")


def test_hubconf_imports_the_repositorys_own_source(tmp_path: Path) -> None:
    # A fresh process, outside the repository, with no PYTHONPATH: hubconf puts src/ first.
    code = (
        "import torch; "
        f"m = torch.hub.load({str(ROOT)!r}, 'resnet20', source='local', num_classes=4); "
        "import resnetlib; print(resnetlib.__file__); print(type(m).__name__, m.fc.out_features)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    location, built = result.stdout.splitlines()[-2:]
    assert Path(location).resolve() == ROOT / "src" / "resnetlib" / "__init__.py"
    assert built == "ResNet 4"
