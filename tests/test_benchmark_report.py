"""benchmarks/compare.py reports the spread of the rounds, not only the medians."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_compare() -> Any:
    name = "benchmarks_compare"
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "compare.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_each_cell_shows_median_and_the_range_of_the_rounds() -> None:
    compare = load_compare()
    peer, lib = (2.0, 8.0, 4.0), (3.0, 4.0, 4.0)
    row = compare.Row("net", "inference", compare.Timings(peer, lib))
    ratios = [b / a for a, b in zip(peer, lib, strict=True)]
    assert row.cells() == [
        "net",
        "inference",
        f"{statistics.median(peer):.2f} ({min(peer):.2f}-{max(peer):.2f})",
        f"{statistics.median(lib):.2f} ({min(lib):.2f}-{max(lib):.2f})",
        f"{row.ratio:.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
    ]
    assert row.ratio == statistics.median(lib) / statistics.median(peer)
