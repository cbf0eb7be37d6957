"""The top level holds what a user types first; the rest lives in its subpackage (issue 26)."""

from __future__ import annotations

import importlib

import pytest

import resnetlib


def test_the_top_level_exports_at_most_70_names() -> None:
    assert len(resnetlib.__all__) <= 70
    assert len(set(resnetlib.__all__)) == len(resnetlib.__all__)
    for name in resnetlib.__all__:
        assert hasattr(resnetlib, name), name


@pytest.mark.parametrize("package", ["resnetlib", "resnetlib.train"])
def test_dir_lists_each_name_once_before_and_after_it_loads(package: str) -> None:
    module = importlib.import_module(package)
    name = module.__all__[0]
    before = dir(module)
    getattr(module, name)  # a lazy name, once loaded, is also a global of the module
    after = dir(module)
    assert name in before
    assert len(after) == len(set(after))
    assert set(module.__all__) <= set(after)


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("OptionA", "resnetlib.nn"),
        ("CifarStem", "resnetlib.nn"),
        ("BLOCKS", "resnetlib.nn"),
        ("UnknownNameError", "resnetlib.registry"),
        ("convert_state_dict", "resnetlib.interop"),
        ("to_torchvision", "resnetlib.interop"),
        ("read_checkpoint", "resnetlib.interop"),
        ("summary", "resnetlib.analysis"),
        ("fuse_bn", "resnetlib.deploy"),
        ("PretrainedWeights", "resnetlib.models"),
        ("features", "resnetlib.core"),
    ],
)
def test_a_moved_name_says_where_it_went(name: str, home: str) -> None:
    assert name not in resnetlib.__all__
    with pytest.raises(AttributeError, match=rf"resnetlib\.{name} moved to {home}\.{name}"):
        getattr(resnetlib, name)
    module = importlib.import_module(home)
    assert name in module.__all__
    assert getattr(module, name) is not None


def test_every_moved_name_is_exported_by_its_new_home() -> None:
    for name, home in resnetlib._MOVED.items():
        assert name in importlib.import_module(home).__all__, (name, home)


def test_the_top_level_names_are_also_in_their_subpackage() -> None:
    homes = ["resnetlib.nn", "resnetlib.core", "resnetlib.models", "resnetlib.interop"]
    exported = {n for h in homes for n in importlib.import_module(h).__all__}
    exported |= {"count_flops", "count_parameters", "__version__"}
    assert set(resnetlib.__all__) <= exported


def test_the_subpackages_stay_reachable_as_attributes() -> None:
    assert resnetlib.nn.OptionA.__name__ == "OptionA"
    assert resnetlib.deploy.fuse_bn.__name__ == "fuse_bn"
    assert resnetlib.testing.__name__ == "resnetlib.testing"
