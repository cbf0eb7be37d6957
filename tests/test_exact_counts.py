"""Exact parameter counts and multiply-adds from the paper and torchvision (not from the code)."""

from __future__ import annotations

import pytest
import torch

import resnetlib as rl

# torchvision's weight metadata, paper Table 1 layouts.
IMAGENET_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
# Paper section 4.2, Table 6: option A, 10 classes; exact counts = 97,216 n - 21,926.
CIFAR_PARAMS = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
}
# torchvision "GFLOPS" (= G multiply-adds, stride on the 3x3) at 224x224.
IMAGENET_GMACS = {
    "resnet18": 1.814,
    "resnet34": 3.664,
    "resnet50": 4.089,
    "resnet101": 7.801,
    "resnet152": 11.514,
}
# The paper's own stride placement (first 1x1): 3.858 / 7.570 / 11.282 G (paper: 3.8/7.6/11.3).
PAPER_STRIDE_GMACS = {"resnet50": 3.858, "resnet101": 7.570, "resnet152": 11.282}


def on_meta(name: str, **overrides: object) -> rl.ResNet:
    with torch.device("meta"):
        return rl.create_model(name, **overrides)


@pytest.mark.parametrize(("name", "expected"), sorted(IMAGENET_PARAMS.items()))
def test_imagenet_parameter_counts_equal_torchvision(name: str, expected: int) -> None:
    assert rl.count_parameters(on_meta(name)) == expected


@pytest.mark.parametrize(("name", "expected"), sorted(CIFAR_PARAMS.items()))
def test_cifar_parameter_counts_equal_the_paper(name: str, expected: int) -> None:
    assert rl.count_parameters(on_meta(name)) == expected


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS))
def test_plain_cifar_net_has_its_option_a_twins_count(name: str) -> None:
    plain = name.replace("resnet", "plain")
    assert rl.count_parameters(on_meta(plain)) == CIFAR_PARAMS[name]


def test_cifar_counts_follow_the_closed_form() -> None:
    for n in (1, 2, 4, 11):
        assert rl.count_parameters(rl.cifar_resnet(6 * n + 2)) == 97_216 * n - 21_926


@pytest.mark.parametrize(("name", "expected"), sorted(IMAGENET_GMACS.items()))
def test_imagenet_mult_adds_equal_torchvision(name: str, expected: float) -> None:
    gmacs = rl.count_flops(on_meta(name), (3, 224, 224)) / 1e9
    assert round(gmacs, 3) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("name", "expected"), sorted(PAPER_STRIDE_GMACS.items()))
def test_paper_stride_placement_gives_the_papers_mult_adds(name: str, expected: float) -> None:
    gmacs = rl.count_flops(on_meta(name, stride_in_1x1=True), (3, 224, 224)) / 1e9
    assert round(gmacs, 3) == pytest.approx(expected, abs=1e-9)


def test_plain_imagenet_nets_lack_only_the_projections() -> None:
    # plain-34 = ResNet-34 minus its three projection shortcuts (conv 1x1 + BN each).
    projections = sum(
        c_in * c_out + 2 * c_out for c_in, c_out in ((64, 128), (128, 256), (256, 512))
    )
    assert rl.count_parameters(on_meta("plain34")) == IMAGENET_PARAMS["resnet34"] - projections
    assert rl.count_parameters(on_meta("plain18")) == IMAGENET_PARAMS["resnet18"] - projections
