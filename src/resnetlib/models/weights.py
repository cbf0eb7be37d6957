"""The pretrained weights registry, tagged as timm tags them (``resnet50.a1_in1k``;
torchvision's ``tv_in1k`` / ``tv2_in1k`` also answer to ``IMAGENET1K_V1`` / ``_V2``). A model's
default is timm's default tag, else torchvision's, else its only entry. Each entry's ``origin``
says where it was read; importing this reads and downloads nothing."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.data_config import (
    CIFAR10_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    data_config,
)
from ..registry import UnknownNameError
from ..validate import check_patterns

__all__ = ["WEIGHTS", "PretrainedWeights", "default_weights", "get_weights", "list_pretrained"]

SOURCES = ("torchvision", "timm", "akamaster", "mmpretrain")
"""The publishers, each also the state-dict layout its files use."""

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class PretrainedWeights:
    """One published checkpoint, at ``url`` or at ``hf_hub_id``/``filename`` on the Hugging
    Face Hub. ``hash_prefix`` (from the file name) and ``sha256`` are ``None`` where the
    publisher gives none; ``overrides`` are the model arguments the weights need; ``config``
    is the data configuration the publisher evaluated with."""

    model: str
    tag: str
    source: str
    classes: str
    num_classes: int
    top1: float
    license: str
    config: Mapping[str, Any] = field(hash=False)
    url: str | None = None
    hf_hub_id: str | None = None
    filename: str | None = None
    hash_prefix: str | None = None
    sha256: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    aliases: tuple[str, ...] = ()
    origin: str = ""

    @property
    def name(self) -> str:
        """``model.tag``, timm's full name for these weights."""
        return f"{self.model}.{self.tag}"

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg`` for these weights: their data configuration and origin
        (CIFAR-10 weights name their classes, so an export of them does too)."""
        names = {"label_names": list(CIFAR10_CLASSES)} if self.classes == "cifar10" else {}
        return {
            **names,
            **self.config,
            "architecture": self.model,
            "tag": self.tag,
            "url": self.url or "",
            "hf_hub_id": self.hf_hub_id,
            "hf_hub_filename": self.filename,
            "source": self.source,
            "license": self.license,
            "classes": self.classes,
        }


def _config(
    model: str,
    *,
    num_classes: int = 1000,
    size: int = 224,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    reduction: int = 32,
) -> dict[str, Any]:
    return data_config(
        num_classes=num_classes,
        input_size=(3, size, size),
        reduction=reduction,
        first_conv="conv1.0" if re.fullmatch(r"resnet\d+d", model) else "conv1",  # ResNet-D's stem
        mean=mean,
        std=std,
        interpolation=interpolation,
        crop_pct=crop_pct,
    )


def _tv(model: str, enum: str, hash_prefix: str, top1: float, *, resize: int) -> PretrainedWeights:
    version = enum.rsplit("_V", 1)[-1]
    return PretrainedWeights(
        model=model,
        tag="tv_in1k" if version == "1" else f"tv{version}_in1k",
        source="torchvision",
        classes="imagenet-1k",
        num_classes=1000,
        top1=top1,
        license="BSD-3-Clause",
        config=_config(model, crop_pct=224 / resize),
        url=f"https://download.pytorch.org/models/{model}-{hash_prefix}.pth",
        hash_prefix=hash_prefix,
        aliases=(enum,),
        origin="torchvision 0.29.1 wheel: torchvision/models/resnet.py",
    )


# SHA-256 of model.safetensors as the hub's page of the file shows it ("Git LFS Details"),
# for the files whose page could be read.
_HUB_SHA256: dict[str, str] = {
    "resnet101.a1_in1k": "1ba5b660e7c175b3c27c557fc7dc8b2815be830c516815b0155f61b403f27380",
    "resnet101.a1h_in1k": "1a076c0384295e7d3704f201c5711ff245507db934230bab72ff3014a95f90fe",
    "resnet101.a2_in1k": "d44a7f2e7eaea0bee834ea5e7fd691d239057014628df0bd194c312773b92c83",
    "resnet101.a3_in1k": "846baf57eaff38823a70bf63fe58052d2d6b93bd25d3b89c4d31f6909babba0b",
    "resnet101d.ra2_in1k": "c2192596da2e8d652cbf0465b8694704247b524efb68ed194504af453830709c",
    "resnet18.a1_in1k": "80c49dee3da4822c009c5a7fe591e9223c5a2cfcf95a4067ca4dfb5a7b89c612",
    "resnet18.a3_in1k": "f049dd3c2e08176be8844dd123467fa5714cff1f141dcfe0ab4975e567f9de21",
    "resnet18.gluon_in1k": "6991fcc0c58379a8496f6273b2f211e492f6af6494041fded649a482772ad2bf",
    "resnet18d.ra2_in1k": "0ad5d924c4269ad863590b6ccdd19f5fb48d0bae695c1dd6751de0b0282d8361",
    "resnet50.a1_in1k": "773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb",
    "resnet50.a2_in1k": "f531f9aca4dde1b89e9a465c5b9e3b916a2d1b20a216acf3b9473d1e1212ecf6",
    "resnet50.b1k_in1k": "cd64707e0ef72aa0526ac6d46fba6495ad2088717adb47a62a0b526eb3cd3480",
    "resnet50.b2k_in1k": "0c89502f61808f6fac8c7044eb59c072877c171529fc001bc85403982115232c",
    "resnet50.d_in1k": "d8ed291891c8ee5777f68136665a4eee2f9ddeb2a9bc88acf4b1676b3bbebf55",
    "resnet50.ra_in1k": "c49195c94e4fe19545a332e706f998d836f63b5d9892cc54526df3ee9b92ba18",
    "resnet50d.a1_in1k": "0b4f757b0732eb4c6584d2c3692923c3b92efe116b8a383fd4b5eb62fda660cb",
    "resnet50d.ra4_e3600_r224_in1k": (
        "dcfb320732ed8e1e2fe689f577b4116eae0b20272d3b762a187c5999f62ac5bd"
    ),
    "resnext50_32x4d.a1h_in1k": "b952952a7b3e856b16ebf82fb44d2aa8c502e73ec678976c9e3b970fcd530bd5",
    "resnext50_32x4d.a2_in1k": "4b4522bcca81d90e486f8cfb92213597b899d68764ce5fc08db37e3352e02a7d",
    "resnext50_32x4d.a3_in1k": "55480d1612cf33904614f2a3891a0853022cb78c95a3ad734e185ae6575ee545",
}


def _timm(
    model: str, tag: str, top1: float, *, size: int = 224, crop_pct: float = 0.875
) -> PretrainedWeights:
    """timm's ``tag`` of ``model`` (``fb_*``: Facebook's semi- and weakly supervised weights)."""
    facebook, ra4 = tag.startswith("fb_"), tag.startswith("ra4_")
    return PretrainedWeights(
        model=model,
        tag=tag,
        source="timm",
        classes="imagenet-1k",
        num_classes=1000,
        top1=top1,
        license="cc-by-nc-4.0" if facebook else "apache-2.0",
        config=_config(
            model,
            size=size,
            crop_pct=crop_pct,
            interpolation="bilinear" if facebook else "bicubic",
            mean=INCEPTION_MEAN if ra4 else IMAGENET_MEAN,
            std=INCEPTION_STD if ra4 else IMAGENET_STD,
        ),
        hf_hub_id=f"timm/{model}.{tag}",
        filename="model.safetensors",
        sha256=_HUB_SHA256.get(f"{model}.{tag}"),
        origin="huggingface/pytorch-image-models@aa4b585: timm/models/resnet.py default_cfgs",
    )


_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models"


def _akamaster(model: str, hash_prefix: str, top1: float) -> PretrainedWeights:
    return PretrainedWeights(
        model=model,
        tag="akamaster_cifar10",
        source="akamaster",
        classes="cifar10",
        num_classes=10,
        top1=top1,
        license="BSD-2-Clause",
        config=_config(model, num_classes=10, size=32, crop_pct=1.0, reduction=4),
        url=f"{_AKAMASTER}/{model}-{hash_prefix}.th",
        hash_prefix=hash_prefix,
        overrides={"shortcut": "A_both"},
        origin="akamaster/pytorch_resnet_cifar10@d5489e8: README.md",
    )


# mmpretrain's CIFAR (mean, std) * 255 as its configs publish them (cifar10_bs16.py,
# cifar100_bs16.py): the weights' contract, though its CIFAR-10 std is not CIFAR10_STD.
_MMPRETRAIN_CIFAR = {
    "cifar10": ((125.307, 122.961, 113.8575), (51.5865, 50.847, 51.255)),
    "cifar100": ((129.304, 124.070, 112.434), (68.170, 65.392, 70.418)),
}

# The file each metafile name publishes, under https://download.openmmlab.com/mmclassification/v0/
_MMPRETRAIN_FILES = {
    "resnet18_8xb16_cifar10": "resnet/resnet18_b16x8_cifar10_20210528-bd6371c8",
    "resnet34_8xb16_cifar10": "resnet/resnet34_b16x8_cifar10_20210528-a8aa36a6",
    "resnet50_8xb16_cifar10": "resnet/resnet50_b16x8_cifar10_20210528-f54bfad9",
    "resnet101_8xb16_cifar10": "resnet/resnet101_b16x8_cifar10_20210528-2d29e936",
    "resnet152_8xb16_cifar10": "resnet/resnet152_b16x8_cifar10_20210528-3e8e9178",
    "resnet50_8xb16_cifar100": "resnet/resnet50_b16x8_cifar100_20210528-67b58a1b",
    "resnet18_8xb32_in1k": "resnet/resnet18_8xb32_in1k_20210831-fbbb1da6",
    "resnet34_8xb32_in1k": "resnet/resnet34_8xb32_in1k_20210831-f257d4e6",
    "resnet50_8xb32_in1k": "resnet/resnet50_8xb32_in1k_20210831-ea4938fc",
    "resnet101_8xb32_in1k": "resnet/resnet101_8xb32_in1k_20210831-539c63f8",
    "resnet152_8xb32_in1k": "resnet/resnet152_8xb32_in1k_20210901-4d7582fa",
    "resnetv1d50_8xb32_in1k": "resnet/resnetv1d50_b32x8_imagenet_20210531-db14775a",
    "resnetv1d101_8xb32_in1k": "resnet/resnetv1d101_b32x8_imagenet_20210531-6e13bcd3",
    "resnetv1d152_8xb32_in1k": "resnet/resnetv1d152_b32x8_imagenet_20210531-278cf22a",
    "resnet50_8xb32-fp16_in1k": "fp16/resnet50_batch256_fp16_imagenet_20210320-b3964210",
    "resnet50_8xb256-rsb-a1-600e_in1k": "resnet/resnet50_8xb256-rsb-a1-600e_in1k_20211228-20e21305",
    "resnet50_8xb256-rsb-a2-300e_in1k": "resnet/resnet50_8xb256-rsb-a2-300e_in1k_20211228-0fd8be6e",
    "resnet50_8xb256-rsb-a3-100e_in1k": "resnet/resnet50_8xb256-rsb-a3-100e_in1k_20211228-3493673c",
    "resnetv1c50_8xb32_in1k": "resnet/resnetv1c50_8xb32_in1k_20220214-3343eccd",
    "resnetv1c101_8xb32_in1k": "resnet/resnetv1c101_8xb32_in1k_20220214-434fe45f",
    "resnetv1c152_8xb32_in1k": "resnet/resnetv1c152_8xb32_in1k_20220214-c013291f",
}


def _mmpretrain(model: str, tag: str, name: str, top1: float) -> PretrainedWeights:
    """mmpretrain's weights ``name`` (its metafile's name) as ``model.tag``."""
    url = f"https://download.openmmlab.com/mmclassification/v0/{_MMPRETRAIN_FILES[name]}.pth"
    hash_prefix = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    if hash_prefix is None:
        raise ValueError(f"no hash prefix in the file name of {url}")
    overrides: dict[str, Any] = {}
    classes = tag.removeprefix("mm_")
    if classes in _MMPRETRAIN_CIFAR:
        num_classes = int(classes.removeprefix("cifar"))
        mean, std = (tuple(value / 255 for value in row) for row in _MMPRETRAIN_CIFAR[classes])
        config = _config(
            model, num_classes=num_classes, size=32, crop_pct=1.0, mean=mean, std=std, reduction=8
        )
        overrides = {"stem": "cifar", "num_classes": num_classes}
    else:
        classes, num_classes = "imagenet-1k", 1000
        rsb = "_rsb_" in tag  # ResizeEdge 236, bicubic (imagenet_bs256_rsb_*.py)
        config = _config(
            model,
            crop_pct=224 / 236 if rsb else 224 / 256,
            interpolation="bicubic" if rsb else "bilinear",
        )
        if "_v1c_" in tag:  # ResNetV1c: deep stem, plain projections
            overrides = {"shortcut": "B"}
    return PretrainedWeights(
        model=model,
        tag=tag,
        source="mmpretrain",
        classes=classes,
        num_classes=num_classes,
        top1=top1,
        license="Apache-2.0",
        config=config,
        url=url,
        hash_prefix=hash_prefix[1],
        overrides=overrides,
        origin=f"open-mmlab/mmpretrain@ee7f2e8: configs/resnet/metafile.yml {name}",
    )


WEIGHTS: tuple[PretrainedWeights, ...] = (
    _tv("resnet18", "IMAGENET1K_V1", "f37072fd", 69.758, resize=256),
    _tv("resnet34", "IMAGENET1K_V1", "b627a593", 73.314, resize=256),
    _tv("resnet50", "IMAGENET1K_V1", "0676ba61", 76.130, resize=256),
    _tv("resnet50", "IMAGENET1K_V2", "11ad3fa6", 80.858, resize=232),
    _tv("resnet101", "IMAGENET1K_V1", "63fe2227", 77.374, resize=256),
    _tv("resnet101", "IMAGENET1K_V2", "cd907fc2", 81.886, resize=232),
    _tv("resnet152", "IMAGENET1K_V1", "394f9c45", 78.312, resize=256),
    _tv("resnet152", "IMAGENET1K_V2", "f82ba261", 82.284, resize=232),
    _tv("resnext50_32x4d", "IMAGENET1K_V1", "7cdf4587", 77.618, resize=256),
    _tv("resnext50_32x4d", "IMAGENET1K_V2", "1a0047aa", 81.198, resize=232),
    _tv("resnext101_32x8d", "IMAGENET1K_V1", "8ba56ff5", 79.312, resize=256),
    _tv("resnext101_32x8d", "IMAGENET1K_V2", "110c445d", 82.834, resize=232),
    _tv("wide_resnet50_2", "IMAGENET1K_V1", "95faca4d", 78.468, resize=256),
    _tv("wide_resnet50_2", "IMAGENET1K_V2", "9ba9bcbe", 81.602, resize=232),
    _tv("wide_resnet101_2", "IMAGENET1K_V1", "32ee1156", 78.848, resize=256),
    _tv("wide_resnet101_2", "IMAGENET1K_V2", "d733dc28", 82.510, resize=232),
    _timm("resnet18", "a1_in1k", 71.504, crop_pct=0.95),
    _timm("resnet18", "a2_in1k", 70.634, crop_pct=0.95),
    _timm("resnet18", "a3_in1k", 65.67, size=160, crop_pct=0.95),
    _timm("resnet18d", "ra2_in1k", 72.296),
    _timm("resnet18d", "ra4_e3600_r224_in1k", 74.356, crop_pct=0.9),
    _timm("resnet34", "a1_in1k", 76.42, crop_pct=0.95),
    _timm("resnet34", "a2_in1k", 75.52, crop_pct=0.95),
    _timm("resnet34", "a3_in1k", 70.58, size=160, crop_pct=0.95),
    _timm("resnet34", "bt_in1k", 75.176),
    _timm("resnet34", "ra4_e3600_r224_in1k", 77.492, crop_pct=0.9),
    _timm("resnet34d", "ra2_in1k", 77.108),
    _timm("resnet50", "a1_in1k", 80.382, crop_pct=0.95),
    _timm("resnet50", "a1h_in1k", 79.264, size=176, crop_pct=0.9),
    _timm("resnet50", "a2_in1k", 79.828, crop_pct=0.95),
    _timm("resnet50", "a3_in1k", 75.994, size=160, crop_pct=0.95),
    _timm("resnet50", "b1k_in1k", 79.564, crop_pct=0.95),
    _timm("resnet50", "b2k_in1k", 79.388, crop_pct=0.95),
    _timm("resnet50", "c1_in1k", 79.766, crop_pct=0.95),
    _timm("resnet50", "c2_in1k", 79.868, crop_pct=0.95),
    _timm("resnet50", "d_in1k", 79.904, crop_pct=0.95),
    _timm("resnet50", "ram_in1k", 79.034),
    _timm("resnet50", "am_in1k", 79.004),
    _timm("resnet50", "ra_in1k", 78.82),
    _timm("resnet50", "bt_in1k", 78.444),
    _timm("resnet50d", "ra2_in1k", 80.546),
    _timm("resnet50d", "ra4_e3600_r224_in1k", 80.956, crop_pct=0.95),
    _timm("resnet50d", "a1_in1k", 80.73, crop_pct=0.95),
    _timm("resnet50d", "a2_in1k", 80.268, crop_pct=0.95),
    _timm("resnet50d", "a3_in1k", 77.222, size=160, crop_pct=0.95),
    _timm("resnet101", "a1h_in1k", 81.95, crop_pct=0.95),
    _timm("resnet101", "a1_in1k", 81.494, crop_pct=0.95),
    _timm("resnet101", "a2_in1k", 81.344, crop_pct=0.95),
    _timm("resnet101", "a3_in1k", 77.928, size=160, crop_pct=0.95),
    _timm("resnet101d", "ra2_in1k", 82.254, size=256, crop_pct=0.95),
    _timm("resnet152", "a1h_in1k", 82.818, crop_pct=0.95),
    _timm("resnet152", "a1_in1k", 81.998, crop_pct=0.95),
    _timm("resnet152", "a2_in1k", 81.764, crop_pct=0.95),
    _timm("resnet152", "a3_in1k", 78.896, size=160, crop_pct=0.95),
    _timm("resnet152d", "ra2_in1k", 83.16, size=256, crop_pct=0.95),
    _timm("wide_resnet50_2", "racm_in1k", 81.466),
    _timm("resnext50_32x4d", "a1h_in1k", 81.14, crop_pct=0.95),
    _timm("resnext50_32x4d", "a1_in1k", 80.526, crop_pct=0.95),
    _timm("resnext50_32x4d", "a2_in1k", 80.444, crop_pct=0.95),
    _timm("resnext50_32x4d", "a3_in1k", 77.732, size=160, crop_pct=0.95),
    _timm("resnext50_32x4d", "ra_in1k", 79.8),
    _timm("resnext101_32x8d", "fb_wsl_ig1b_ft_in1k", 82.72),
    _timm("resnet18", "fb_ssl_yfcc100m_ft_in1k", 72.636),
    _timm("resnet50", "fb_ssl_yfcc100m_ft_in1k", 79.252),
    _timm("resnext50_32x4d", "fb_ssl_yfcc100m_ft_in1k", 80.316),
    _timm("resnext101_32x8d", "fb_ssl_yfcc100m_ft_in1k", 81.62),
    _timm("resnet18", "fb_swsl_ig1b_ft_in1k", 73.286),
    _timm("resnet50", "fb_swsl_ig1b_ft_in1k", 81.146),
    _timm("resnext50_32x4d", "fb_swsl_ig1b_ft_in1k", 82.162),
    _timm("resnext101_32x8d", "fb_swsl_ig1b_ft_in1k", 84.276),
    _timm("resnet18", "gluon_in1k", 70.844),
    _timm("resnet34", "gluon_in1k", 74.574),
    _timm("resnet50", "gluon_in1k", 77.58),
    _timm("resnet101", "gluon_in1k", 79.306),
    _timm("resnet152", "gluon_in1k", 79.712),
    _timm("resnet50d", "gluon_in1k", 79.08),
    _timm("resnet101d", "gluon_in1k", 80.466),
    _timm("resnet152d", "gluon_in1k", 80.476),
    _timm("resnext50_32x4d", "gluon_in1k", 79.354),
    _akamaster("resnet20", "12fca82f", 91.73),
    _akamaster("resnet32", "d509ac18", 92.63),
    _akamaster("resnet44", "014dd654", 93.1),
    _akamaster("resnet56", "4bfd9763", 93.39),
    _akamaster("resnet110", "1d1ed7c2", 93.68),
    _akamaster("resnet1202", "f3b1deed", 93.82),
    _mmpretrain("resnet18", "mm_cifar10", "resnet18_8xb16_cifar10", 94.82),
    _mmpretrain("resnet34", "mm_cifar10", "resnet34_8xb16_cifar10", 95.34),
    _mmpretrain("resnet50", "mm_cifar10", "resnet50_8xb16_cifar10", 95.55),
    _mmpretrain("resnet101", "mm_cifar10", "resnet101_8xb16_cifar10", 95.58),
    _mmpretrain("resnet152", "mm_cifar10", "resnet152_8xb16_cifar10", 95.76),
    _mmpretrain("resnet50", "mm_cifar100", "resnet50_8xb16_cifar100", 79.90),
    _mmpretrain("resnet18", "mm_in1k", "resnet18_8xb32_in1k", 69.90),
    _mmpretrain("resnet34", "mm_in1k", "resnet34_8xb32_in1k", 73.62),
    _mmpretrain("resnet50", "mm_in1k", "resnet50_8xb32_in1k", 76.55),
    _mmpretrain("resnet101", "mm_in1k", "resnet101_8xb32_in1k", 77.97),
    _mmpretrain("resnet152", "mm_in1k", "resnet152_8xb32_in1k", 78.48),
    _mmpretrain("resnet50d", "mm_v1d_in1k", "resnetv1d50_8xb32_in1k", 77.54),
    _mmpretrain("resnet101d", "mm_v1d_in1k", "resnetv1d101_8xb32_in1k", 78.93),
    _mmpretrain("resnet152d", "mm_v1d_in1k", "resnetv1d152_8xb32_in1k", 79.41),
    _mmpretrain("resnet50", "mm_fp16_in1k", "resnet50_8xb32-fp16_in1k", 76.30),
    _mmpretrain("resnet50", "mm_rsb_a1_in1k", "resnet50_8xb256-rsb-a1-600e_in1k", 80.12),
    _mmpretrain("resnet50", "mm_rsb_a2_in1k", "resnet50_8xb256-rsb-a2-300e_in1k", 79.55),
    _mmpretrain("resnet50", "mm_rsb_a3_in1k", "resnet50_8xb256-rsb-a3-100e_in1k", 78.30),
    _mmpretrain("resnet50d", "mm_v1c_in1k", "resnetv1c50_8xb32_in1k", 77.01),
    _mmpretrain("resnet101d", "mm_v1c_in1k", "resnetv1c101_8xb32_in1k", 78.30),
    _mmpretrain("resnet152d", "mm_v1c_in1k", "resnetv1c152_8xb32_in1k", 78.76),
)
"""Every registered checkpoint, by source: torchvision, timm, akamaster, mmpretrain."""


TIMM_DEFAULTS: dict[str, str] = {
    "resnet18": "a1_in1k",
    "resnet34": "a1_in1k",
    "resnet50": "a1_in1k",
    "resnet101": "a1h_in1k",
    "resnet152": "a1h_in1k",
    "resnet18d": "ra2_in1k",
    "resnet34d": "ra2_in1k",
    "resnet50d": "ra2_in1k",
    "resnet101d": "ra2_in1k",
    "resnet152d": "ra2_in1k",
    "wide_resnet50_2": "racm_in1k",
    "wide_resnet101_2": "tv_in1k",
    "resnext50_32x4d": "a1h_in1k",
    "resnext101_32x8d": "tv_in1k",
}
"""timm's architectures that resnetlib builds, with timm's default tag (its first default_cfg)."""


def _index() -> dict[str, dict[str, PretrainedWeights]]:
    table: dict[str, dict[str, PretrainedWeights]] = {}
    for entry in WEIGHTS:
        for tag in (entry.tag, *entry.aliases):
            tags = table.setdefault(entry.model, {})
            if tag in tags:
                raise ValueError(f"duplicate pretrained tag {entry.model}.{tag}")
            tags[tag] = entry
    return table


_BY_MODEL = _index()


def default_weights(model: str) -> PretrainedWeights:
    """The weights ``create_model(model, pretrained=True)`` loads; ``UnknownNameError`` (a
    ``KeyError``) for a model without any."""
    tags = _BY_MODEL.get(model)
    if not tags:
        raise UnknownNameError(
            f"no pretrained weights for {model!r}; models with weights: "
            f"{', '.join(sorted(_BY_MODEL))}"
        )
    return tags[TIMM_DEFAULTS[model]] if model in TIMM_DEFAULTS else next(iter(tags.values()))


def get_weights(model: str, tag: str | None = None) -> PretrainedWeights:
    """The weights ``model.tag`` (or ``model="model.tag"``) names, the default without a tag.
    Unknown names raise :class:`~resnetlib.registry.UnknownNameError` listing what exists."""
    if tag is None and "." in model:
        model, tag = model.split(".", 1)
    if tag is None:
        return default_weights(model)
    tags = _BY_MODEL.get(model, {})
    if tag not in tags:
        known = ", ".join(tags) if tags else "none"
        raise UnknownNameError(f"no pretrained weights {model}.{tag}; tags for {model!r}: {known}")
    return tags[tag]


def list_pretrained(pattern: str | Sequence[str] = "*") -> list[str]:
    """``model.tag`` names of the registered checkpoints matching a shell-style pattern
    (``"resnet50*"``, ``"*cifar10"``) or any of several, as :func:`list_models` takes them,
    sorted by model, a model's default weights first. A tag's alias matches as the tag does
    (``"resnet18.IMAGENET1K_V1"`` lists ``"resnet18.tv_in1k"``).

    Raises:
        ValueError: a pattern that is not a str, nor an iterable of them (a list, tuple, set).

    Examples:
        >>> import resnetlib as rl
        >>> rl.list_pretrained("resnet56*")
        ['resnet56.akamaster_cifar10']
    """
    patterns = check_patterns("weights name", pattern)
    names: list[str] = []
    for model in sorted(_BY_MODEL):
        default = default_weights(model)
        entries = sorted(set(_BY_MODEL[model].values()), key=lambda e: (e is not default, e.tag))
        names.extend(
            e.name
            for e in entries
            if any(
                fnmatch.fnmatchcase(f"{model}.{tag}", p)
                for tag in (e.tag, *e.aliases)
                for p in patterns
            )
        )
    return names
