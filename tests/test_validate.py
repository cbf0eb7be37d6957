"""The shared value checks: an int is an int, never a bool."""

from __future__ import annotations

import dataclasses

import pytest

import resnetlib as rl
from resnetlib.validate import is_int, is_real


def test_bools_are_neither_ints_nor_numbers() -> None:
    assert [is_int(v) for v in (3, 0, True, False, 3.0, "3", None)] == [True, True] + [False] * 5
    assert [is_real(v) for v in (3, 2.5, True, "2.5", None)] == [True, True, False, False, False]


def test_validators_refuse_bools() -> None:
    spec = rl.cifar_spec(20)
    with pytest.raises(ValueError, match=r"ResNetSpec.num_classes must be an int >= 0; got True"):
        dataclasses.replace(spec, num_classes=True)
    with pytest.raises(ValueError, match=r"drop_path_rate must be a number in \[0, 1\); got False"):
        dataclasses.replace(spec, drop_path_rate=False)
    with pytest.raises(ValueError, match=r"input_size must be \(channels, height, width\)"):
        rl.count_flops(rl.resnet20(), (3, True, 32))
