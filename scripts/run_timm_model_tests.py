"""Run timm's own tests/test_models.py against resnetlib: a drop-in check, offline.

timm's tests build every model with ``timm.create_model`` and pick models with
``timm.list_models``. This script redirects both to resnetlib (and the name lookup
``get_pretrained_cfg_value`` the tests use for input sizes), keeps every argument the tests
pass unchanged, and runs the file with pytest for a handful of resnetlib models. Tests that
need pretrained weights (hub downloads) are skipped; everything else must pass.

Needs timm's source distribution (it holds tests/; the wheel does not)::

    pip download timm==1.0.31 --no-deps --no-binary :all: -d /tmp/timm-sdist
    PYTHONPATH=src python scripts/run_timm_model_tests.py /tmp/timm-sdist/timm-1.0.31.tar.gz

timm must import beside the installed torch; where torchvision cannot (a CPU-only torch
next to a mismatched torchvision, or none), ``--mock-torchvision`` stands a stub in for it
(timm imports it only for data transforms; the fx feature tests then skip). Prints, per
test function, how many cases passed, failed and were skipped; exits 1 on any failure.
Extra arguments after ``--`` go to pytest (``-- -k torchscript -x``).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.abc
import importlib.machinery
import sys
import tarfile
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

MODELS = ("resnet18", "resnet50", "resnet50d", "resnext50_32x4d", "resnet20", "preact_resnet18")


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import torchvision...`` with a mock package (``--mock-torchvision``)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        if spec.name == "torchvision.models.feature_extraction":
            raise ImportError("torchvision is stubbed (--mock-torchvision)")
        module = mock.MagicMock(name=spec.name)
        module.__path__ = []
        module.__spec__ = spec
        module.__name__ = spec.name
        return module  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        pass


def _as_list(patterns: str | Iterable[str]) -> list[str]:
    if isinstance(patterns, str):
        return [patterns] if patterns else []
    return list(patterns)


def _redirect(timm: Any, models: Sequence[str]) -> None:
    """Point timm's model factory and model listing at resnetlib, for ``models`` only."""
    import resnetlib

    timm_list_models = timm.list_models
    timm_names = set(timm_list_models())

    def list_models(
        filter: str | Iterable[str] = "",
        module: str | Iterable[str] = "",
        pretrained: bool = False,
        exclude_filters: str | Iterable[str] = "",
        name_matches_cfg: bool = False,
        include_tags: bool | None = None,
    ) -> list[str]:
        # timm's own answer for the names it knows; for resnetlib-only names (CIFAR and
        # pre-activation nets) the same filters, read as members of timm's "resnet" module.
        known = set(
            timm_list_models(
                filter, module, pretrained, exclude_filters, name_matches_cfg, include_tags
            )
        )
        picked = []
        for name in models:
            if name in timm_names:
                # With tags, timm lists "name.tag" per weight; keep the default tag's.
                tag = timm.models._registry._model_default_cfgs[name].tags[0]
                picked += [n for n in known if n in (name, f"{name}.{tag}")]
                continue
            includes, excludes = _as_list(filter), _as_list(exclude_filters)
            modules = _as_list(module)
            if pretrained or (modules and not any(fnmatch.fnmatch("resnet", m) for m in modules)):
                continue
            if includes and not any(fnmatch.fnmatch(name, p) for p in includes):
                continue
            if any(fnmatch.fnmatch(name, p) for p in excludes):
                continue
            picked.append(name)
        return picked

    def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> Any:
        if pretrained:
            import pytest

            pytest.skip("pretrained weights need a hub download")
        return resnetlib.create_model(model_name, pretrained=False, **kwargs)

    def get_pretrained_cfg_value(model_name: str, cfg_key: str) -> Any:
        return resnetlib.create_model(model_name).pretrained_cfg.get(cfg_key)

    for owner in (timm, timm.models):
        owner.list_models = list_models
        owner.create_model = create_model
        owner.get_pretrained_cfg_value = get_pretrained_cfg_value


class _Tally:
    """Keeps the test cases parametrized with one of ``models`` (the others build timm's own
    models by name) and collects each one's outcome, keyed by test function.
    """

    def __init__(self, models: Sequence[str]) -> None:
        self.models = set(models)
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.failures: list[str] = []
        self.not_applicable = 0

    def pytest_configure(self, config: Any) -> None:
        for marker in ("timeout(seconds): pytest-timeout's", "base: timm's", "cfg: timm's"):
            config.addinivalue_line("markers", marker)

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        keep, drop = [], []
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            name = str(params.get("model_name", "")).split(".")[0]
            (keep if name in self.models else drop).append(item)
        items[:] = keep
        self.not_applicable = len(drop)
        config.hook.pytest_deselected(items=drop)

    def pytest_runtest_logreport(self, report: Any) -> None:
        function = report.nodeid.split("::")[-1].split("[")[0]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = report.outcome
            self.counts[function][outcome] += 1
            if outcome == "failed":
                self.failures.append(report.nodeid)


def _unpack(source: Path, into: Path) -> Path:
    if source.is_dir():
        return source
    with tarfile.open(source) as archive:
        archive.extractall(into, filter="data")
    (root,) = [p for p in into.iterdir() if p.is_dir()]
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("timm_source", type=Path, help="timm's sdist (.tar.gz) or its unpacked dir")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--mock-torchvision", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    import pytest

    with tempfile.TemporaryDirectory() as scratch:
        root = _unpack(args.timm_source, Path(scratch))
        if not (root / "tests" / "test_models.py").is_file():
            print(f"error: {root} has no tests/test_models.py (use timm's sdist)", file=sys.stderr)
            return 2
        if args.mock_torchvision:
            sys.meta_path.insert(0, _TorchvisionStub())
        sys.path.insert(0, str(root))
        import timm
        import timm.models

        _redirect(timm, args.models)
        tally = _Tally(args.models)
        code = pytest.main(
            [
                str(root / "tests" / "test_models.py"),
                "-q",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                str(root),
                *pytest_args,
            ],
            plugins=[tally],
        )
    print(f"\ntimm {timm.__version__} tests/test_models.py with resnetlib's create_model")
    print(f"models: {', '.join(args.models)}")
    print(f"cases for other models (not applicable, deselected): {tally.not_applicable}")
    print(f"{'test':<48} {'passed':>6} {'failed':>6} {'skipped':>7}")
    total: Counter[str] = Counter()
    for function, counts in sorted(tally.counts.items()):
        total.update(counts)
        print(f"{function:<48} {counts['passed']:>6} {counts['failed']:>6} {counts['skipped']:>7}")
    print(f"{'total':<48} {total['passed']:>6} {total['failed']:>6} {total['skipped']:>7}")
    return 1 if tally.failures or code not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
